"""Run the Lambda handler locally the way the Lambda runtime does.

Each execution environment is a worker process that initialises the function once (the cold
start, reported as Init Duration) and then serves one invocation at a time. The function's
configuration, reserved concurrency and provisioned concurrency (on the alias `live`) come from
the emulator's Lambda API: beyond the reserved concurrency an invocation is throttled with
`TooManyRequestsException` (429); provisioned environments are initialised before the first
request. Every invocation prints a `REPORT` line like the one AWS writes to CloudWatch.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import math
import os
import select
import subprocess
import sys
import tempfile
import threading
import urllib.request
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from breedops.errors import BreedopsError
from breedops.serving.lambda_package import default_zip_path

logger = logging.getLogger(__name__)

WORKER_SCRIPT = Path(__file__).with_name("lambda_worker.py")
PROVISIONED_ALIAS = "live"
DEFAULT_HANDLER = "breedops_lambda.handler.lambda_handler"


class LambdaRunnerError(BreedopsError):
    """The function cannot be found, unpacked or initialised."""


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

    def report_line(self, memory_mb: int) -> str:
        """The line AWS prints after each invocation."""
        if self.throttled:
            return f"THROTTLED RequestId: {self.request_id}\tTooManyRequestsException"
        line = (f"REPORT RequestId: {self.request_id}\tDuration: {self.duration_ms:.2f} ms\t"
                f"Billed Duration: {math.ceil(self.duration_ms)} ms\tMemory Size: {memory_mb} MB\t"
                f"Max Memory Used: {self.max_memory_mb} MB")
        if self.init_ms is not None:
            line += f"\tInit Duration: {self.init_ms:.2f} ms"
        return line


class ExecutionEnvironment:
    """One worker process running the function's code."""

    def __init__(self, spec: FunctionSpec) -> None:
        self.spec = spec
        env = {**os.environ, **spec.environment,
               "AWS_LAMBDA_FUNCTION_NAME": spec.name,
               "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
               "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST", "PYTHONDONTWRITEBYTECODE": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-P", str(WORKER_SCRIPT), str(spec.code_dir), spec.handler],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True,
        )
        ready = self._read(spec.timeout_s)
        if not ready or not ready.get("ready"):
            self.close()
            raise LambdaRunnerError(f"{spec.name} failed to initialise (see its log above)")
        self.init_ms: float = ready["init_ms"]

    def invoke(self, request_id: str, event: Any) -> dict[str, Any] | None:
        """The worker's reply, or None when it timed out or died (it is then unusable)."""
        assert self.process.stdin is not None
        message = {"request_id": request_id, "event": event,
                   "timeout_ms": int(self.spec.timeout_s * 1000)}
        try:
            self.process.stdin.write(json.dumps(message) + "\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            return None
        return self._read(self.spec.timeout_s)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream:
                stream.close()

    def _read(self, timeout_s: float) -> dict[str, Any] | None:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout_s)
        line = self.process.stdout.readline() if ready else ""
        return json.loads(line) if line else None


class LambdaRunner:
    """Execution environments for one function, with its concurrency limits."""

    def __init__(self, spec: FunctionSpec) -> None:
        self.spec = spec
        self._lock = threading.Lock()
        self._idle: list[ExecutionEnvironment] = []
        self._all: list[ExecutionEnvironment] = []
        self._in_flight = 0
        self.throttled = 0
        for _ in range(spec.provisioned_concurrency):  # ready before the first request
            self._add(ExecutionEnvironment(spec), idle=True)

    def invoke(self, event: Any) -> Invocation:
        """One invocation; throttled at once when the reserved concurrency is in use."""
        request_id = str(uuid.uuid4())
        with self._lock:
            limit = self.spec.reserved_concurrency
            if limit is not None and self._in_flight >= limit:
                self.throttled += 1
                return Invocation(request_id, 429, {
                    "errorType": "TooManyRequestsException",
                    "errorMessage": "Rate Exceeded.", "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded",
                }, throttled=True)
            self._in_flight += 1
            environment = self._idle.pop() if self._idle else None
        init_ms = None
        try:
            if environment is None:  # a cold start
                environment = ExecutionEnvironment(self.spec)
                self._add(environment, idle=False)
                init_ms = environment.init_ms
            reply = environment.invoke(request_id, event)
            if reply is None:
                environment.close()
                environment = None
                return Invocation(request_id, 500, {
                    "errorType": "Sandbox.Timedout",
                    "errorMessage": f"Task timed out after {self.spec.timeout_s:.2f} seconds",
                }, duration_ms=self.spec.timeout_s * 1000, init_ms=init_ms)
            if "error" in reply:
                return Invocation(request_id, 500, reply["error"], reply["duration_ms"],
                                  reply["max_memory_mb"], init_ms)
            result = reply["result"]
            status = int(result.get("statusCode", 200)) if isinstance(result, dict) else 200
            return Invocation(request_id, status, result, reply["duration_ms"],
                              reply["max_memory_mb"], init_ms)
        finally:
            with self._lock:
                self._in_flight -= 1
                if environment is not None:
                    self._idle.append(environment)

    def close(self) -> None:
        with self._lock:
            for environment in self._all:
                environment.close()
            self._all.clear()
            self._idle.clear()

    def _add(self, environment: ExecutionEnvironment, idle: bool) -> None:
        with self._lock:
            self._all.append(environment)
            if idle:
                self._idle.append(environment)


def function_from_emulator(name: str, work_dir: Path, zip_fallback: Path | None = None,
                           ) -> FunctionSpec:
    """Read the function's configuration and concurrency from the Lambda API; unpack its code."""
    import boto3
    from botocore.exceptions import ClientError

    client = boto3.client("lambda")
    try:
        function = client.get_function(FunctionName=name)
    except ClientError as e:
        raise LambdaRunnerError(f"Lambda function {name!r} not found in the emulator: "
                                f"{e.response['Error']['Message']}") from e
    config = function["Configuration"]
    reserved = function.get("Concurrency", {}).get("ReservedConcurrentExecutions")
    try:
        provisioned = client.get_provisioned_concurrency_config(
            FunctionName=name, Qualifier=PROVISIONED_ALIAS,
        )["RequestedProvisionedConcurrentExecutions"]
    except (ClientError, client.exceptions.ClientError) as e:
        # Not configured, or an emulator without the API (moto 5.2 answers 404).
        logger.debug("no provisioned concurrency for %s: %s", name, e)
        provisioned = 0
    code_dir = work_dir / "code"
    _unpack_code(function.get("Code", {}).get("Location"), zip_fallback or default_zip_path(),
                 code_dir, config.get("CodeSha256"))
    return FunctionSpec(
        name=name, code_dir=code_dir, handler=config.get("Handler", DEFAULT_HANDLER),
        environment=config.get("Environment", {}).get("Variables", {}),
        memory_mb=int(config.get("MemorySize", 128)), timeout_s=float(config.get("Timeout", 30)),
        reserved_concurrency=reserved, provisioned_concurrency=int(provisioned),
    )


def _unpack_code(location: str | None, fallback: Path, target: Path,
                 deployed_sha256: str | None) -> None:
    """The deployed zip from the function's code URL, else our own build.

    moto gives no code URL for zip uploads, so locally the build is what runs; its hash is
    checked against the deployed one so that a stale deployment is not silently mistaken.
    """
    data = None
    if location:
        try:
            with urllib.request.urlopen(location, timeout=10) as response:
                data = response.read()
        except OSError as e:
            logger.info("the function's code URL is unreachable (%s); using %s", e, fallback)
    if data is None or not zipfile.is_zipfile(io.BytesIO(data)):
        if not fallback.is_file():
            raise LambdaRunnerError(f"no function code: {fallback} is missing (run make lambda)")
        data = fallback.read_bytes()
        built_sha256 = base64.b64encode(hashlib.sha256(data).digest()).decode()
        if deployed_sha256 and deployed_sha256 != built_sha256:
            logger.warning("%s differs from the deployed code (CodeSha256 %s): running the "
                           "build; run terraform apply to deploy it", fallback, deployed_sha256)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        archive.extractall(target)


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


def temporary_work_dir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="breedops-lambda-")
