"""Serving commands: `lambda build` (the package) and `invoke` (the deployed Lambda's API)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from breedops.errors import ConfigurationError
from breedops.settings import lambda_zip_path


def register(subparsers: argparse._SubParsersAction) -> None:
    lambda_parser = subparsers.add_parser("lambda", help="the Lambda package")
    lambda_commands = lambda_parser.add_subparsers(dest="lambda_command", required=True)
    build = lambda_commands.add_parser("build", help="build the Lambda zip reproducibly")
    build.add_argument("--output", type=Path, default=None,
                       help=f"zip to write (default: {lambda_zip_path()})")
    build.set_defaults(func=build_command)

    invoke = subparsers.add_parser(
        "invoke", help="invoke the deployed Lambda through its alias (the emulator or AWS)")
    invoke.add_argument("--image", type=Path, required=True, help="a JPEG or PNG to classify")
    invoke.add_argument("--function", default=None,
                        help="function name (default: the env's lambda_function_name output)")
    invoke.add_argument("--env", default="local", help="Terraform environment (default: local)")
    invoke.add_argument("--qualifier", default=None,
                        help="alias or version (default: the env's lambda_alias_name output)")
    invoke.add_argument("--concurrency", type=int, default=1, help="simultaneous clients")
    invoke.add_argument("--requests", type=int, default=None,
                        help="invocations in all (default: one per client)")
    invoke.set_defaults(func=invoke_command)


def build_command(args: argparse.Namespace) -> int:
    from breedops.serving.lambda_package import build_lambda_zip

    path = build_lambda_zip(target=args.output)
    print(f"{path} ({path.stat().st_size} bytes)")
    return 0


def invoke_command(args: argparse.Namespace) -> int:
    """Invoke the function as any client does (boto3 `Invoke` with `LogType=Tail`): print each
    REPORT line, the first answer and a summary. The same against the emulator and AWS."""
    from breedops.local.env_file import use_emulator_when_local
    from breedops.serving import lambda_client
    from breedops.terraform.outputs import output_or_flag

    if not args.image.is_file():
        raise ConfigurationError(f"--image {args.image}: no such file")
    requests = args.requests if args.requests is not None else args.concurrency
    if args.concurrency < 1 or requests < 1:
        raise ConfigurationError("--concurrency and --requests must be at least 1")
    use_emulator_when_local(args.env)
    name = output_or_flag(args.function, args.env, "lambda_function_name", "--function")
    qualifier = output_or_flag(args.qualifier, args.env, "lambda_alias_name", "--qualifier")
    payload = lambda_client.image_payload(args.image)
    if len(payload) > 6 * 1024 * 1024:
        raise ConfigurationError(f"--image {args.image}: too large for a synchronous "
                                 "invocation (6 MB with base64)")

    def show(answer: lambda_client.Answer) -> None:
        if answer.report:
            print(answer.report, flush=True)
        elif not answer.accepted:
            print(f"{answer.status} {answer.error_code}: {answer.error_message}", flush=True)

    answers = lambda_client.invoke_many(name, payload, requests, args.concurrency,
                                        qualifier, on_answer=show)
    first = next((a for a in answers if a.accepted), answers[0])
    print(json.dumps(first.payload if first.accepted else first.to_dict(), indent=2))
    summary = lambda_client.summary(answers)
    print(json.dumps({"function": name, "qualifier": qualifier, **summary}))
    return 0 if summary["errors"] == 0 and summary["accepted"] > 0 else 1

