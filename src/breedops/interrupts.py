"""Ctrl-C and SIGTERM: one meaning for every command, and a way to finish what must not be torn.

An interrupt is a `KeyboardInterrupt` everywhere (SIGTERM too, once `terminate_as_interrupt()`
is installed), so every `except KeyboardInterrupt` cleans up the same way. `Interrupted` is one
that says what was left behind and what to do next; the CLI prints it as one line, exit 130.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger(__name__)

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C
INTERRUPT_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """An interrupt that was handled: the message says what state is left and what to run."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def terminate_as_interrupt() -> None:
    """SIGTERM (a supervisor, `kill`, CI's cancel) is handled as Ctrl-C is."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupt)


@contextmanager
def deferred() -> Iterator[None]:
    """Hold a first interrupt until the block is done (a second one is raised at once).

    For a call and its record that must not be torn apart: a job created but not recorded
    would be submitted again by the next run. Outside the main thread this does nothing
    (signals are only delivered there).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def hold(signum: int, frame: Any) -> None:
        received.append(signum)
        if len(received) > 1:
            raise KeyboardInterrupt(signal.Signals(signum).name)
        log.warning("interrupt received: finishing the submission and its record first "
                    "(interrupt again to stop at once)")

    previous = {sig: signal.signal(sig, hold) for sig in INTERRUPT_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        raise KeyboardInterrupt(signal.Signals(received[0]).name)
