"""`breedops load`: bounded open-loop load against the local endpoint or the Lambda runner."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from breedops.errors import ConfigurationError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "load", help="send a fixed request rate to the local endpoint or Lambda (loopback only)")
    parser.add_argument("--rps", type=float, required=True, help="requests per second to offer")
    parser.add_argument("--duration", type=float, required=True, help="seconds (at most 600)")
    parser.add_argument("--target", choices=("endpoint", "lambda"), default="endpoint",
                        help="the local endpoint (default) or the Lambda through the local runner")
    parser.add_argument("--endpoint", default=None,
                        help="endpoint name (default: the env's endpoint_name output)")
    parser.add_argument("--function", default=None,
                        help="function name (default: the env's lambda_function_name output)")
    parser.add_argument("--qualifier", default=None,
                        help="the function's alias (default: the env's lambda_alias_name output)")
    parser.add_argument("--env", default="local", help="Terraform environment (default: local)")
    parser.add_argument("--image", type=Path, default=None,
                        help="a JPEG or PNG to send (default: a generated 224 px JPEG)")
    parser.add_argument("--max-requests", type=int, default=10_000,
                        help="stop after this many requests (default: 10000)")
    parser.add_argument("--max-in-flight", type=int, default=64,
                        help="requests outstanding at once (default: 64)")
    parser.set_defaults(func=load_command)


def load_command(args: argparse.Namespace) -> int:
    from breedops.load import targets
    from breedops.load.generator import open_loop
    from breedops.terraform.outputs import output_or_flag

    if args.image is not None and not args.image.is_file():
        raise ConfigurationError(f"--image {args.image}: no such file")
    image = args.image.read_bytes() if args.image else targets.sample_image()
    if args.target == "endpoint":
        name = output_or_flag(args.endpoint, args.env, "endpoint_name", "--endpoint")
        send = targets.endpoint_sender(name, image, max_connections=args.max_in_flight)
        report = open_loop(send, args.rps, args.duration, args.max_requests, args.max_in_flight)
    else:
        name = output_or_flag(args.function, args.env, "lambda_function_name", "--function")
        alias = output_or_flag(args.qualifier, args.env, "lambda_alias_name", "--qualifier")
        with targets.lambda_sender(name, alias, image) as send:
            report = open_loop(send, args.rps, args.duration, args.max_requests,
                               args.max_in_flight)
    result = {"target": args.target, "name": name, **report.to_dict()}
    print(json.dumps(result, indent=2))
    return 0 if report.errors == 0 else 1

