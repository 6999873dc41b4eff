"""Invoke the deployed Lambda through its API, as any client does: the emulator's or AWS's.

One code path for both environments: boto3 `invoke` on an alias (`live`) with `LogType=Tail`,
so each answer carries the function's REPORT line from the log tail. No retries: a throttle
(429 `TooManyRequestsException`) is an answer to count, not to hide.
"""

from __future__ import annotations

import base64
import json
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

THROTTLING_CODES = ("TooManyRequestsException", "ThrottlingException", "Throttling")


@dataclass(frozen=True)
class Answer:
    """One invocation as the caller sees it."""

    status: int  # HTTP status of Invoke: 200, 429, 4xx/5xx
    payload: Any = None  # the function's response (or error) payload, decoded
    function_error: str | None = None  # X-Amz-Function-Error (Unhandled)
    error_code: str | None = None  # the API's error code when Invoke itself failed
    error_message: str | None = None
    report: str | None = None  # the REPORT line of the log tail
    request_id: str | None = None
    latency_ms: float = 0.0

    @property
    def throttled(self) -> bool:
        return self.status == 429 or self.error_code in THROTTLING_CODES

    @property
    def accepted(self) -> bool:
        return self.status == 200

    @property
    def ok(self) -> bool:
        """The function ran and answered (an API Gateway shape with a 2xx statusCode)."""
        if not self.accepted or self.function_error:
            return False
        status = self.payload.get("statusCode", 200) if isinstance(self.payload, dict) else 200
        return 200 <= int(status) < 300

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def image_payload(image: Path | bytes) -> bytes:
    """A direct invocation's request: `{"image": "<base64>"}` (contract 8)."""
    data = image.read_bytes() if isinstance(image, Path) else image
    return json.dumps({"image": base64.b64encode(data).decode()}).encode()


def lambda_client(max_connections: int = 10, read_timeout: float = 960.0) -> Any:
    """A Lambda client that waits as long as a function may run (15 min) and never retries."""
    import boto3
    from botocore.config import Config

    return boto3.client("lambda", config=Config(
        retries={"total_max_attempts": 1}, read_timeout=read_timeout, connect_timeout=5,
        max_pool_connections=max(10, max_connections)))


def report_line(log_result: str | None) -> str | None:
    """The REPORT line of a base64 `X-Amz-Log-Result` (the tail of the invocation's log)."""
    if not log_result:
        return None
    text = base64.b64decode(log_result).decode("utf-8", errors="replace")
    reports = [line for line in text.splitlines() if line.startswith("REPORT RequestId: ")]
    return reports[-1].rstrip("\t") if reports else None


def invoke(client: Any, function: str, payload: bytes, qualifier: str) -> Answer:
    """One synchronous invocation; API errors (throttles included) become answers."""
    from botocore.exceptions import BotoCoreError, ClientError, ReadTimeoutError

    started = time.perf_counter()
    try:
        response = client.invoke(FunctionName=function, Qualifier=qualifier, Payload=payload,
                                 LogType="Tail")
    except (ReadTimeoutError, BotoCoreError) as e:  # no answer at all: status 0
        return Answer(status=0, error_code="timeout" if isinstance(e, ReadTimeoutError)
                      else "connection", error_message=str(e),
                      latency_ms=(time.perf_counter() - started) * 1000)
    except ClientError as e:
        answer = e.response
        return Answer(status=int(answer.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)),
                      error_code=answer.get("Error", {}).get("Code"),
                      error_message=answer.get("Error", {}).get("Message"),
                      request_id=answer.get("ResponseMetadata", {}).get("RequestId"),
                      latency_ms=(time.perf_counter() - started) * 1000)
    body = response["Payload"].read()
    latency_ms = (time.perf_counter() - started) * 1000
    try:
        decoded = json.loads(body) if body else None
    except ValueError:
        decoded = body.decode("utf-8", errors="replace")
    return Answer(status=int(response["StatusCode"]), payload=decoded,
                  function_error=response.get("FunctionError"),
                  report=report_line(response.get("LogResult")),
                  request_id=response.get("ResponseMetadata", {}).get("RequestId"),
                  latency_ms=latency_ms)


def invoke_many(function: str, payload: bytes, requests: int, concurrency: int,
                qualifier: str,
                on_answer: Callable[[Answer], None] | None = None) -> list[Answer]:
    """`requests` invocations from `concurrency` simultaneous clients; the first wave
    arrives together, as a burst does."""
    client = lambda_client(max_connections=concurrency)
    barrier = threading.Barrier(min(concurrency, requests))

    def one(index: int) -> Answer:
        if index < concurrency:
            barrier.wait()
        answer = invoke(client, function, payload, qualifier)
        if on_answer is not None:
            on_answer(answer)
        return answer

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return list(pool.map(one, range(requests)))


def summary(answers: list[Answer]) -> dict[str, Any]:
    """Accepted, throttled (429) and errors, with the latency percentiles of accepted calls."""
    accepted = [a for a in answers if a.accepted]
    throttled = [a for a in answers if a.throttled]
    latencies = sorted(a.latency_ms for a in accepted)
    result: dict[str, Any] = {
        "requests": len(answers), "accepted": len(accepted), "throttled": len(throttled),
        "ok": sum(a.ok for a in accepted),
        "errors": len(answers) - len(throttled) - sum(a.ok for a in accepted),
    }
    if latencies:
        result["p50_ms"] = round(statistics.median(latencies), 2)
        result["p95_ms"] = round(percentile(latencies, 95), 2)
    return result


def percentile(sorted_values: list[float], q: float) -> float:
    """The q-th percentile by linear interpolation (numpy's default)."""
    if len(sorted_values) == 1:
        return sorted_values[0]
    rank = (len(sorted_values) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)
