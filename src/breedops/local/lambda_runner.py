"""Run a Lambda function in this process's control, the way the Lambda runtime does.

For measurements and tests that must not go through an API (the serving benchmark): the
function's code runs in the emulator's own execution environments (`lambda_runtime`: the
managed Python runtime's client, awslambdaric, against a local Runtime API), held to its reserved
concurrency by the emulator's own `Concurrency` (`TooManyRequestsException` above it), with
provisioned environments initialised before the first request. The deployed function is invoked
through its API instead: the emulator serves `Invoke` (`breedops invoke`, `serving.lambda_client`).
"""

from __future__ import annotations

import base64
import json
import os
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from breedops.errors import BreedopsError
from breedops.local.lambda_runtime import (
    Concurrency,
    FunctionConfig,
    Pool,
    Result,
    Throttled,
    unpack_code,
)

DEFAULT_HANDLER = "breedops_lambda.handler.lambda_handler"


class LambdaRunnerError(BreedopsError):
    """The function cannot be initialised."""


@dataclass(frozen=True)
class FunctionSpec:
    """What the runner needs to know about a function."""

    name: str
    code_dir: Path
    handler: str = DEFAULT_HANDLER
    environment: dict[str, str] = field(default_factory=dict)
    memory_mb: int = 128
    timeout_s: float = 30.0
    reserved_concurrency: int | None = None
    provisioned_concurrency: int = 0

    @classmethod
    def from_zip(cls, name: str, code_zip: Path, code_root: Path, **settings: Any) -> FunctionSpec:
        """The function packaged as `code_zip`, unpacked under `code_root` as the emulator
        unpacks a function's code."""
        return cls(name=name, code_dir=unpack_code(code_zip.read_bytes(), code_root), **settings)


@dataclass(frozen=True)
class Invocation:
    """One invocation's outcome: the function's response (or error) and its REPORT figures."""

    request_id: str
    status: int
    payload: dict[str, Any]
    duration_ms: float = 0.0
    max_memory_mb: int = 0
    init_ms: float | None = None
    throttled: bool = False
    report: str = ""

    def report_line(self, memory_mb: int | None = None) -> str:
        """The line AWS prints after each invocation."""
        if self.throttled:
            return f"THROTTLED RequestId: {self.request_id}\tTooManyRequestsException"
        return self.report


class LambdaRunner:
    """Execution environments for one function, with its concurrency limits."""

    def __init__(self, spec: FunctionSpec) -> None:
        self.spec = spec
        self._lock = threading.Lock()
        self._concurrency = Concurrency()
        self.throttled = 0
        # The caller's AWS variables (credentials, region, endpoints) and the function's own.
        environment = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
        environment.update(spec.environment)
        self._pool = Pool(FunctionConfig(
            name=spec.name, code_dir=spec.code_dir, handler=spec.handler,
            memory_mb=spec.memory_mb, timeout_s=spec.timeout_s, environment=environment),
            provisioned=spec.provisioned_concurrency)

    def invoke(self, event: Any) -> Invocation:
        """One invocation; throttled at once when the reserved concurrency is in use."""
        request_id = str(uuid.uuid4())
        try:
            release = self._concurrency.reserve(self.spec.name, self.spec.reserved_concurrency)
        except Throttled as e:
            with self._lock:
                self.throttled += 1
            return Invocation(request_id, 429, {
                "errorType": "TooManyRequestsException", "errorMessage": "Rate Exceeded.",
                "Reason": e.reason,
            }, throttled=True)
        try:
            result = self._pool.invoke(request_id, json.dumps(event).encode(),
                                       f"arn:aws:lambda:local:000000000000:function:"
                                       f"{self.spec.name}")
        finally:
            release()
        if result.init_failed:
            detail = result.json_payload() or {}
            raise LambdaRunnerError(f"{self.spec.name} failed to initialise: "
                                    f"{detail.get('errorType')}: {detail.get('errorMessage')}")
        return _invocation(result)

    def close(self) -> None:
        self._pool.close_all()


def _invocation(result: Result) -> Invocation:
    payload = result.json_payload()
    if result.failed:
        status = 500
    elif isinstance(payload, dict):
        status = int(payload.get("statusCode", 200))
    else:
        status = 200
    if not isinstance(payload, dict):
        payload = {"result": payload}
    return Invocation(result.request_id, status, payload, result.duration_ms,
                      result.max_memory_mb, result.init_ms, report=result.report_line())


def image_event(image: Path) -> dict[str, Any]:
    """An API Gateway proxy event carrying `image` as a binary body."""
    return {"resource": "/predict", "path": "/predict", "httpMethod": "POST",
            "headers": {"Content-Type": "application/octet-stream"},
            "requestContext": {"requestId": str(uuid.uuid4())},
            "body": base64.b64encode(image.read_bytes()).decode(), "isBase64Encoded": True}


def run_invocations(runner: LambdaRunner, event: Any, requests: int,
                    concurrency: int) -> list[Invocation]:
    """`requests` invocations from `concurrency` simultaneous clients."""
    from concurrent.futures import ThreadPoolExecutor

    barrier = threading.Barrier(min(concurrency, requests))

    def one(index: int) -> Invocation:
        if index < concurrency:  # the first wave arrives together, as a burst does
            barrier.wait()
        return runner.invoke(event)

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return list(pool.map(one, range(requests)))
