"""A job's log in CloudWatch Logs and its metrics, as SageMaker records them.

Each host's output goes to `/aws/sagemaker/TrainingJobs`, stream `<job>/algo-<n>-<epoch>`, so
`aws logs tail` and the SDK's `logs=True` read it while the job runs. Metrics are the request's
own `MetricDefinitions` regexes applied to every log line, as SageMaker does; a job's final value
of a metric is the last one logged.
"""

from __future__ import annotations

import re
import threading
import time
from datetime import UTC, datetime
from typing import Any

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
FLUSH_EVERY_SECONDS = 1.0
MAX_BATCH_EVENTS = 500
MAX_EVENT_BYTES = 256 * 1024 - 26  # PutLogEvents' limit per event (message plus overhead)


def stream_name(job_name: str, host: str, started: float) -> str:
    return f"{job_name}/{host}-{int(started)}"


class LogStream:
    """Buffers a host's lines and sends them with PutLogEvents, at most once a second.

    `write` sends when a line arrives a second or more after the last send; `flush_if_due`,
    called periodically, sends lines that a quiet script left waiting.
    """

    def __init__(self, logs: Any, name: str) -> None:
        self.logs = logs
        self.name = name
        self._events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._last_flush = time.monotonic()
        try:
            logs.create_log_group(logGroupName=LOG_GROUP)
        except logs.exceptions.ResourceAlreadyExistsException:
            pass
        logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=name)

    def write(self, line: str) -> None:
        message = line[:MAX_EVENT_BYTES] or " "
        with self._lock:
            self._events.append({"timestamp": int(time.time() * 1000), "message": message})
            due = (len(self._events) >= MAX_BATCH_EVENTS
                   or time.monotonic() - self._last_flush >= FLUSH_EVERY_SECONDS)
        if due:
            self.flush()

    def flush(self) -> None:
        with self._send_lock:  # batches reach CloudWatch in the order they were taken
            with self._lock:
                events, self._events = self._events, []
                self._last_flush = time.monotonic()
            if events:
                self.logs.put_log_events(logGroupName=LOG_GROUP, logStreamName=self.name,
                                         logEvents=events)

    def flush_if_due(self) -> None:
        """Send lines that wait for a next one: a script may go quiet for a long step."""
        with self._lock:
            due = bool(self._events) and (
                time.monotonic() - self._last_flush >= FLUSH_EVERY_SECONDS)
        if due:
            self.flush()


class MetricCollector:
    """Applies `MetricDefinitions` to log lines; keeps each metric's last value and time."""

    def __init__(self, definitions: list[dict[str, str]]) -> None:
        self._patterns = [(d["Name"], re.compile(d["Regex"])) for d in definitions or []]
        self._final: dict[str, tuple[float, datetime]] = {}
        self._lock = threading.Lock()

    def feed(self, line: str) -> None:
        for name, pattern in self._patterns:
            match = pattern.search(line)
            if not match:
                continue
            try:
                value = float(match.group(1) if pattern.groups else match.group(0))
            except (ValueError, IndexError):
                continue
            with self._lock:
                self._final[name] = (value, datetime.now(UTC))

    def final(self) -> list[dict[str, Any]]:
        """`FinalMetricDataList`: one entry per metric that was logged."""
        with self._lock:
            return [{"MetricName": name, "Value": value, "Timestamp": when.timestamp()}
                    for name, (value, when) in sorted(self._final.items())]
