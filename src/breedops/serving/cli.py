"""Serving commands: `lambda build`, `invoke` (the local Lambda runner) and `serve` (hosting)."""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from breedops.errors import ConfigurationError


def register(subparsers: argparse._SubParsersAction) -> None:
    lambda_parser = subparsers.add_parser("lambda", help="the Lambda package")
    lambda_commands = lambda_parser.add_subparsers(dest="lambda_command", required=True)
    build = lambda_commands.add_parser("build", help="build build/lambda.zip reproducibly")
    build.add_argument("--output", type=Path, default=None,
                       help="zip to write (default: build/lambda.zip)")
    build.set_defaults(func=build_command)

    invoke = subparsers.add_parser("invoke", help="invoke the Lambda locally, like its runtime")
    invoke.add_argument("--image", type=Path, required=True, help="a JPEG or PNG to classify")
    invoke.add_argument("--function", default=None,
                        help="function name (default: the env's lambda_function_name output)")
    invoke.add_argument("--env", default="local", help="Terraform environment (default: local)")
    invoke.add_argument("--concurrency", type=int, default=1, help="simultaneous clients")
    invoke.add_argument("--requests", type=int, default=1, help="invocations in all")
    invoke.set_defaults(func=invoke_command)

    serve = subparsers.add_parser("serve", help="run local SageMaker hosting in the foreground")
    serve.add_argument("--host", default="127.0.0.1", help="address (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default: 5567)")
    serve.add_argument("--model-dir", type=Path, default=None,
                       help="serve one extracted model directory (container contract)")
    serve.add_argument("--workers", type=int, default=1, help="workers with --model-dir")
    serve.set_defaults(func=serve_command)


def build_command(args: argparse.Namespace) -> int:
    from breedops.serving.lambda_package import build_lambda_zip

    path = build_lambda_zip(target=args.output)
    print(f"{path} ({path.stat().st_size} bytes)")
    return 0


def serve_command(args: argparse.Namespace) -> int:
    from breedops.serving import hosting

    hosting.serve(args.host, args.port or hosting.DEFAULT_PORT, args.model_dir, args.workers)
    return 0


def invoke_command(args: argparse.Namespace) -> int:
    from breedops.serving import lambda_runner

    if not args.image.is_file():
        raise ConfigurationError(f"--image {args.image}: no such file")
    if args.concurrency < 1 or args.requests < 1:
        raise ConfigurationError("--concurrency and --requests must be at least 1")
    if args.env == "local":
        from breedops.local.env_file import use_environment

        use_environment()
    name = args.function or _function_from_outputs(args.env)
    with lambda_runner.temporary_work_dir() as work_dir:
        spec = lambda_runner.function_from_emulator(name, Path(work_dir))
        runner = lambda_runner.LambdaRunner(spec)
        try:
            results = lambda_runner.run_invocations(
                runner, lambda_runner.image_event(args.image), args.requests, args.concurrency)
        finally:
            runner.close()
    for result in results:
        print(result.report_line(spec.memory_mb))
    accepted = [r for r in results if not r.throttled]
    print(json.dumps((accepted or results)[0].payload, indent=2))
    durations = sorted(r.duration_ms for r in accepted)
    summary = {"requests": len(results), "accepted": len(accepted),
               "throttled": runner.throttled,
               "ok": sum(r.status == 200 for r in accepted),
               "reserved_concurrency": spec.reserved_concurrency,
               "provisioned_concurrency": spec.provisioned_concurrency}
    if durations:
        summary["p50_ms"] = round(statistics.median(durations), 2)
    print(json.dumps(summary))
    return 0 if summary["ok"] == len(accepted) else 1


def _function_from_outputs(env: str) -> str:
    try:
        from breedops.terraform import outputs
    except ImportError as e:
        raise ConfigurationError("give --function NAME (Terraform outputs unavailable)") from e
    name = outputs(env).get("lambda_function_name")
    if not name:
        raise ConfigurationError(f"env {env} has no lambda_function_name output; give --function")
    return str(name)
