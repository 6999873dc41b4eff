"""Lambda execution environments on this machine, run by the managed Python runtime's own client.

Each execution environment is one process running `awslambdaric` (the AWS Lambda Runtime
Interface Client, the same client the managed `python3.x` runtimes run) with the function's
handler, against a Lambda Runtime API that the environment serves on a loopback port:

- `GET  /2018-06-01/runtime/invocation/next` hands the runtime its next event (and, the first
  time, marks the end of its initialisation: the `Init Duration`);
- `POST /2018-06-01/runtime/invocation/<id>/response` and `…/<id>/error` end an invocation;
- `POST /2018-06-01/runtime/init/error` reports a handler that cannot be loaded.

So the context object, the error payload of an unhandled exception (`errorMessage`,
`errorType`, `requestId`, `stackTrace`), the marshalling and the log format are the runtime's
own, not an imitation. The environment adds what the Lambda service adds: the deadline (a
timed-out invocation kills the environment, `Sandbox.Timedout`), the `START`/`END`/`REPORT`
lines, the memory high-water mark, and the attribution of every line the process prints to the
invocation that printed it.

A `Pool` keeps the environments of one function version: warm ones are reused, provisioned
ones are initialised before they are needed; `Concurrency` holds invocations to Lambda's limits,
and `unpack_code` turns a function's zip into its code directory. Nothing here knows about moto:
every local run of a function goes through these, the emulator's `Invoke` (`lambda_invoke`, as
the function's role) and `lambda_runner` (benchmarks and tests, without an API) alike.
"""

from __future__ import annotations

import array
import fcntl
import hashlib
import io
import json
import logging
import math
import os
import queue
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import termios
import threading
import time
import uuid
import zipfile
from collections import Counter
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

API_PREFIX = "/2018-06-01/runtime"
INIT_TIMEOUT_S = 10.0  # Lambda's limit on the init phase of an on-demand environment
TAIL_BYTES = 4096  # what `LogType=Tail` returns: the last 4 KB of the invocation's log
MAX_RESPONSE_BYTES = 6 * 1024 * 1024  # the synchronous response payload limit
ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"
# What the process inherits from this one: nothing that names credentials, endpoints or
# settings of the emulator itself; the caller gives everything else explicitly.
INHERITED_VARIABLES = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "HOME", "LD_LIBRARY_PATH")


class RuntimeFailure(Exception):
    """An environment could not be started (the runtime client is missing, a bad code dir)."""


class InvalidZipFile(RuntimeFailure):
    """The function's zip cannot be unpacked."""


class Throttled(Exception):
    """An invocation over a concurrency limit; `reason` is Lambda's (the 429's `Reason`)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class FunctionConfig:
    """What an execution environment runs, as the function's configuration gives it."""

    name: str
    code_dir: Path
    handler: str
    version: str = "$LATEST"
    runtime: str = "python3.11"
    memory_mb: int = 128
    timeout_s: float = 3.0
    # The process's variables besides the runtime's own (credentials, region, endpoints, the
    # function's Environment.Variables): the caller decides; nothing else is inherited.
    environment: Mapping[str, str] = field(default_factory=dict)
    log_group: str = ""

    def __post_init__(self) -> None:
        if not self.log_group:
            object.__setattr__(self, "log_group", f"/aws/lambda/{self.name}")


@dataclass(frozen=True)
class LogLine:
    timestamp_ms: int
    message: str


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Result:
    """One invocation: the response (or error) payload, its figures and its log."""

    request_id: str
    payload: bytes
    error_type: str | None = None  # the function's error type; None when it succeeded
    duration_ms: float = 0.0
    memory_mb: int = 128
    max_memory_mb: int = 0
    init_ms: float | None = None  # set on the invocation that paid for a cold start
    status: str | None = None  # REPORT's `Status:` (timeout, error) when the sandbox failed
    log: list[LogLine] = field(default_factory=list)
    log_stream: str = ""
    init_failed: bool = False  # the function never started: `payload` is the init error

    @property
    def failed(self) -> bool:
        return self.error_type is not None

    def report_line(self) -> str:
        """The REPORT line Lambda writes after every invocation."""
        line = (f"REPORT RequestId: {self.request_id}\tDuration: {self.duration_ms:.2f} ms\t"
                f"Billed Duration: {max(1, math.ceil(self.duration_ms))} ms\t"
                f"Memory Size: {self.memory_mb} MB\tMax Memory Used: {self.max_memory_mb} MB")
        if self.init_ms is not None:
            line += f"\tInit Duration: {self.init_ms:.2f} ms"
        if self.status:
            line += f"\tStatus: {self.status}"
        return line

    def log_text(self) -> str:
        return "".join(line.message + "\n" for line in self.log)

    def tail(self) -> str:
        """The last 4 KB of the invocation's log, as `X-Amz-Log-Result` carries it (decoded)."""
        data = self.log_text().encode("utf-8")[-TAIL_BYTES:]
        while data and (data[0] & 0xC0) == 0x80:  # do not start inside a UTF-8 sequence
            data = data[1:]
        return data.decode("utf-8")

    def json_payload(self) -> Any:
        return json.loads(self.payload) if self.payload else None


def timestamp(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def log_stream_name(version: str) -> str:
    """A new environment's stream: `YYYY/MM/DD/[$LATEST]<32 hex>`, as Lambda names them."""
    return f"{datetime.now(UTC):%Y/%m/%d}/[{version}]{uuid.uuid4().hex}"


def unpack_code(code_zip: bytes, root: Path) -> Path:
    """The function's code unpacked under `root`, once per content (shared by its versions)."""
    root.mkdir(parents=True, exist_ok=True)
    code_dir = root / hashlib.sha256(code_zip).hexdigest()
    if code_dir.is_dir():
        return code_dir
    unpacking = Path(tempfile.mkdtemp(prefix=".unpack-", dir=root))
    try:
        with zipfile.ZipFile(io.BytesIO(code_zip)) as archive:
            archive.extractall(unpacking)
    except (zipfile.BadZipFile, OSError) as e:
        shutil.rmtree(unpacking, ignore_errors=True)
        raise InvalidZipFile(f"Lambda was unable to unzip the code: {e}") from None
    try:
        unpacking.rename(code_dir)
    except OSError:  # another invocation unpacked the same code first
        shutil.rmtree(unpacking, ignore_errors=True)
    return code_dir


class Concurrency:
    """Lambda's concurrency limits: a function with reserved concurrency runs at most that many
    invocations at once; the others share what the account leaves unreserved."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight: Counter[Hashable] = Counter()
        self._unreserved_in_flight: Counter[Hashable] = Counter()

    def reserve(self, function: Hashable, reserved: int | None, account: Hashable = None,
                unreserved_limit: int | None = None) -> Callable[[], None]:
        """Count one invocation of `function` in flight and return its release (idempotent),
        or raise Throttled when a limit is reached (no account limit without one)."""
        with self._lock:
            if reserved is not None:
                if self._in_flight[function] >= reserved:
                    raise Throttled("ReservedFunctionConcurrentInvocationLimitExceeded")
            elif (unreserved_limit is not None
                  and self._unreserved_in_flight[account] >= unreserved_limit):
                raise Throttled("ConcurrentInvocationLimitExceeded")
            self._in_flight[function] += 1
            if reserved is None:
                self._unreserved_in_flight[account] += 1
        released = threading.Event()

        def release() -> None:
            if released.is_set():
                return
            released.set()
            with self._lock:
                self._in_flight[function] -= 1
                if reserved is None:
                    self._unreserved_in_flight[account] -= 1

        return release


def runtime_client_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("awslambdaric") is not None


# -- the Runtime API of one environment ---------------------------------------------------------


@dataclass
class _Pending:
    """An invocation handed to the runtime, until it answers."""

    request_id: str
    payload: bytes
    deadline_ms: int
    invoked_function_arn: str
    client_context: str | None = None
    done: threading.Event = field(default_factory=threading.Event)
    response: bytes = b""
    error_type: str | None = None
    dispatched_at: float = 0.0
    finished_at: float = 0.0


class _RuntimeAPIHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _RuntimeAPIServer

    def setup(self) -> None:
        super().setup()
        # Headers and body go out as two writes: without this, Nagle's algorithm and the
        # client's delayed ACK hold every event back for 40 ms.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        if self.path != f"{API_PREFIX}/invocation/next":
            self._send(404, {"errorMessage": "not found", "errorType": "NotFound"})
            return
        pending = self.server.environment.next_invocation()
        if pending is None:  # the environment is closing
            self.close_connection = True
            self._send(410, {"errorMessage": "environment closed", "errorType": "Closed"})
            return
        headers = {
            "Lambda-Runtime-Aws-Request-Id": pending.request_id,
            "Lambda-Runtime-Deadline-Ms": str(pending.deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": pending.invoked_function_arn,
            "Lambda-Runtime-Trace-Id": f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};"
                                       "Sampled=0",
        }
        if pending.client_context:
            headers["Lambda-Runtime-Client-Context"] = pending.client_context
        self._send_raw(200, pending.payload, "application/json", headers)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = self.path
        environment = self.server.environment
        if path == f"{API_PREFIX}/init/error":
            environment.init_failed(body, self.headers.get(ERROR_TYPE_HEADER))
            self._send(202, {"status": "OK"})
            return
        parts = path[len(API_PREFIX):].strip("/").split("/")
        if len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
            error_type = None
            if parts[2] == "error":
                error_type = self.headers.get(ERROR_TYPE_HEADER) or "Unhandled"
            elif len(body) > MAX_RESPONSE_BYTES:
                environment.answer(parts[1], json.dumps({
                    "errorMessage": "Response payload size exceeded maximum allowed payload "
                                    f"size ({MAX_RESPONSE_BYTES} bytes).",
                    "errorType": "Function.ResponseSizeTooLarge"}).encode(),
                    "Function.ResponseSizeTooLarge")
                self._send(413, {"errorMessage": "Payload too large",
                                 "errorType": "RequestEntityTooLarge"})
                return
            if environment.answer(parts[1], body, error_type):
                self._send(202, {"status": "OK"})
            else:
                self._send(400, {"errorMessage": "Invalid request ID",
                                 "errorType": "InvalidRequestID"})
            return
        self._send(404, {"errorMessage": "not found", "errorType": "NotFound"})

    def _send(self, status: int, body: dict[str, Any]) -> None:
        self._send_raw(status, json.dumps(body).encode(), "application/json", {})

    def _send_raw(self, status: int, body: bytes, content_type: str,
                  headers: dict[str, str]) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the runtime went away (killed at a timeout)
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _RuntimeAPIServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, environment: Environment) -> None:
        super().__init__(("127.0.0.1", 0), _RuntimeAPIHandler)
        self.environment = environment

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # a runtime killed at its deadline, or an environment closing
        super().handle_error(request, client_address)


# -- one execution environment ------------------------------------------------------------------


class Environment:
    """One execution environment: a runtime process, its Runtime API and its captured output.

    Serves one invocation at a time, as Lambda's environments do.
    """

    def __init__(self, config: FunctionConfig, initialization_type: str = "on-demand") -> None:
        self.config = config
        self.initialization_type = initialization_type
        self.log_stream = log_stream_name(config.version)
        self.started = time.perf_counter()
        self.init_ms: float | None = None
        self.init_error: tuple[bytes, str] | None = None
        self.dead = False
        self.last_used = time.monotonic()
        self._ready = threading.Event()
        self._assignments: queue.Queue[_Pending | None] = queue.Queue()
        self._pending: _Pending | None = None
        self._state = threading.Lock()
        # Output: lines go to `_sink` (the current invocation's log, or the idle buffer).
        self._output_lock = threading.Lock()
        self._sink: list[LogLine] = [LogLine(now_ms(), self._init_start_line())]
        self._partial = b""
        self._eof = False
        self._server = _RuntimeAPIServer(self)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                         name=f"lambda-api-{config.name}", daemon=True).start()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "awslambdaric", config.handler],
                cwd=config.code_dir, env=self._process_environment(),
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: a timeout kills all of it
            )
        except OSError as e:
            self._server.shutdown()
            self._server.server_close()
            raise RuntimeFailure(f"cannot start the runtime of {config.name}: {e}") from e
        assert self.process.stdout is not None
        self._stdout_fd = self.process.stdout.fileno()
        threading.Thread(target=self._read_output, name=f"lambda-out-{config.name}",
                         daemon=True).start()

    # -- process setup ----------------------------------------------------------------------
    def _init_start_line(self) -> str:
        from importlib.metadata import PackageNotFoundError, version

        try:
            client = version("awslambdaric")
        except PackageNotFoundError:
            client = "?"
        python = f"{sys.version_info.major}.{sys.version_info.minor}"
        return (f"INIT_START Runtime Version: python:{python}.local\t"
                f"Runtime Version ARN: local:awslambdaric:{client}")

    def _process_environment(self) -> dict[str, str]:
        config = self.config
        host, port = self._server.server_address[:2]
        env = {k: os.environ[k] for k in INHERITED_VARIABLES if k in os.environ}
        env.update(config.environment)
        env.update({
            # The runtime's own variables, which a function cannot override (as on Lambda).
            "AWS_LAMBDA_RUNTIME_API": f"{host}:{port}",
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{config.runtime}",
            "AWS_LAMBDA_FUNCTION_NAME": config.name,
            "AWS_LAMBDA_FUNCTION_VERSION": config.version,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config.memory_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": config.log_group,
            "AWS_LAMBDA_LOG_STREAM_NAME": self.log_stream,
            "AWS_LAMBDA_INITIALIZATION_TYPE": self.initialization_type,
            "LAMBDA_TASK_ROOT": str(config.code_dir),
            "_HANDLER": config.handler,
            "TZ": ":UTC",
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
        })
        paths = [str(config.code_dir), env.get("PYTHONPATH", "")]
        env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
        env.setdefault("LANG", "en_US.UTF-8")
        return env

    # -- output capture ---------------------------------------------------------------------
    def _read_output(self) -> None:
        fd = self._stdout_fd
        while True:
            try:
                readable, _, _ = select.select([fd], [], [], 0.5)
            except (OSError, ValueError):
                break
            if not readable:
                if self.process.poll() is not None and not self._pending_bytes():
                    break
                continue
            with self._output_lock:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    self._eof = True
                    if self._partial:
                        self._sink.append(LogLine(now_ms(), self._decode(self._partial)))
                        self._partial = b""
                    break
                data = self._partial + chunk
                *lines, self._partial = data.split(b"\n")  # not \r: a multi-line error is one
                stamp = now_ms()                            # event, as in CloudWatch
                self._sink.extend(LogLine(stamp, self._decode(line)) for line in lines)
        with self._output_lock:
            self._eof = True

    @staticmethod
    def _decode(line: bytes) -> str:
        return line.decode("utf-8", errors="replace")

    def _pending_bytes(self) -> int:
        buffer = array.array("i", [0])
        try:
            fcntl.ioctl(self._stdout_fd, termios.FIONREAD, buffer)
        except OSError:
            return 0
        return buffer[0]

    def _collect(self, into: list[LogLine], timeout_s: float = 1.0) -> list[LogLine]:
        """Wait until everything the process wrote so far has been read, then send what it
        writes next to `into`; the lines gathered until now."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self._output_lock:
                if self._eof or self._pending_bytes() == 0 or time.monotonic() > deadline:
                    collected, self._sink = self._sink, into
                    return collected
            time.sleep(0.002)

    # -- the Runtime API's side -------------------------------------------------------------
    def next_invocation(self) -> _Pending | None:
        if not self._ready.is_set():
            self.init_ms = (time.perf_counter() - self.started) * 1000
            self._ready.set()
        pending = self._assignments.get()
        if pending is not None:
            pending.dispatched_at = time.perf_counter()
        return pending

    def answer(self, request_id: str, body: bytes, error_type: str | None) -> bool:
        with self._state:
            pending = self._pending
            if pending is None or pending.request_id != request_id or pending.done.is_set():
                return False
            pending.response, pending.error_type = body, error_type
            pending.finished_at = time.perf_counter()
            pending.done.set()
            return True

    def init_failed(self, body: bytes, error_type: str | None) -> None:
        self.init_error = (body, error_type or "Runtime.Unknown")
        self._ready.set()

    # -- the service's side -----------------------------------------------------------------
    def wait_ready(self, timeout_s: float | None = None) -> bool:
        """Wait for the end of the init phase; False when the function failed to initialise."""
        limit = time.monotonic() + (timeout_s if timeout_s is not None else
                                    max(INIT_TIMEOUT_S, self.config.timeout_s))
        while not self._ready.wait(0.05):
            if self.process.poll() is not None or time.monotonic() > limit:
                break
        ok = self._ready.is_set() and self.init_error is None and self.process.poll() is None
        if not ok:
            if self.init_ms is None:
                self.init_ms = (time.perf_counter() - self.started) * 1000
            if self.init_error is None:
                timed_out = self.process.poll() is None
                self.init_error = (json.dumps({
                    "errorType": "Runtime.ExitError" if not timed_out else "Sandbox.Timedout",
                    "errorMessage": (f"Init phase timed out after {INIT_TIMEOUT_S:.2f} seconds"
                                     if timed_out else
                                     f"Runtime exited with error: {self._exit_status()}"),
                }).encode(), "Runtime.ExitError" if not timed_out else "Sandbox.Timedout")
            self.kill()
        return ok

    def init_log(self) -> list[LogLine]:
        """The lines of the init phase not yet handed out (with the INIT_START line)."""
        return self._collect([])

    def invoke(self, request_id: str, payload: bytes, invoked_function_arn: str,
               client_context: str | None = None) -> Result:
        """Run one invocation to its end (response, error, timeout or crash)."""
        config = self.config
        lines: list[LogLine] = []
        earlier = self._collect(lines)  # the init phase's lines, or a background thread's
        timeout_ms = int(config.timeout_s * 1000)
        pending = _Pending(request_id, payload, now_ms() + timeout_ms, invoked_function_arn,
                           client_context)
        started_ms = now_ms()
        with self._state:
            self._pending = pending
        started = time.perf_counter()
        self._assignments.put(pending)
        deadline = time.monotonic() + config.timeout_s
        while not pending.done.wait(0.02):
            if self.process.poll() is not None or time.monotonic() >= deadline:
                break
        result = Result(request_id=request_id, payload=b"", memory_mb=config.memory_mb,
                        max_memory_mb=self.max_memory_mb(), log_stream=self.log_stream)
        if pending.done.is_set():
            result.payload, result.error_type = pending.response, pending.error_type
            began = pending.dispatched_at or started
            result.duration_ms = (pending.finished_at - began) * 1000
            ended_by = None
        elif self.process.poll() is None:  # the deadline: Lambda stops the sandbox
            ended_by = "timeout"
            result.duration_ms = config.timeout_s * 1000
            result.error_type, result.status = "Sandbox.Timedout", "timeout"
            result.payload = json.dumps({
                "errorType": "Sandbox.Timedout",
                "errorMessage": f"RequestId: {request_id} Error: Task timed out after "
                                f"{config.timeout_s:.2f} seconds"}).encode()
            self.kill()
        else:  # the runtime died (os._exit, a signal, out of memory)
            ended_by = "exit"
            result.duration_ms = (time.perf_counter() - started) * 1000
            result.error_type, result.status = "Runtime.ExitError", "error"
            result.payload = json.dumps({
                "errorType": "Runtime.ExitError",
                "errorMessage": f"RequestId: {request_id} Error: Runtime exited with error: "
                                f"{self._exit_status()}"}).encode()
            self.kill()
        with self._state:
            self._pending = None
        self.last_used = time.monotonic()
        output = self._collect([])  # what it prints while idle goes with its next invocation
        end_ms = now_ms()
        log_lines = [*earlier, LogLine(started_ms, f"START RequestId: {request_id} "
                                                   f"Version: {config.version}"), *output]
        if ended_by == "timeout":
            log_lines.append(LogLine(end_ms, f"{timestamp(end_ms)} {request_id} Task timed out "
                                             f"after {config.timeout_s:.2f} seconds"))
        elif ended_by == "exit":
            log_lines.append(LogLine(end_ms, f"RequestId: {request_id} Error: Runtime exited "
                                             f"with error: {self._exit_status()}\n"
                                             "Runtime.ExitError"))
        log_lines.append(LogLine(end_ms, f"END RequestId: {request_id}"))
        result.log = log_lines
        return result

    def max_memory_mb(self) -> int:
        """The process's peak resident memory (VmHWM), as `Max Memory Used` reports it."""
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return 0
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return max(1, round(int(line.split()[1]) / 1024))
        return 0

    def _exit_status(self) -> str:
        code = self.process.poll()
        if code is None:
            return "running"
        if code < 0:
            try:
                return f"signal: {signal.Signals(-code).name.removeprefix('SIG').lower()}"
            except ValueError:
                return f"signal: {-code}"
        return f"exit status {code}"

    def kill(self) -> None:
        """Stop the process (its whole group) now; the environment is unusable after."""
        self.dead = True
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                self.process.kill()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def close(self) -> None:
        self._assignments.put(None)
        self.kill()
        self._server.shutdown()
        self._server.server_close()
        if self.process.stdout is not None:
            # The reader thread sees EOF (or a closed descriptor) and ends.
            deadline = time.monotonic() + 1
            while not self._eof and time.monotonic() < deadline:
                time.sleep(0.01)
            self.process.stdout.close()


# -- the environments of one function version ---------------------------------------------------


LogSink = Callable[[str, list[LogLine]], None]


class Pool:
    """The execution environments of one function version.

    Warm environments are reused; `provisioned` of them are initialised ahead (their
    invocations show no Init Duration). Environments that time out or crash are replaced.
    `on_log(stream, lines)` receives every environment's log lines as they complete (init
    phase of a provisioned environment, each invocation).
    """

    def __init__(self, config: FunctionConfig, provisioned: int = 0,
                 on_log: LogSink | None = None) -> None:
        self.config = config
        self.on_log = on_log
        self.closed = False
        self._lock = threading.Lock()
        self._idle: list[Environment] = []
        self._all: set[Environment] = set()
        self._provisioned = 0
        self.set_provisioned(provisioned, wait=True)

    def set_provisioned(self, count: int, wait: bool = False) -> None:
        """Keep `count` environments initialised ahead of invocations."""
        with self._lock:
            missing = max(0, count - self._provisioned)
            self._provisioned = max(self._provisioned, count)
        if not missing:
            return
        threads = [threading.Thread(target=self._provision, daemon=True) for _ in range(missing)]
        for thread in threads:
            thread.start()
        if wait:
            for thread in threads:
                thread.join()

    def _provision(self) -> None:
        try:
            environment = Environment(self.config, "provisioned-concurrency")
        except RuntimeFailure as e:
            log.warning("provisioned environment of %s: %s", self.config.name, e)
            return
        ready = environment.wait_ready()
        self._emit(environment.log_stream, environment.init_log())
        if not ready:
            log.warning("provisioned environment of %s failed to initialise", self.config.name)
            environment.close()
            return
        with self._lock:
            if self.closed:
                environment.close()
                return
            self._all.add(environment)
            self._idle.append(environment)

    def invoke(self, request_id: str, payload: bytes, invoked_function_arn: str,
               client_context: str | None = None) -> Result:
        """One invocation, in a warm environment when one is idle, else a new one."""
        with self._lock:
            environment = self._idle.pop() if self._idle else None
        init_ms = None
        if environment is None:
            environment = Environment(self.config)
            with self._lock:
                self._all.add(environment)
            if not environment.wait_ready():
                return self._init_failure(environment, request_id)
            init_ms = environment.init_ms
        try:
            result = environment.invoke(request_id, payload, invoked_function_arn, client_context)
        except Exception:
            self._discard(environment)
            raise
        result.init_ms = init_ms
        self._emit(environment.log_stream, [*result.log, LogLine(now_ms(), result.report_line())])
        result.log.append(LogLine(now_ms(), result.report_line()))
        if environment.dead:
            self._discard(environment)
        else:
            with self._lock:
                if self.closed:
                    self._all.discard(environment)
                    closing = True
                else:
                    self._idle.append(environment)
                    closing = False
            if closing:
                environment.close()
        return result

    def _init_failure(self, environment: Environment, request_id: str) -> Result:
        """A function that cannot initialise: the runtime's init error, as Lambda returns it."""
        body, error_type = environment.init_error or (b"{}", "Runtime.Unknown")
        init_lines = environment.init_log()
        end = now_ms()
        lines = [*init_lines,
                 LogLine(end, f"INIT_REPORT Init Duration: {environment.init_ms or 0:.2f} ms\t"
                              f"Phase: init\tStatus: error\tError Type: {error_type}"),
                 LogLine(end, f"START RequestId: {request_id} Version: {self.config.version}"),
                 LogLine(end, f"END RequestId: {request_id}")]
        result = Result(request_id=request_id, payload=body, error_type=error_type,
                        memory_mb=self.config.memory_mb, init_ms=environment.init_ms,
                        status="error", log=lines, log_stream=environment.log_stream,
                        init_failed=True)
        report = LogLine(now_ms(), result.report_line())
        self._emit(environment.log_stream, [*lines, report])
        result.log.append(report)
        self._discard(environment)
        return result

    def _discard(self, environment: Environment) -> None:
        with self._lock:
            self._all.discard(environment)
            if environment in self._idle:
                self._idle.remove(environment)
        environment.close()

    def _emit(self, stream: str, lines: list[LogLine]) -> None:
        if self.on_log is not None and lines:
            try:
                self.on_log(stream, lines)
            except Exception:
                log.exception("shipping the log of %s failed", self.config.name)

    def reap(self, idle_s: float) -> int:
        """Stop environments idle for `idle_s`, as Lambda reclaims them; the provisioned
        count stays initialised. The number stopped."""
        now = time.monotonic()
        with self._lock:
            keep = sorted(self._idle, key=lambda e: e.last_used, reverse=True)
            spare = keep[self._provisioned:]
            stale = [e for e in spare if now - e.last_used >= idle_s]
            for environment in stale:
                self._idle.remove(environment)
                self._all.discard(environment)
        for environment in stale:
            environment.close()
        return len(stale)

    @property
    def size(self) -> int:
        with self._lock:
            return len(self._all)

    def close(self) -> None:
        """Stop every idle environment now; busy ones stop when their invocation ends."""
        with self._lock:
            self.closed = True
            idle, self._idle = self._idle, []
            for environment in idle:
                self._all.discard(environment)
        for environment in idle:
            environment.close()

    def close_all(self) -> None:
        """Stop every environment, busy or not (shutdown)."""
        self.close()
        with self._lock:
            busy, self._all = list(self._all), set()
        for environment in busy:
            environment.kill()
