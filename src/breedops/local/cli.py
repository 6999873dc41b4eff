"""`breedops local up|down|status`: the local AWS emulator and hosting in the background."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("local", help="start, stop or inspect the local AWS emulator")
    actions = parser.add_subparsers(dest="local_command", metavar="ACTION", required=True)
    actions.add_parser("up", help="start the emulator and local hosting (no-op if running)") \
        .set_defaults(func=_up)
    actions.add_parser("down", help="stop them; their state is kept for the next up") \
        .set_defaults(func=_down)
    actions.add_parser("status", help="show whether they run, their pid, url and log") \
        .set_defaults(func=_status)


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
