"""The load generator's bookkeeping and bounds, with senders that need no server."""

from __future__ import annotations

import os
import threading
import time

import pytest

from breedops.load.generator import LoadError, Outcome, closed_loop, open_loop, percentile


def test_open_loop_sends_rate_times_duration_and_counts_statuses():
    calls = iter(["200", "200", "424", "200", "429"] * 4)
    lock = threading.Lock()

    def send() -> Outcome:
        with lock:
            status = next(calls)
        return Outcome(status, throttled=status == "429")

    report = open_loop(send, rps=40, duration_s=0.5).to_dict()
    assert report["requested"] == report["completed"] == 20
    assert report["ok"] == 12
    assert report["errors_by_status"] == {"424": 4, "429": 4}
    assert report["throttled"] == 4


def test_open_loop_stops_at_max_requests():
    report = open_loop(lambda: Outcome("200"), rps=1000, duration_s=10, max_requests=7)
    assert report.to_dict()["completed"] == 7


def test_open_loop_counts_a_raising_sender_as_connection_error():
    def send() -> Outcome:
        raise ConnectionResetError("gone")

    report = open_loop(send, rps=20, duration_s=0.2).to_dict()
    assert report["errors_by_status"] == {"connection": 4}


def test_open_loop_latency_includes_queueing_behind_a_slow_server():
    def slow() -> Outcome:
        time.sleep(0.05)
        return Outcome("200")

    # One request in flight at a time, offered every 10 ms: each waits for the ones before.
    report = open_loop(slow, rps=100, duration_s=0.1, max_in_flight=1).to_dict()
    assert report["latency_ms"]["max"] >= 5 * 50


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"rps": 0, "duration_s": 1}, "--rps must be positive"),
    ({"rps": 1, "duration_s": 0}, "--duration must be"),
    ({"rps": 1, "duration_s": 601}, "--duration must be"),
    ({"rps": 1, "duration_s": 1, "max_requests": 0}, "--max-requests must be"),
])
def test_open_loop_rejects_unbounded_or_impossible_runs(kwargs, message):
    with pytest.raises(LoadError, match=message):
        open_loop(lambda: Outcome("200"), **kwargs)


def test_closed_loop_keeps_n_clients_busy_within_the_budget():
    active, peak = 0, 0
    lock = threading.Lock()

    def send() -> Outcome:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.01)
        with lock:
            active -= 1
        return Outcome("200")

    report = closed_loop(send, concurrency=4, duration_s=5, max_requests=40)
    assert report.completed == 40 and peak == 4
    with pytest.raises(LoadError, match="concurrency"):
        closed_loop(send, concurrency=0, duration_s=1)


def test_closed_loop_clients_run_at_the_lower_priority_and_the_caller_keeps_its_own():
    """The bench's clients stand aside for the instance on the same cores: every client thread
    sends at the caller's nice value plus `client_niceness`; the calling thread is untouched."""
    caller = os.getpriority(os.PRIO_PROCESS, 0)
    seen: set[int] = set()
    lock = threading.Lock()

    def send() -> Outcome:
        with lock:
            seen.add(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return Outcome("200")

    report = closed_loop(send, concurrency=3, duration_s=5, max_requests=12, client_niceness=5)
    assert report.completed == 12
    assert seen == {min(caller + 5, 19)}
    assert os.getpriority(os.PRIO_PROCESS, 0) == caller
    seen.clear()
    closed_loop(send, concurrency=2, duration_s=5, max_requests=4)
    assert seen == {caller}
    with pytest.raises(LoadError, match="niceness must be 0 or more"):
        closed_loop(send, concurrency=1, duration_s=1, client_niceness=-1)


def test_percentile_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50 and percentile(values, 0.99) == 99
    assert percentile(values, 1.0) == 100 and percentile([], 0.5) == 0.0


def test_open_loop_gives_up_on_requests_queued_past_the_grace():
    def stalled() -> Outcome:
        time.sleep(0.3)
        return Outcome("200")

    # One at a time, 10 offered in 0.1 s, 0.1 s of grace: only the first ones get sent.
    report = open_loop(stalled, rps=100, duration_s=0.1, max_in_flight=1, grace_s=0.1).to_dict()
    assert report["completed"] == 10
    assert report["ok"] == 1 and report["errors_by_status"] == {"not_sent": 9}
