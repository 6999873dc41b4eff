"""Deadlines of local hosting: a request's read, a worker's answer, a worker's start."""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)


class Watchdog:
    """Runs an action once its deadline passes, unless it was disarmed first.

    One thread serves every deadline of the process (a request's read, a worker's answer, a
    worker's start), so a deadline costs a heap entry, not a thread.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._armed: set[int] = set()
        self._tokens = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, seconds: float, action: Callable[[], None]) -> int:
        with self._cond:
            token = next(self._tokens)
            heapq.heappush(self._heap, (time.monotonic() + seconds, token, action))
            self._armed.add(token)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="hosting-watchdog",
                                                daemon=True)
                self._thread.start()
            self._cond.notify()
            return token

    def disarm(self, token: int) -> bool:
        """True when the action had not run yet (and now never will)."""
        with self._cond:
            if token in self._armed:
                self._armed.discard(token)
                return True
            return False

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    while self._heap and self._heap[0][1] not in self._armed:
                        heapq.heappop(self._heap)  # disarmed
                    if not self._heap:
                        self._cond.wait()
                        continue
                    due = self._heap[0][0] - time.monotonic()
                    if due <= 0:
                        _, token, action = heapq.heappop(self._heap)
                        self._armed.discard(token)
                        break
                    self._cond.wait(due)
            try:
                action()
            except Exception:  # one failed action must not stop every other deadline
                logger.exception("a watchdog action failed")


WATCHDOG = Watchdog()
