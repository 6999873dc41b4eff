"""Open-loop and closed-loop load, bounded in count and in time, with latency percentiles.

Open loop (a fixed arrival rate) is what traffic does: requests keep arriving whether or not
the server keeps up, so latency is measured from each request's *scheduled* time and a slow
server shows up as queueing instead of hiding it (no coordinated omission). Closed loop (N
clients, each sending as soon as its last answer came back) measures what N clients get: the
throughput-against-concurrency curve.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from breedops.errors import BreedopsError

logger = logging.getLogger(__name__)

MAX_DURATION_S = 600.0
MAX_REQUESTS = 100_000


class LoadError(BreedopsError):
    """A load run was asked for something unbounded, remote or impossible."""


@dataclass(frozen=True)
class Outcome:
    """One request's result: an HTTP status (or a transport failure) and whether it throttled."""

    status: str  # "200", "424", ..., or "connection" / "timeout"
    throttled: bool = False


Sender = Callable[[], Outcome]


def percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return 0.0
    rank = max(0, min(len(ordered) - 1, math.ceil(round(fraction * len(ordered), 9)) - 1))
    return ordered[rank]


@dataclass
class LoadReport:
    """What a run measured; `to_dict` is the JSON the CLI prints."""

    mode: str
    requested: int
    elapsed_s: float
    latencies_ms: list[float]
    statuses: Counter
    throttled: int
    offered_rps: float | None = None
    concurrency: int | None = None

    @property
    def completed(self) -> int:
        return sum(self.statuses.values())

    @property
    def errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != "200")

    def to_dict(self) -> dict[str, Any]:
        ordered = sorted(self.latencies_ms)
        return {
            "mode": self.mode, "offered_rps": self.offered_rps, "concurrency": self.concurrency,
            "requested": self.requested, "completed": self.completed,
            "ok": self.statuses.get("200", 0), "errors": self.errors,
            "errors_by_status": {k: v for k, v in sorted(self.statuses.items()) if k != "200"},
            "throttled": self.throttled,
            "elapsed_s": round(self.elapsed_s, 3),
            "achieved_rps": round(self.completed / self.elapsed_s, 2) if self.elapsed_s else 0.0,
            "latency_ms": {name: round(percentile(ordered, q), 2) for name, q in
                           (("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("max", 1.0))},
        }


class _Recorder:
    """Thread-safe collection of outcomes."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.statuses: Counter = Counter()
        self.throttled = 0

    def call(self, send: Sender, since: float, give_up_at: float = float("inf")) -> None:
        if time.perf_counter() > give_up_at:  # still queued long after the run: never sent
            with self.lock:
                self.statuses["not_sent"] += 1
            return
        try:
            outcome = send()
        except Exception as e:  # one failed request must not end the run
            logger.debug("request failed: %s", e, exc_info=True)
            outcome = Outcome("connection")
        latency = (time.perf_counter() - since) * 1000
        with self.lock:
            self.latencies.append(latency)
            self.statuses[outcome.status] += 1
            self.throttled += outcome.throttled


def _check_bounds(duration_s: float, max_requests: int) -> None:
    if not 0 < duration_s <= MAX_DURATION_S:
        raise LoadError(f"--duration must be in (0, {MAX_DURATION_S:g}] seconds, got {duration_s}")
    if not 0 < max_requests <= MAX_REQUESTS:
        raise LoadError(f"--max-requests must be in [1, {MAX_REQUESTS}], got {max_requests}")


def open_loop(send: Sender, rps: float, duration_s: float, max_requests: int = 10_000,
              max_in_flight: int = 64, grace_s: float = 30.0) -> LoadReport:
    """`min(rps x duration, max_requests)` requests at a fixed rate; waits for the stragglers.

    Requests still queued `grace_s` after the last scheduled one are counted as `not_sent`
    instead of sent, so a stalled server cannot stretch the run without bound.
    """
    _check_bounds(duration_s, max_requests)
    if not rps > 0:
        raise LoadError(f"--rps must be positive, got {rps}")
    if max_in_flight < 1:
        raise LoadError(f"max in flight must be at least 1, got {max_in_flight}")
    count = min(max_requests, max(1, int(rps * duration_s)))
    recorder = _Recorder()
    started = time.perf_counter()
    give_up_at = started + duration_s + grace_s
    with ThreadPoolExecutor(max_workers=max_in_flight, thread_name_prefix="load") as pool:
        for index in range(count):
            scheduled = started + index / rps
            delay = scheduled - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(recorder.call, send, scheduled, give_up_at)
    return LoadReport(mode="open", requested=count, elapsed_s=time.perf_counter() - started,
                      latencies_ms=recorder.latencies, statuses=recorder.statuses,
                      throttled=recorder.throttled, offered_rps=rps)


def _lower_thread_priority(niceness: int) -> None:
    """Add `niceness` to the calling thread's nice value (Linux: each thread is a task of its
    own); where a thread's priority cannot be set, it stays as it is, with a warning."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(),
                       os.getpriority(os.PRIO_PROCESS, 0) + niceness)
    except OSError as e:
        logger.warning("client thread left at its priority: %s", e)


def closed_loop(send: Sender, concurrency: int, duration_s: float,
                max_requests: int = 10_000, client_niceness: int = 0) -> LoadReport:
    """`concurrency` clients back to back until the time or the request budget runs out.

    `client_niceness` > 0 runs the client threads at that lower CPU priority (their own, not the
    process's): a server on the same machine then gets the cores first, as it would if the
    clients ran elsewhere.
    """
    _check_bounds(duration_s, max_requests)
    if concurrency < 1:
        raise LoadError(f"concurrency must be at least 1, got {concurrency}")
    if client_niceness < 0:
        raise LoadError(f"client niceness must be 0 or more, got {client_niceness}")
    recorder = _Recorder()
    budget = iter(range(max_requests))
    budget_lock = threading.Lock()
    started = time.perf_counter()
    deadline = started + duration_s

    def client() -> None:
        if client_niceness:
            _lower_thread_priority(client_niceness)
        while time.perf_counter() < deadline:
            with budget_lock:
                if next(budget, None) is None:
                    return
            recorder.call(send, time.perf_counter())

    threads = [threading.Thread(target=client, name=f"client-{i}") for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    completed = sum(recorder.statuses.values())
    return LoadReport(mode="closed", requested=completed,
                      elapsed_s=time.perf_counter() - started, latencies_ms=recorder.latencies,
                      statuses=recorder.statuses, throttled=recorder.throttled,
                      concurrency=concurrency)
