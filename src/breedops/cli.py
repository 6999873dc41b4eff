"""The `breedops` command: one sub-command group per concern.

Each concern's `cli` module adds its parsers through `register(subparsers)` and imports its
heavy dependencies (torch, boto3) only when its command runs, so `breedops --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from breedops import __version__
from breedops.errors import BreedopsError
from breedops.interrupts import EXIT_INTERRUPTED, Interrupted, terminate_as_interrupt

COMMAND_MODULES = (
    "breedops.local.cli",
    "breedops.data.cli",
    "breedops.jobs.cli",
    "breedops.serving.cli",
    "breedops.terraform.cli",
    "breedops.pipeline.cli",
    "breedops.bench.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="breedops", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"breedops {__version__}")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging verbosity (default: INFO)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            # Skip a concern that is not part of this install; re-raise a real missing dependency.
            if not (e.name and name.startswith(e.name)):
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.log_level != "DEBUG":  # botocore reports every credential and endpoint lookup
        logging.getLogger("botocore").setLevel(logging.WARNING)
    terminate_as_interrupt()  # `kill`, a supervisor or CI's cancel: cleaned up as Ctrl-C is
    try:
        return int(args.func(args) or 0)
    except BreedopsError as e:
        print(f"breedops {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        # What was left and what to run next, when the code that was interrupted said so.
        detail = f": {e}" if isinstance(e, Interrupted) else ""
        print(f"breedops {args.command}: interrupted{detail}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:
        # An AWS client error (no credentials, emulator not running, access denied) is the
        # user's to fix: say it in one line. Anything else is a bug and keeps its traceback.
        if not type(e).__module__.startswith(("botocore", "boto3")):
            raise
        print(f"breedops {args.command}: AWS error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
