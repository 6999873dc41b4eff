"""`breedops local up|down|status`: the local AWS emulator and hosting in the background;
`breedops serve`: local hosting in the foreground."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("local", help="start, stop or inspect the local AWS emulator")
    actions = parser.add_subparsers(dest="local_command", metavar="ACTION", required=True)
    actions.add_parser("up", help="start the emulator and local hosting (no-op if running)") \
        .set_defaults(func=_up)
    actions.add_parser("down", help="stop them; their state is kept for the next up") \
        .set_defaults(func=_down)
    actions.add_parser("status", help="show whether they run, their pid, url and log") \
        .set_defaults(func=_status)

    serve = subparsers.add_parser("serve", help="run local SageMaker hosting in the foreground")
    serve.add_argument("--host", default="127.0.0.1", help="address (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default: 5567)")
    serve.add_argument("--model-dir", type=Path, default=None,
                       help="serve one extracted model directory (container contract)")
    serve.add_argument("--workers", type=int, default=1, help="workers with --model-dir")
    serve.set_defaults(func=_serve)


def _up(args: argparse.Namespace) -> int:
    from breedops.local import emulator

    for state in emulator.up():
        print(state.describe())
    return 0


def _down(args: argparse.Namespace) -> int:
    from breedops.local import emulator

    stopped = emulator.down()
    print("stopped: " + ", ".join(stopped) if stopped else "nothing was running")
    return 0


def _status(args: argparse.Namespace) -> int:
    from breedops.local import emulator

    states = emulator.status()
    for state in states:
        print(state.describe())
    return 0 if all(s.running for s in states if s.name == "emulator") else 3


def _serve(args: argparse.Namespace) -> int:
    from breedops.local.hosting import server

    server.serve(args.host, args.port or server.DEFAULT_PORT, args.model_dir, args.workers)
    return 0
