"""Lambda `Invoke` served by the emulator: functions run on this machine, not in Docker.

moto 5.2 runs a function in a Docker container and, where there is no Docker engine, answers
`FunctionError: Handled` with "error running docker". `apply()` replaces its `Invoke` so that
the function runs in local execution environments (`lambda_runtime`: processes running the
managed Python runtime's own client, awslambdaric) as Lambda runs it:

- the qualifier (`$LATEST`, a version, an alias) picks the version, unknown ones answer
  `ResourceNotFoundException`; the code is the zip moto stores for that version, unpacked
  once per CodeSha256; handler, runtime, memory, timeout and variables are that version's;
- the function runs as its execution role: its environment holds the role's temporary
  credentials (Lambda's own AssumeRole, `service_roles.assume`), never the emulator's or the
  caller's; `AWS_ENDPOINT_URL` is the emulator, other `AWS_ENDPOINT_URL_<SERVICE>` variables
  are those the emulator process was given (local hosting's SageMaker Runtime);
- environments are reused while the version's code and configuration stay the same, and
  reclaimed after `BREEDOPS_LAMBDA_IDLE_SECONDS` (600) idle; the provisioned concurrency of
  its aliases and versions keeps that many initialised ahead;
- reserved concurrency (`PutFunctionConcurrency`) caps the function's simultaneous
  invocations; the account's concurrency (`BREEDOPS_LAMBDA_ACCOUNT_CONCURRENCY`, 1000 by
  default) caps those of functions without a reservation. Above either, `Invoke` answers 429
  `TooManyRequestsException` ("Rate Exceeded.") with AWS's `Reason`;
- an unhandled exception answers 200 with `X-Amz-Function-Error: Unhandled` and the runtime's
  error payload; a timeout `Sandbox.Timedout`; `InvocationType=Event` answers 202 and runs in
  the background (retried while throttled); `DryRun` answers 204 once the caller is allowed;
- `LogType=Tail` returns the last 4 KB of the invocation's log; every line (the function's,
  `START`/`END`/`REPORT`) goes to CloudWatch Logs, group `/aws/lambda/<function>`, one stream
  per environment, written as the function's role (it needs `logs:CreateLogStream` and
  `logs:PutLogEvents` there, as on AWS; without them the lines are dropped, as on AWS).

Also: `PutFunctionConcurrency` is refused when it would leave the account fewer than 100
unreserved executions (AWS's floor), `GetAccountSettings` reports the account's limits, and
Lambda's authentication errors are Lambda's JSON errors (`AccessDeniedException`), not moto's
XML ones.

Serving: the emulator's journal (`journal.JournalingApp`) serialises requests under one lock
and records every request that may change state. An invocation changes none that a replay must
restore (its log lines and the role's session are separate, journaled requests), and holding
the lock for a function's whole run would serialise every invocation, and every other request
behind it. So `Invoke` is served beside the journal (`journal.UNJOURNALED_ROUTES`): under the
lock moto authenticates and authorises the caller, resolves the qualifier and counts the
invocation against the concurrency limits (all of moto's state, and its seeded random source,
stay behind the lock); then, with the lock released, the function runs and the answer is
built here. Without a server (moto in process) `Invoke` runs the function inline.
"""

from __future__ import annotations

import atexit
import base64
import binascii
import json
import logging
import os
import queue
import re
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from moto.awslambda import urls as lambda_urls
from moto.awslambda.exceptions import InvalidParameterValueException
from moto.awslambda.models import LambdaBackend
from moto.awslambda.responses import LambdaResponse
from moto.core.exceptions import JsonRESTError

from breedops.local import lambda_runtime, service_roles
from breedops.local.lambda_runtime import (
    Concurrency,
    FunctionConfig,
    InvalidZipFile,
    LogLine,
    Pool,
    Result,
    Throttled,
    unpack_code,
)

log = logging.getLogger(__name__)

ACCOUNT_CONCURRENCY_VARIABLE = "BREEDOPS_LAMBDA_ACCOUNT_CONCURRENCY"
DEFAULT_ACCOUNT_CONCURRENCY = 1000
MINIMUM_UNRESERVED = 100
LAMBDA_PRINCIPAL = "lambda.amazonaws.com"
SYNC_PAYLOAD_LIMIT = 6 * 1024 * 1024
ASYNC_PAYLOAD_LIMIT = 1024 * 1024
CREDENTIAL_MARGIN_S = 15 * 60  # environments are renewed before their role session expires
EVENT_RETRY_S = 300.0  # how long an asynchronous invocation waits while throttled
IDLE_VARIABLE = "BREEDOPS_LAMBDA_IDLE_SECONDS"
DEFAULT_IDLE_S = 600.0  # an idle environment is reclaimed after this (provisioned ones stay)
INVOCATIONS_PATH = re.compile(r"^/[^/]+/functions/[^/]+/(invocations|invoke-async)/?$")
ACCOUNT_SETTINGS_PATH = r"{0}/(?P<api_version>[^/]+)/account-settings/?$"
# Lambda's errors for a caller it cannot authenticate or authorise, by moto's code.
AUTH_ERRORS = {"AccessDenied": "AccessDeniedException",
               "InvalidClientTokenId": "UnrecognizedClientException",
               "SignatureDoesNotMatch": "InvalidSignatureException"}
# Lambda sets these itself; a function's own variables cannot change them.
RESERVED_VARIABLES = ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID",
                      "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE",
                      "AWS_SHARED_CREDENTIALS_FILE")

TYPE_RESPONSE = tuple[int, dict[str, str], bytes | str]


# -- errors, as Lambda answers them -------------------------------------------------------------


class TooManyRequestsException(JsonRESTError):
    code = 429

    def __init__(self, reason: str) -> None:
        super().__init__("TooManyRequestsException", "Rate Exceeded.")
        self.reason = reason
        self.description = json.dumps({"Reason": reason, "Type": "User",
                                       "message": "Rate Exceeded."})


class LambdaServiceError(JsonRESTError):
    """An error of the Lambda service itself (502 unless given)."""

    def __init__(self, error_type: str, message: str, status: int = 502) -> None:
        super().__init__(error_type, message)
        self.code = status
        self.description = json.dumps({"Type": "User", "message": message})


class RequestContentError(JsonRESTError):
    def __init__(self, error_type: str, message: str, status: int = 400) -> None:
        super().__init__(error_type, message)
        self.code = status
        self.description = json.dumps({"Type": "User", "message": message})


def _error_response(error: JsonRESTError, request_id: str) -> TYPE_RESPONSE:
    headers = {"Content-Type": "application/json", "X-Amzn-ErrorType": error.error_type,
               "x-amzn-RequestId": request_id}
    return int(error.code), headers, error.description.encode()


def account_concurrency() -> int:
    raw = os.environ.get(ACCOUNT_CONCURRENCY_VARIABLE, "").strip()
    return int(raw) if raw.isdigit() else DEFAULT_ACCOUNT_CONCURRENCY


# -- what an invocation runs --------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """The function version an invocation runs, as moto's state describes it."""

    account: str
    region: str
    function_name: str
    function_arn: str  # unqualified
    invoked_arn: str  # as the caller named it
    version: str  # "$LATEST" or a version number
    code_sha256: str
    code_zip: bytes = field(repr=False)
    handler: str
    runtime: str
    memory_mb: int
    timeout_s: float
    variables: tuple[tuple[str, str], ...]
    role_arn: str
    reserved: int | None
    unreserved_limit: int
    provisioned: int

    @property
    def function_key(self) -> tuple[str, str, str]:
        return self.account, self.region, self.function_name

    @property
    def pool_key(self) -> tuple[str, str, str, str]:
        return self.account, self.region, self.function_name, self.version

    @property
    def fingerprint(self) -> tuple[Any, ...]:
        """What makes a new environment necessary when it changes."""
        return (self.code_sha256, self.handler, self.runtime, self.memory_mb, self.timeout_s,
                self.variables, self.role_arn)

    @property
    def log_group(self) -> str:
        return f"/aws/lambda/{self.function_name}"


def _reserved_by_function(backend: LambdaBackend) -> dict[str, int]:
    return {fn.function_name: int(fn.reserved_concurrency)
            for fn in backend.list_functions() if fn.reserved_concurrency is not None}


def _provisioned_for(backend: LambdaBackend, function_name: str, unqualified_arn: str,
                     version: str) -> int:
    """Provisioned executions of the aliases and versions that resolve to `version`.

    The configurations are those `moto_extensions` keeps on the backend, by qualified ARN.
    """
    configs = getattr(backend, "provisioned_concurrency_configs", {})
    prefix = unqualified_arn + ":"
    count = 0
    for arn, config in list(configs.items()):
        if not arn.startswith(prefix):
            continue
        qualifier = arn[len(prefix):]
        if not qualifier.isdigit():
            aliases = {alias.name: alias for alias in backend.list_aliases(function_name)}
            if qualifier not in aliases:  # deleted since: nothing provisioned for it
                continue
            qualifier = str(aliases[qualifier].function_version)
        if qualifier == version:
            count += int(config.requested)
    return count


def _target(response: LambdaResponse) -> Target:
    """Resolve the request's function and qualifier (moto's errors for unknown ones)."""
    backend: LambdaBackend = response.backend
    named = unquote(response.path.rstrip("/").rsplit("/", 2)[-2])
    qualifier = response.querystring.get("Qualifier", [None])[0]
    function = backend.get_function(named, qualifier)
    latest = backend.get_function(function.function_name)
    unqualified = latest.function_arn
    if qualifier is None:
        tail = named.split(":function:")[-1] if named.startswith("arn:") else named
        qualifier = tail.split(":", 1)[1] if ":" in tail else None
    if function.package_type != "Zip" or not str(function.run_time or "").startswith("python"):
        raise LambdaServiceError(
            "InvalidRuntimeException",
            f"The emulator runs Python functions packaged as zip files; {function.function_name}"
            f" is {function.package_type} {function.run_time}.")
    reserved = latest.reserved_concurrency
    all_reserved = _reserved_by_function(backend)
    version = str(function.version)
    return Target(
        account=backend.account_id, region=backend.region_name,
        function_name=function.function_name, function_arn=unqualified,
        invoked_arn=unqualified + (f":{qualifier}" if qualifier else ""),
        version=version, code_sha256=function.code_sha_256, code_zip=function.code_bytes,
        handler=function.handler or "", runtime=function.run_time,
        memory_mb=int(function.memory_size or 128), timeout_s=float(function.timeout or 3),
        variables=tuple(sorted((function.environment_vars or {}).items())),
        role_arn=function.role, reserved=None if reserved is None else int(reserved),
        unreserved_limit=account_concurrency() - sum(all_reserved.values()),
        provisioned=_provisioned_for(backend, function.function_name, unqualified, version),
    )


# -- the service: environments, concurrency, credentials, logs ----------------------------------


@dataclass
class _PoolEntry:
    pool: Pool
    fingerprint: tuple[Any, ...]
    expires_at: float
    shipper: _LogShipper


class _Service:
    """Every function version's environments, and the invocations in flight."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.endpoint_url: str | None = None
        self.cache_dir: Path | None = None
        self.pools: dict[tuple[str, str, str, str], _PoolEntry] = {}
        self.creating: dict[tuple[str, str, str, str], threading.Lock] = {}
        self.concurrency = Concurrency()
        self._reaper: threading.Thread | None = None

    # -- concurrency ------------------------------------------------------------------------
    def reserve(self, target: Target) -> Callable[[], None]:
        """Count one invocation in flight, or raise 429 when a limit is reached."""
        try:
            return self.concurrency.reserve(target.function_key, target.reserved,
                                            (target.account, target.region),
                                            target.unreserved_limit)
        except Throttled as e:
            raise TooManyRequestsException(e.reason) from None

    # -- environments -----------------------------------------------------------------------
    def pool_for(self, target: Target) -> _PoolEntry:
        """The version's environments; new ones when its code or configuration changed."""
        with self.lock:
            entry = self.pools.get(target.pool_key)
            if entry is not None and self._current(entry, target):
                return self._provision(entry, target)
            creating = self.creating.setdefault(target.pool_key, threading.Lock())
        with creating:
            with self.lock:
                entry = self.pools.get(target.pool_key)
            if entry is not None and self._current(entry, target):
                return self._provision(entry, target)
            if entry is not None:
                self._retire(target.pool_key, entry)
            credentials = assume_role(target)
            shipper = _LogShipper(target, credentials, self.endpoint_url)
            config = FunctionConfig(
                name=target.function_name, code_dir=self._code_dir(target),
                handler=target.handler, version=target.version, runtime=target.runtime,
                memory_mb=target.memory_mb, timeout_s=target.timeout_s,
                environment=self._variables(target, credentials), log_group=target.log_group)
            pool = Pool(config, provisioned=target.provisioned, on_log=shipper.ship)
            entry = _PoolEntry(pool, target.fingerprint, _expiry(credentials), shipper)
            with self.lock:
                self.pools[target.pool_key] = entry
                if self._reaper is None:
                    self._reaper = threading.Thread(target=self._reap, daemon=True,
                                                    name="lambda-reaper")
                    self._reaper.start()
            return entry

    def _reap(self) -> None:
        """Reclaim idle environments, as Lambda does, so a long session does not keep every
        function's processes forever."""
        raw = os.environ.get(IDLE_VARIABLE, "").strip()
        idle_s = float(raw) if raw.replace(".", "", 1).isdigit() else DEFAULT_IDLE_S
        while True:
            time.sleep(min(30.0, max(1.0, idle_s / 2)))
            with self.lock:
                pools = [entry.pool for entry in self.pools.values()]
            for pool in pools:
                pool.reap(idle_s)

    @staticmethod
    def _current(entry: _PoolEntry, target: Target) -> bool:
        return (entry.fingerprint == target.fingerprint and not entry.pool.closed
                and entry.expires_at - time.time() > CREDENTIAL_MARGIN_S)

    @staticmethod
    def _provision(entry: _PoolEntry, target: Target) -> _PoolEntry:
        entry.pool.set_provisioned(target.provisioned)  # a new configuration: in the background
        return entry

    def _retire(self, key: tuple[str, str, str, str], entry: _PoolEntry) -> None:
        with self.lock:
            if self.pools.get(key) is entry:
                del self.pools[key]
        entry.pool.close()  # busy environments finish their invocation first
        entry.shipper.close()

    def retire_function(self, account: str, region: str, function_name: str) -> None:
        with self.lock:
            keys = [k for k in self.pools if k[:3] == (account, region, function_name)]
            entries = [(k, self.pools[k]) for k in keys]
        for key, entry in entries:
            self._retire(key, entry)

    def provisioned_changed(self, account: str, region: str, function_name: str,
                            version: str, count: int) -> None:
        with self.lock:
            entry = self.pools.get((account, region, function_name, version))
        if entry is not None:
            entry.pool.set_provisioned(count)

    def shutdown(self) -> None:
        with self.lock:
            entries, self.pools = list(self.pools.values()), {}
        for entry in entries:
            entry.pool.close_all()
            entry.shipper.close()

    def _code_dir(self, target: Target) -> Path:
        """The version's code, unpacked once per content (shared)."""
        root = (self.cache_dir or Path(tempfile.gettempdir()) /
                f"breedops-lambda-{os.getuid()}") / "code"
        try:
            return unpack_code(target.code_zip, root)
        except InvalidZipFile as e:
            raise LambdaServiceError("InvalidZipFileException", str(e)) from None

    def _variables(self, target: Target, credentials: dict[str, Any]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k.startswith("AWS_ENDPOINT_URL_")}
        if self.endpoint_url:
            env["AWS_ENDPOINT_URL"] = self.endpoint_url
            # SageMaker Runtime is local hosting, not the emulator (whose moto would answer
            # InvokeEndpoint with canned filler): where `breedops local up` starts it.
            env.setdefault("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", _hosting_url())
        env.update(dict(target.variables))
        env.update({
            "AWS_REGION": target.region, "AWS_DEFAULT_REGION": target.region,
            "AWS_ACCESS_KEY_ID": credentials["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": credentials["SecretAccessKey"],
            "AWS_SESSION_TOKEN": credentials["SessionToken"],
            "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        })
        return env

    # -- invocations ------------------------------------------------------------------------
    def run(self, target: Target, request_id: str, payload: bytes,
            client_context: str | None = None) -> Result:
        entry = self.pool_for(target)
        return entry.pool.invoke(request_id, payload, target.invoked_arn, client_context)


SERVICE = _Service()


def _hosting_url() -> str:
    from breedops.local.emulator import DEFAULT_HOSTING_PORT, HOSTING_PORT_VARIABLE

    port = os.environ.get(HOSTING_PORT_VARIABLE, "").strip()
    return f"http://127.0.0.1:{port if port.isdigit() else DEFAULT_HOSTING_PORT}"


def _expiry(credentials: dict[str, Any]) -> float:
    expiration = credentials.get("Expiration")
    if hasattr(expiration, "timestamp"):
        return float(expiration.timestamp())
    if isinstance(expiration, str):
        from datetime import datetime

        try:
            return datetime.fromisoformat(expiration).timestamp()
        except ValueError:
            pass
    return time.time() + service_roles.SESSION_SECONDS


def assume_role(target: Target) -> dict[str, Any]:
    """The execution role's credentials, as Lambda assumes it for this function."""
    from breedops.local.sagemaker_jobs import records

    try:
        return service_roles.assume(role_arn=target.role_arn, service=LAMBDA_PRINCIPAL,
                                    session_name=target.function_name,
                                    source_arn=target.function_arn, region=target.region)
    except service_roles.ServiceRoleError as e:
        raise RequestContentError("InvalidParameterValueException",
                                  "The role defined for the function cannot be assumed by "
                                  f"Lambda. ({e.message})") from None
    except records.DispatchError:
        pass  # moto in process, no emulator app to journal through: STS directly
    from moto.sts.models import sts_backends

    role = sts_backends[target.account]["aws"].assume_role(
        region_name=target.region, role_session_name=target.function_name[:64],
        role_arn=target.role_arn, policy=None, duration=service_roles.SESSION_SECONDS, external_id=None)
    return {"AccessKeyId": role.access_key_id, "SecretAccessKey": role.secret_access_key,
            "SessionToken": role.session_token, "Expiration": role.expiration}


# -- CloudWatch Logs, as the function's role ----------------------------------------------------


class _LogShipper:
    """Sends one function version's log lines to `/aws/lambda/<function>`, in order.

    Over HTTP to the emulator with the role's credentials, as Lambda writes them on AWS (so
    the role's policies decide, and the journal keeps the events); straight into moto's logs
    backend when there is no emulator server (moto in process).
    """

    def __init__(self, target: Target, credentials: dict[str, Any],
                 endpoint_url: str | None) -> None:
        self.target = target
        self.credentials = credentials
        self.endpoint_url = endpoint_url
        self._queue: queue.Queue[tuple[str, list[LogLine]] | None] = queue.Queue()
        self._streams: set[str] = set()
        self._warned = False
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"lambda-logs-{target.function_name}")
        self._thread.start()

    def ship(self, stream: str, lines: list[LogLine]) -> None:
        self._queue.put((stream, list(lines)))

    def close(self) -> None:
        self._queue.put(None)

    def _run(self) -> None:
        client = None
        while True:
            item = self._queue.get()
            if item is None:
                return
            stream, lines = item
            try:
                if self.endpoint_url is None:
                    self._put_in_process(stream, lines)
                    continue
                if client is None:
                    client = self._client()
                self._put(client, stream, lines)
            except Exception as e:  # noqa: BLE001 -- a log Lambda cannot write is dropped
                if not self._warned:
                    self._warned = True
                    log.warning("the log of %s is not written to %s (dropped, as Lambda "
                                "drops it): %s", self.target.function_name, self.target.log_group,
                                " ".join(re.sub(r"<[^>]+>", " ", str(e)).split()))

    def _client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.session.Session(
            aws_access_key_id=self.credentials["AccessKeyId"],
            aws_secret_access_key=self.credentials["SecretAccessKey"],
            aws_session_token=self.credentials["SessionToken"],
            region_name=self.target.region,
        ).client("logs", endpoint_url=self.endpoint_url,
                 config=Config(retries={"total_max_attempts": 3, "mode": "standard"}))

    def _put(self, client: Any, stream: str, lines: list[LogLine]) -> None:
        group = self.target.log_group
        if stream not in self._streams:
            try:
                client.create_log_stream(logGroupName=group, logStreamName=stream)
            except client.exceptions.ResourceAlreadyExistsException:
                pass
            except client.exceptions.ResourceNotFoundException:
                # Lambda creates a missing group when the role may (Terraform creates it here).
                client.create_log_group(logGroupName=group)
                client.create_log_stream(logGroupName=group, logStreamName=stream)
            self._streams.add(stream)
        client.put_log_events(logGroupName=group, logStreamName=stream,
                              logEvents=_events(lines))

    def _put_in_process(self, stream: str, lines: list[LogLine]) -> None:
        from moto.logs.models import logs_backends

        backend = logs_backends[self.target.account][self.target.region]
        group = self.target.log_group
        if group not in backend.groups:
            backend.create_log_group(group, {})
        if stream not in backend.groups[group].streams:
            backend.create_log_stream(group, stream)
        backend.put_log_events(group, stream, _events(lines))


def _events(lines: list[LogLine]) -> list[dict[str, Any]]:
    """Log events in chronological order (CloudWatch refuses a batch that is not)."""
    events, last = [], 0
    for line in lines:
        last = max(last, line.timestamp_ms)
        events.append({"timestamp": last, "message": line.message})
    return events


# -- Invoke -------------------------------------------------------------------------------------

# Set by the route that serves Invoke beside the journal: `Invoke` then leaves its prepared
# invocation here instead of running it under the journal's lock.
_DEFERRED: ContextVar[list[_Prepared] | None] = ContextVar("breedops_lambda_deferred",
                                                          default=None)


@dataclass
class _Prepared:
    """An authorised, resolved invocation counted against the concurrency limits."""

    target: Target
    request_id: str
    payload: bytes
    tail: bool
    client_context: str | None
    release: Callable[[], None]

    def run(self) -> TYPE_RESPONSE:
        try:
            result = SERVICE.run(self.target, self.request_id, self.payload,
                                 self.client_context)
        except JsonRESTError as e:
            return _error_response(e, self.request_id)
        except lambda_runtime.RuntimeFailure as e:
            return _error_response(LambdaServiceError("ServiceException", str(e), 500),
                                   self.request_id)
        finally:
            self.release()
        return 200, self.headers(result), result.payload

    def headers(self, result: Result) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "x-amzn-RequestId": self.request_id,
                   "X-Amz-Executed-Version": self.target.version}
        if result.failed:
            headers["X-Amz-Function-Error"] = "Unhandled"
        if self.tail:
            headers["X-Amz-Log-Result"] = base64.b64encode(result.tail().encode()).decode()
        return headers


def _payload(response: LambdaResponse, limit: int) -> bytes:
    raw = response.raw_body
    payload = raw.encode() if isinstance(raw, str) else bytes(raw or b"")
    if len(payload) > limit:
        raise RequestContentError("RequestTooLargeException",
                                  f"Request must be smaller than {limit} bytes for the "
                                  "InvokeFunction operation", 413)
    if not payload:
        return b"{}"
    try:
        json.loads(payload)
    except (ValueError, UnicodeDecodeError) as e:
        raise RequestContentError("InvalidRequestContentException",
                                  f"Could not parse request body into json: {e}") from None
    return payload


def _client_context(response: LambdaResponse) -> str | None:
    encoded = response.headers.get("X-Amz-Client-Context")
    if not encoded:
        return None
    try:
        return base64.b64decode(encoded).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise RequestContentError("InvalidRequestContentException",
                                  "Client context must be a valid Base64-encoded JSON object."
                                  ) from None


def _invoke(self: LambdaResponse) -> TYPE_RESPONSE:
    """`Invoke`: the caller is authorised by now (moto's `call_action`)."""
    invocation_type = self.headers.get("X-Amz-Invocation-Type") or "RequestResponse"
    target = _target(self)
    request_id = str(uuid.uuid4())
    if invocation_type == "DryRun":
        return 204, {"status": "204", "x-amzn-RequestId": request_id}, ""
    if invocation_type == "Event":
        payload = _payload(self, ASYNC_PAYLOAD_LIMIT)
        threading.Thread(target=_run_event, args=(target, request_id, payload),
                         name=f"lambda-event-{target.function_name}", daemon=True).start()
        return 202, {"status": "202", "x-amzn-RequestId": request_id}, ""
    if invocation_type != "RequestResponse":
        raise InvalidParameterValueException(f"Unsupported InvocationType: {invocation_type}")
    payload = _payload(self, SYNC_PAYLOAD_LIMIT)
    tail = self.headers.get("X-Amz-Log-Type") == "Tail"
    prepared = _Prepared(target, request_id, payload, tail, _client_context(self),
                         SERVICE.reserve(target))
    deferred = _DEFERRED.get()
    if deferred is not None:  # served beside the journal: run once its lock is released
        deferred.append(prepared)
        return 200, {"status": "200"}, ""
    status, headers, body = prepared.run()
    return status, {**headers, "status": str(status)}, body


def _invoke_async(self: LambdaResponse) -> TYPE_RESPONSE:
    """`InvokeAsync` (deprecated): an Event invocation of $LATEST."""
    target = _target(self)
    payload = _payload(self, ASYNC_PAYLOAD_LIMIT)
    request_id = str(uuid.uuid4())
    threading.Thread(target=_run_event, args=(target, request_id, payload),
                     name=f"lambda-event-{target.function_name}", daemon=True).start()
    return 202, {"status": "202", "x-amzn-RequestId": request_id}, json.dumps({"Status": 202})


def _run_event(target: Target, request_id: str, payload: bytes) -> None:
    """An asynchronous invocation: queued while throttled, then run (its result is logged)."""
    deadline, delay = time.monotonic() + EVENT_RETRY_S, 0.2
    while True:
        try:
            release = SERVICE.reserve(target)
            break
        except TooManyRequestsException:
            if time.monotonic() > deadline:
                log.warning("asynchronous invocation %s of %s dropped: throttled for %.0f s",
                            request_id, target.function_name, EVENT_RETRY_S)
                return
            time.sleep(delay)
            delay = min(delay * 2, 10.0)
    try:
        result = SERVICE.run(target, request_id, payload)
        if result.failed:
            log.info("asynchronous invocation %s of %s failed: %s", request_id,
                     target.function_name, result.error_type)
    except Exception:
        log.exception("asynchronous invocation %s of %s", request_id, target.function_name)
    finally:
        release()


def serve_invoke(environ: dict, start_response: Callable, app: Callable,
                 lock: threading.Lock) -> Iterable[bytes]:
    """Serve one `Invoke` beside the journal: moto's part under `lock`, the run without it."""
    if SERVICE.endpoint_url is None:
        host = environ.get("SERVER_NAME") or "127.0.0.1"
        host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        SERVICE.endpoint_url = f"http://{host}:{environ.get('SERVER_PORT', '80')}"
    deferred: list[_Prepared] = []
    answered: list[Any] = []

    def capture(status: str, headers: list, exc_info: Any = None) -> Callable:
        answered[:] = [status, headers]
        return lambda data: None

    token = _DEFERRED.set(deferred)
    try:
        with lock:
            body = b"".join(app(environ, capture))
    finally:
        _DEFERRED.reset(token)
    if not deferred:  # an error, DryRun or Event: moto's answer as it is
        start_response(answered[0], answered[1])
        return [body]
    status, headers, payload = deferred[0].run()
    data = payload.encode() if isinstance(payload, str) else payload
    start_response(f"{status} {HTTPStatus(status).phrase}",
                   [*headers.items(), ("Content-Length", str(len(data)))])
    return [data]


def is_invoke(environ: dict) -> bool:
    return (environ.get("REQUEST_METHOD") == "POST"
            and INVOCATIONS_PATH.match(environ.get("PATH_INFO", "")) is not None)


# -- concurrency settings -----------------------------------------------------------------------

FLOOR_MESSAGE = ("Specified ReservedConcurrentExecutions for function decreases account's "
                 f"UnreservedConcurrentExecution below its minimum value of "
                 f"[{MINIMUM_UNRESERVED}].")


def _put_function_concurrency(original: Callable) -> Callable:
    def put_function_concurrency(self: LambdaBackend, function_name: str,
                                 reserved_concurrency: Any) -> Any:
        function = self.get_function(function_name)
        others = sum(count for name, count in _reserved_by_function(self).items()
                     if name != function.function_name)
        if account_concurrency() - others - int(reserved_concurrency) < MINIMUM_UNRESERVED:
            raise InvalidParameterValueException(FLOOR_MESSAGE)
        return original(self, function_name, reserved_concurrency)

    put_function_concurrency.__wrapped__ = original  # type: ignore[attr-defined]
    return put_function_concurrency


def _get_account_settings(self: LambdaResponse) -> TYPE_RESPONSE:
    functions = list(self.backend.list_functions())
    limit = account_concurrency()
    reserved = sum(_reserved_by_function(self.backend).values())
    body = {
        "AccountLimit": {"TotalCodeSize": 80530636800, "CodeSizeUnzipped": 262144000,
                         "CodeSizeZipped": 52428800, "ConcurrentExecutions": limit,
                         "UnreservedConcurrentExecutions": limit - reserved},
        "AccountUsage": {"TotalCodeSize": sum(int(f.code_size or 0) for f in functions),
                         "FunctionCount": len(functions)},
    }
    return 200, {}, json.dumps(body)


def _put_provisioned(original: Callable) -> Callable:
    """After a provisioned concurrency change, warm (or stop counting) the environments."""

    def put_provisioned_concurrency_config(self: LambdaResponse) -> TYPE_RESPONSE:
        answer = original(self)
        try:
            target = _target(self)
        except Exception:  # noqa: BLE001 -- the change itself succeeded
            return answer
        SERVICE.provisioned_changed(target.account, target.region, target.function_name,
                                    target.version, target.provisioned)
        return answer

    put_provisioned_concurrency_config.__wrapped__ = original  # type: ignore[attr-defined]
    return put_provisioned_concurrency_config


def _delete_function(original: Callable) -> Callable:
    def delete_function(self: LambdaBackend, function_name: str,
                        qualifier: str | None = None) -> Any:
        name = self.get_function(function_name).function_name
        result = original(self, function_name, qualifier)
        SERVICE.retire_function(self.account_id, self.region_name, name)
        return result

    delete_function.__wrapped__ = original  # type: ignore[attr-defined]
    return delete_function


def _lambda_auth_errors(original: Callable) -> Callable:
    """Lambda answers authentication and authorization failures in JSON, as Lambda does."""

    def call_action(self: LambdaResponse) -> TYPE_RESPONSE:
        status, headers, body = original(self)
        text = body.decode() if isinstance(body, bytes) else body
        if status in (401, 403) and isinstance(text, str) and text.lstrip().startswith("<"):
            code = re.search(r"<Code>([^<]+)</Code>", text)
            message = re.search(r"<Message>([^<]*)</Message>", text)
            if code and code.group(1) in AUTH_ERRORS:
                error = AUTH_ERRORS[code.group(1)]
                detail = message.group(1) if message else ""
                if error == "AccessDeniedException":
                    from breedops.local.iam_enforcement import lambda_resource

                    detail = f"{detail} on resource: {lambda_resource(self)}"
                text = json.dumps({"Type": "User", "message": detail})
                headers = {**headers, "Content-Type": "application/json",
                           "X-Amzn-ErrorType": error}
                return status, headers, text
        return status, headers, body

    call_action.__wrapped__ = original  # type: ignore[attr-defined]
    return call_action


# -- registration -------------------------------------------------------------------------------


def configure(endpoint_url: str | None = None, cache_dir: Path | None = None) -> None:
    """Where functions reach the emulator (default: the address Invoke arrives at) and where
    their code is unpacked (default: a per-user folder in the temporary directory)."""
    if endpoint_url:
        SERVICE.endpoint_url = endpoint_url
    if cache_dir:
        SERVICE.cache_dir = cache_dir


def shutdown() -> None:
    """Stop every execution environment (the emulator is stopping)."""
    SERVICE.shutdown()


def apply() -> None:
    """Serve Lambda's Invoke locally (idempotent; after `moto_extensions.apply()`)."""
    if getattr(LambdaResponse, "_breedops_invoke", False):
        return
    from breedops.local import journal

    LambdaResponse.invoke = _invoke  # type: ignore[method-assign]
    LambdaResponse.invoke_async = _invoke_async  # type: ignore[method-assign]
    LambdaResponse.get_account_settings = _get_account_settings  # type: ignore[attr-defined]
    LambdaResponse.call_action = _lambda_auth_errors(  # type: ignore[method-assign]
        LambdaResponse.call_action)
    if hasattr(LambdaResponse, "put_provisioned_concurrency_config"):
        LambdaResponse.put_provisioned_concurrency_config = _put_provisioned(  # type: ignore[attr-defined]
            LambdaResponse.put_provisioned_concurrency_config)
    LambdaBackend.put_function_concurrency = _put_function_concurrency(  # type: ignore[method-assign]
        LambdaBackend.put_function_concurrency)
    LambdaBackend.delete_function = _delete_function(  # type: ignore[method-assign]
        LambdaBackend.delete_function)
    lambda_urls.url_paths[ACCOUNT_SETTINGS_PATH] = LambdaResponse.dispatch
    journal.UNJOURNALED_ROUTES.append((is_invoke, serve_invoke))
    atexit.register(shutdown)
    LambdaResponse._breedops_invoke = True  # type: ignore[attr-defined]
