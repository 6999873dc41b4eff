"""Local SageMaker hosting: the SageMaker Runtime `InvokeEndpoint` protocol over local workers.

`POST /endpoints/<name>/invocations` is first authorized as SageMaker Runtime does it: the
emulator, which holds the account's keys and policies, checks the caller's signature and its
`sagemaker:InvokeEndpoint` permission on the endpoint's ARN (the service route `authorize`);
a denial is answered with AWS's error, and a request the emulator cannot check is refused
(503), never served unchecked. The request then resolves endpoint -> endpoint configuration ->
model -> model data URL through the SageMaker API of the emulator (as the SageMaker service,
with hosting's own credentials), downloads the model.tar.gz as the model's execution role (the
credentials SageMaker gets by assuming it), extracts it, and serves it with as many worker
processes as the variant's instance count, each loading the tarball's own `code/inference.py`.
The endpoint is re-resolved after a short TTL, so `update_endpoint` takes effect without a
restart; new InService endpoints are loaded in the background, as SageMaker loads a model
before it reports the endpoint InService. Errors have the shapes botocore parses
(`x-amzn-ErrorType`, `ValidationError`, `ModelError` with the container's status).

With `--model-dir DIR` it serves the container contract instead: `GET /ping` and
`POST /invocations` for one extracted model directory, unchecked (a container is reached by
SageMaker only, not by callers of the Runtime API).

The HTTP layer is the standard library's `ThreadingHTTPServer`: the server only relays bytes to
worker processes, so a framework would add a dependency and latency without removing code.
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import itertools
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import threading
import time
import urllib.error
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from breedops.errors import BreedopsError
from breedops.local.front_door import refusal
from breedops.settings import DEFAULT_REGION, state_dir

logger = logging.getLogger(__name__)

DEFAULT_PORT = int(os.environ.get("BREEDOPS_HOSTING_PORT", "5567"))
# How long a resolved endpoint is trusted before the emulator is asked again.
RESOLVE_TTL_SECONDS = float(os.environ.get("BREEDOPS_HOSTING_TTL_SECONDS", "2.0"))
# A local machine has few cores: more workers than this only thrash.
MAX_WORKERS = int(os.environ.get("BREEDOPS_HOSTING_MAX_WORKERS", "8"))
# How often the served process looks for new InService endpoints to load ahead of requests.
PRELOAD_SECONDS = float(os.environ.get("BREEDOPS_HOSTING_PRELOAD_SECONDS", "5"))
# How long preloading leaves an endpoint that failed to load (a request still tries it).
PRELOAD_RETRY_SECONDS = 60.0
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # InvokeEndpoint's request limit
# SageMaker gives a real-time endpoint's container 60 s to answer an invocation (queueing
# included); then the runtime answers ModelError with TIMEOUT_MESSAGE and the worker is replaced.
INVOCATION_TIMEOUT_SECONDS = float(os.environ.get("BREEDOPS_HOSTING_INVOCATION_TIMEOUT", "60"))
TIMEOUT_MESSAGE = ("Your invocation timed out while waiting for a response from container "
                   "primary. Review the latency metrics for each container in Amazon "
                   "CloudWatch, resolve the issue, and try again.")
# A request's line, headers and body must all arrive within this long (and each socket read or
# write within it): a slow or stalled client must not hold a server thread.
REQUEST_TIMEOUT_SECONDS = float(os.environ.get("BREEDOPS_HOSTING_REQUEST_TIMEOUT", "20"))
# A worker must load its model within this long (SageMaker's container startup health check
# allows up to 3600 s; a local model is small).
WORKER_START_TIMEOUT_SECONDS = float(os.environ.get("BREEDOPS_HOSTING_START_TIMEOUT", "600"))
# A worker that cannot be restarted is retried after this long, doubling up to 30 s.
RESPAWN_DELAY_SECONDS = 0.5
# The largest uncompressed model hosting unpacks (SageMaker's default instance volume is 30 GB).
MAX_MODEL_BYTES = int(os.environ.get("BREEDOPS_HOSTING_MAX_MODEL_BYTES", str(10 * 1024**3)))
CONTENT_LENGTH = re.compile(r"\d{1,19}")
INVOCATIONS_PATH = re.compile(r"^/endpoints/(?P<name>[^/]+)/invocations$")
WORKER_SCRIPT = Path(__file__).with_name("model_worker.py")
FORWARDED_HEADERS = ("X-Amzn-SageMaker-Custom-Attributes",)
INVOKE_ACTION = "sagemaker:InvokeEndpoint"
# How long a request waits for the emulator's decision before it is refused (503).
AUTHORIZE_TIMEOUT_SECONDS = float(os.environ.get("BREEDOPS_HOSTING_AUTHORIZE_TIMEOUT", "5"))
SAGEMAKER_PRINCIPAL = "sagemaker.amazonaws.com"
HEAD_ERROR_CODES = {"403": "AccessDenied", "404": "NoSuchKey"}
# Execution-role credentials are renewed this long before they expire (or, without an
# expiration, after this long).
CREDENTIALS_MARGIN_SECONDS = 300.0
CREDENTIALS_DEFAULT_SECONDS = 3600.0


class HostingError(BreedopsError):
    """Local hosting cannot serve a model (bad tarball, unreachable emulator)."""


class RuntimeApiError(Exception):
    """An error answered in the SageMaker Runtime wire format."""

    def __init__(self, status: int, error_type: str, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.status, self.error_type, self.fields = status, error_type, fields

    def body(self) -> bytes:
        return json.dumps({"__type": self.error_type, "message": str(self), **self.fields}).encode()


@dataclass(frozen=True)
class WorkerReply:
    status: int
    body: bytes
    timed_out: bool = False


def _timed_out() -> WorkerReply:
    return WorkerReply(504, TIMEOUT_MESSAGE.encode(), timed_out=True)


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


class ModelWorker:
    """One `model_worker.py` process; it answers one request at a time.

    A worker that misses a deadline (loading, or answering) is killed: a hung model cannot be
    interrupted any other way, and its pool starts a fresh one in its place.
    """

    def __init__(self, model_dir: Path, threads: int,
                 start_timeout_seconds: float = WORKER_START_TIMEOUT_SECONDS) -> None:
        self.killed = False
        self.process = subprocess.Popen(
            [sys.executable, "-P", str(WORKER_SCRIPT), str(model_dir), str(threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )
        deadline = WATCHDOG.arm(start_timeout_seconds, self.kill)
        try:
            ready = self._read_frame()
        finally:
            in_time = WATCHDOG.disarm(deadline)
        if ready is None or not ready[0].get("ready"):
            self.kill()
            self.wait()
            why = "failed to load" if in_time else (
                f"did not load within {start_timeout_seconds:g} s")
            raise HostingError(f"the model in {model_dir} {why} (see the worker log)")

    def invoke(self, header: dict[str, Any], body: bytes, timeout_seconds: float) -> WorkerReply:
        """The worker's answer, or a timed-out reply (the worker killed) after the timeout."""
        assert self.process.stdin is not None
        deadline = WATCHDOG.arm(timeout_seconds, self.kill)
        try:
            self.process.stdin.write(
                json.dumps({**header, "length": len(body)}).encode() + b"\n" + body
            )
            self.process.stdin.flush()
            frame = self._read_frame()
        except (OSError, ValueError):  # a broken pipe; a torn frame from a dying worker
            frame = None
        finally:
            in_time = WATCHDOG.disarm(deadline)
        if not in_time:
            return _timed_out()
        if frame is None:
            return WorkerReply(500, b'{"error": "WorkerDied", "message": "the worker exited"}')
        return WorkerReply(int(frame[0]["status"]), frame[1])

    def healthy(self) -> bool:
        return not self.killed and self.process.poll() is None

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        self.killed = True
        try:
            self.process.kill()
        except OSError:  # already reaped
            pass

    def stop(self) -> None:
        """Ask the worker to exit (end of its input); `wait` reaps it."""
        if self.process.stdin and not self.process.stdin.closed:
            try:
                self.process.stdin.close()
            except OSError:  # it died with input unread
                pass

    def wait(self) -> None:
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream and not stream.closed:
                try:
                    stream.close()
                except OSError:
                    pass

    def close(self) -> None:
        self.stop()
        self.wait()

    def _read_frame(self) -> tuple[dict[str, Any], bytes] | None:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            return None
        header = json.loads(line)
        body = self.process.stdout.read(int(header.get("length", 0)))
        if len(body) < int(header.get("length", 0)):
            return None  # it died mid-answer
        return header, body


class PoolRetiredError(Exception):
    """The pool was replaced after the request picked it; the request asks again."""


class WorkerPool:
    """`size` workers for one model directory; a request waits for an idle one.

    Every slot stays filled: a worker that dies or misses the invocation timeout is replaced in
    the background, retried until a new one starts. Retiring is graceful: requests already
    waiting are still served, later ones are refused with `PoolRetiredError` so that they go to
    the pool that replaced this one; each worker stops once no request needs it, and `join`
    reaps them all.
    """

    def __init__(self, model_dir: Path, size: int,
                 invocation_timeout_seconds: float = INVOCATION_TIMEOUT_SECONDS) -> None:
        self.model_dir, self.size = model_dir, size
        self.invocation_timeout_seconds = invocation_timeout_seconds
        self._threads = max(1, (os.cpu_count() or 1) // size)
        self._cond = threading.Condition()
        self._idle: list[ModelWorker] = []
        self._stopping: list[ModelWorker] = []  # stopped or dead, for `join` to reap
        self._retired = threading.Event()
        self._waiting = 0
        self._slots = 0  # workers running or being replaced, not yet reaped
        try:
            for _ in range(size):
                self._idle.append(ModelWorker(model_dir, self._threads))
                self._slots += 1
        except BaseException:
            for worker in self._idle:
                worker.close()
            raise
        logger.info("serving %s with %d worker(s)", model_dir, size)

    def invoke(self, header: dict[str, Any], body: bytes) -> WorkerReply:
        """The answer of the next idle worker; waiting for one counts against the timeout, as
        a request queued in the container does."""
        deadline = time.monotonic() + self.invocation_timeout_seconds
        with self._cond:
            if self._retired.is_set():
                raise PoolRetiredError(str(self.model_dir))
            self._waiting += 1
            try:
                while True:
                    while not self._idle:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            return _timed_out()
                        self._cond.wait(remaining)
                    worker = self._idle.pop()
                    if worker.healthy():
                        break
                    self._respawn(worker)  # it died idle: this request waits for another
            finally:
                self._waiting -= 1
                self._drain_locked()
        try:
            return worker.invoke(header, body, max(0.0, deadline - time.monotonic()))
        finally:
            self._give_back(worker)

    def retire(self) -> None:
        """Refuse new requests; stop the idle workers now and the busy ones when done."""
        with self._cond:
            self._retired.set()
            self._drain_locked()

    def join(self, timeout_seconds: float | None = None) -> bool:
        """Reap the workers of a retired pool as they stop; True once every one has exited."""
        deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
        while True:
            with self._cond:
                while not self._stopping and self._slots > 0:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._cond.wait(remaining)
                if not self._stopping:
                    return True
                stopping, self._stopping = self._stopping, []
            for worker in stopping:
                worker.wait()
            with self._cond:
                self._slots -= len(stopping)
                self._cond.notify_all()

    def _needed_locked(self) -> bool:
        return not self._retired.is_set() or self._waiting > 0

    def _drain_locked(self) -> None:
        if not self._needed_locked():
            for worker in self._idle:
                worker.stop()  # all stop at once: a worker's exit takes a while under load
            self._stopping.extend(self._idle)
            self._idle.clear()
            self._cond.notify_all()

    def _give_back(self, worker: ModelWorker) -> None:
        with self._cond:
            if worker.healthy() and self._needed_locked():
                self._idle.append(worker)
                self._cond.notify()
                return
            if worker.healthy() or not self._needed_locked():
                worker.stop()
                self._stopping.append(worker)
                self._cond.notify_all()
                return
        self._respawn(worker)

    def _respawn(self, worker: ModelWorker) -> None:
        """Replace a dead or killed worker: a slot is never given up while the pool is needed."""
        logger.warning("a worker of %s %s; starting a new one", self.model_dir,
                       "timed out" if worker.killed else "died")
        threading.Thread(target=self._replace, args=(worker,), daemon=True).start()

    def _replace(self, dead: ModelWorker) -> None:
        dead.kill()
        dead.wait()
        delay = RESPAWN_DELAY_SECONDS
        while True:
            with self._cond:
                if not self._needed_locked():
                    self._slots -= 1
                    self._cond.notify_all()
                    return
            try:
                worker = ModelWorker(self.model_dir, self._threads)
            except (HostingError, OSError) as e:
                logger.error("could not restart a worker of %s (retrying in %g s): %s",
                             self.model_dir, delay, e)
                with self._cond:  # a retirement wakes it early, to give the slot up
                    self._cond.wait_for(lambda: not self._needed_locked(), delay)
                delay = min(delay * 2, 30.0)
                continue
            with self._cond:
                if self._needed_locked():
                    self._idle.append(worker)
                    self._cond.notify()
                else:
                    worker.stop()
                    self._stopping.append(worker)
                    self._cond.notify_all()
            return


@dataclass(frozen=True)
class EndpointTarget:
    """What an endpoint resolves to right now."""

    endpoint_name: str
    config_name: str
    variant_name: str
    model_data_url: str
    instance_count: int
    execution_role_arn: str = field(default="")


class EndpointRegistry:
    """Resolves endpoints through the emulator and keeps one worker pool per live target."""

    def __init__(self, cache_dir: Path, ttl_seconds: float = RESOLVE_TTL_SECONDS,
                 invocation_timeout_seconds: float = INVOCATION_TIMEOUT_SECONDS,
                 max_model_bytes: int = MAX_MODEL_BYTES) -> None:
        self.invocation_timeout_seconds = invocation_timeout_seconds
        self.max_model_bytes = max_model_bytes
        _sweep_partials(cache_dir)
        self._clients: dict[str, Any] = {}
        self._clients_lock = threading.Lock()
        self._closed = threading.Event()
        self._cache_dir, self._ttl_seconds = cache_dir, ttl_seconds
        self._lock = threading.Lock()
        self._resolved: dict[str, tuple[float, EndpointTarget]] = {}
        self._refreshing: set[str] = set()
        self._loading: set[str] = set()
        self._first_loads: dict[str, threading.Lock] = {}
        self._pools: dict[str, tuple[EndpointTarget, WorkerPool]] = {}
        self._account_id: str | None = None
        self._role_clients: dict[tuple[str, str], tuple[float, Any]] = {}
        self._role_lock = threading.Lock()

    def pool_for(self, endpoint_name: str) -> tuple[EndpointTarget, WorkerPool]:
        """The pool serving `endpoint_name`.

        A changed endpoint is rolled out as SageMaker does it, blue/green: the old workers keep
        serving while the new ones load in the background, then the old ones retire.
        """
        target = self._resolve(endpoint_name)
        with self._lock:
            current = self._pools.get(endpoint_name)
            if current and (current[0] == target or endpoint_name in self._loading):
                return current
            if current:
                self._loading.add(endpoint_name)
                threading.Thread(target=self._roll_out, args=(endpoint_name, target),
                                 daemon=True).start()
                return current
            first_load = self._first_loads.setdefault(endpoint_name, threading.Lock())
        with first_load:  # concurrent first requests wait for one load, not one each
            with self._lock:
                current = self._pools.get(endpoint_name)
            if current is None:
                current = (target, self._start_pool(target))
                with self._lock:
                    self._pools[endpoint_name] = current
            return current

    def _roll_out(self, endpoint_name: str, target: EndpointTarget) -> None:
        try:
            pool = self._start_pool(target)
        except Exception:  # keep serving the old model; the next request tries again
            logger.exception("could not load the new model of endpoint %s", endpoint_name)
            with self._lock:
                self._loading.discard(endpoint_name)
            return
        with self._lock:
            old = self._pools.get(endpoint_name)
            self._pools[endpoint_name] = (target, pool)
            self._loading.discard(endpoint_name)
        logger.info("endpoint %s now serves %s", endpoint_name, target.config_name)
        if old:  # its requests in flight finish on it; the workers stop as they drain
            old[1].retire()
            old[1].join()

    def _start_pool(self, target: EndpointTarget) -> WorkerPool:
        return WorkerPool(self._extract(target), min(target.instance_count, MAX_WORKERS),
                          self.invocation_timeout_seconds)

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            pools = [pool for _, pool in self._pools.values()]
            self._pools.clear()
        for pool in pools:
            pool.retire()
        for pool in pools:
            pool.join()

    def preload_forever(self, interval_seconds: float) -> None:
        """Load every InService endpoint's model as it appears, as SageMaker has it loaded
        before it reports InService; runs (in a daemon thread) until `close`."""
        from botocore.exceptions import BotoCoreError, ClientError

        failures: dict[str, tuple[str, float]] = {}  # name -> (error, when)
        while not self._closed.is_set():
            try:
                # Newest first (AWS's default order; moto's is the reverse): an endpoint just
                # created never waits behind older ones, as each has its own instances on AWS.
                pages = self._client("sagemaker").get_paginator("list_endpoints").paginate(
                    StatusEquals="InService", SortBy="CreationTime", SortOrder="Descending")
                names = [e["EndpointName"] for page in pages for e in page["Endpoints"]]
            except (BotoCoreError, ClientError) as e:  # the emulator is not up (yet)
                logger.debug("cannot list endpoints: %s", e)
                names = []
            for name in names:
                failed = failures.get(name)
                if failed and time.monotonic() - failed[1] < PRELOAD_RETRY_SECONDS:
                    continue  # each try starts a worker that may fail the same way again
                try:
                    self.pool_for(name)
                    failures.pop(name, None)
                except HostingError as e:  # e.g. the execution role cannot read the model
                    if not failed or failed[0] != str(e):  # said once, not every round
                        logger.warning("endpoint %s cannot be loaded: %s", name, e)
                    failures[name] = (str(e), time.monotonic())
                except (RuntimeApiError, BotoCoreError, ClientError) as e:
                    logger.debug("cannot preload endpoint %s: %s", name, e)  # a request says why
            self._closed.wait(interval_seconds)

    def _client(self, service: str) -> Any:
        """boto3 clients, made at first use: `breedops local up` starts hosting before it
        writes `.local/env`, so the emulator's variables may only be readable from there."""
        with self._clients_lock:
            if service not in self._clients:
                import boto3

                load_local_environment()
                region = os.environ.get("AWS_DEFAULT_REGION", DEFAULT_REGION)
                self._clients[service] = boto3.client(service, region_name=region)
            return self._clients[service]

    def account_id(self) -> str:
        if self._account_id is None:
            self._account_id = self._client("sts").get_caller_identity()["Account"]
        return self._account_id

    def region(self) -> str:
        load_local_environment()
        return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION",
                                                              DEFAULT_REGION)

    def endpoint_arn(self, endpoint_name: str) -> str:
        """The endpoint's ARN; SageMaker lowercases names in its ARNs."""
        region = self.region()
        partition = ("aws-cn" if region.startswith("cn-") else
                     "aws-us-gov" if region.startswith("us-gov-") else "aws")
        return (f"arn:{partition}:sagemaker:{region}:{self.account_id()}:"
                f"endpoint/{endpoint_name.lower()}")

    def authorize(self, method: str, raw_path: str, headers: dict[str, str],
                  body: bytes, endpoint_name: str) -> str | None:
        """The caller's principal, once the emulator allowed it `InvokeEndpoint` on the
        endpoint; else the RuntimeApiError AWS answers (503 when nobody could decide)."""
        from botocore.exceptions import BotoCoreError, ClientError

        from breedops.local.service_roles import ServiceRoleError, call_service

        path, _, query = raw_path.partition("?")
        try:
            payload = {"method": method, "path": path, "query": query, "headers": headers,
                       "body_sha256": hashlib.sha256(body).hexdigest(),
                       "action": INVOKE_ACTION, "resource": self.endpoint_arn(endpoint_name)}
            answer = call_service("authorize", payload, timeout=AUTHORIZE_TIMEOUT_SECONDS)
        except (ServiceRoleError, BotoCoreError, ClientError, urllib.error.URLError,
                OSError, ValueError) as e:
            logger.error("cannot authorize a request to endpoint %s: %s", endpoint_name, e)
            raise RuntimeApiError(
                503, "ServiceUnavailable",
                f"The request cannot be authorized right now (the emulator at "
                f"{os.environ.get('AWS_ENDPOINT_URL', '?')} did not decide: {e}); retry.",
            ) from e
        if not answer.get("allowed"):
            error = answer.get("error") or {}
            raise RuntimeApiError(int(error.get("status", 403)),
                                  str(error.get("code", "AccessDeniedException")),
                                  str(error.get("message", "Access denied")))
        return answer.get("principal")

    def _s3_as_execution_role(self, target: EndpointTarget) -> tuple[str, Any]:
        """An S3 client with the credentials SageMaker gets by assuming the model's execution
        role for this endpoint (cached until shortly before they expire), and the role."""
        from breedops.local.service_roles import ServiceRoleError, call_service

        role = target.execution_role_arn
        if not role:
            raise HostingError(f"Failed to download model data for endpoint "
                               f"{target.endpoint_name}: its model has no ExecutionRoleArn")
        source = self.endpoint_arn(target.endpoint_name)
        with self._role_lock:
            cached = self._role_clients.get((role, source))
            if cached and cached[0] > time.time():
                return role, cached[1]
            session_name = re.sub(r"[^\w+=,.@-]", "-", f"SageMaker-{target.endpoint_name}")[:64]
            try:
                credentials = call_service("assume-role", {
                    "RoleArn": role, "Service": SAGEMAKER_PRINCIPAL,
                    "SessionName": session_name, "SourceArn": source,
                    "Region": self.region()}, timeout=AUTHORIZE_TIMEOUT_SECONDS)["Credentials"]
            except ServiceRoleError as e:
                raise HostingError(
                    f"Failed to download model data for endpoint {target.endpoint_name}: "
                    f"SageMaker cannot assume the execution role {role}: {e.message}") from e
            except (urllib.error.URLError, OSError) as e:
                raise HostingError(f"the emulator cannot be reached to assume the execution "
                                   f"role {role}: {e}") from e
            import boto3

            client = boto3.session.Session(
                aws_access_key_id=credentials["AccessKeyId"],
                aws_secret_access_key=credentials["SecretAccessKey"],
                aws_session_token=credentials.get("SessionToken"),
                region_name=self.region()).client("s3")
            self._role_clients[(role, source)] = (_renew_at(credentials), client)
            return role, client

    def _resolve(self, endpoint_name: str) -> EndpointTarget:
        """The endpoint's target; a stale one is served while a refresh runs in the background,
        so the emulator round trips never sit in a request's latency once an endpoint is known.
        """
        cached = self._resolved.get(endpoint_name)
        if cached is None:
            return self._lookup(endpoint_name)
        expires, target = cached
        if expires <= time.monotonic() and endpoint_name not in self._refreshing:
            self._refreshing.add(endpoint_name)
            threading.Thread(target=self._refresh, args=(endpoint_name,), daemon=True).start()
        return target

    def _refresh(self, endpoint_name: str) -> None:
        try:
            self._lookup(endpoint_name)
        except RuntimeApiError:  # deleted: the next request looks it up and gets the error
            self._resolved.pop(endpoint_name, None)
            with self._lock:
                gone = self._pools.pop(endpoint_name, None)
            if gone:
                gone[1].retire()
                gone[1].join()
        except Exception:  # an emulator hiccup: keep serving what we know, retry after the TTL
            logger.exception("could not refresh endpoint %s", endpoint_name)
        finally:
            self._refreshing.discard(endpoint_name)

    def _lookup(self, endpoint_name: str) -> EndpointTarget:
        """Endpoint -> endpoint configuration -> model -> model data URL, from the emulator."""
        from botocore.exceptions import ClientError

        try:
            endpoint = self._client("sagemaker").describe_endpoint(EndpointName=endpoint_name)
        except ClientError as e:
            if e.response["Error"]["Code"] in ("ValidationException", "ValidationError"):
                raise RuntimeApiError(
                    400, "ValidationError",
                    f"Endpoint {endpoint_name} of account {self.account_id()} not found.",
                ) from e
            raise
        config = self._client("sagemaker").describe_endpoint_config(
            EndpointConfigName=endpoint["EndpointConfigName"]
        )
        variant = config["ProductionVariants"][0]
        model = self._client("sagemaker").describe_model(ModelName=variant["ModelName"])
        container = model.get("PrimaryContainer") or model["Containers"][0]
        live = {v["VariantName"]: v for v in endpoint.get("ProductionVariants", [])}
        count = live.get(variant["VariantName"], {}).get(
            "CurrentInstanceCount", variant.get("InitialInstanceCount", 1)
        )
        target = EndpointTarget(
            endpoint_name=endpoint_name,
            config_name=endpoint["EndpointConfigName"],
            variant_name=variant["VariantName"],
            model_data_url=container["ModelDataUrl"],
            instance_count=max(1, int(count)),
            execution_role_arn=model.get("ExecutionRoleArn", ""),
        )
        self._resolved[endpoint_name] = (time.monotonic() + self._ttl_seconds, target)
        return target

    def _extract(self, target: EndpointTarget) -> Path:
        """Download, as the execution role, and unpack model.tar.gz once per object version
        (keyed by its ETag)."""
        model_data_url = target.model_data_url
        parsed = urlparse(model_data_url)
        if parsed.scheme != "s3":
            raise HostingError(f"the model data URL {model_data_url} is not an s3:// URL")
        bucket, key = parsed.netloc, parsed.path.lstrip("/")
        from botocore.exceptions import ClientError

        role, s3 = self._s3_as_execution_role(target)

        def unreadable(e: ClientError) -> HostingError:
            error = e.response.get("Error", {})
            code = str(error.get("Code", "?"))
            code = HEAD_ERROR_CODES.get(code, code)  # a HEAD answer has no body to name it
            return HostingError(
                f"Failed to download model data for endpoint {target.endpoint_name}: "
                f"{model_data_url} cannot be read as the execution role {role}: "
                f"{code} ({error.get('Message') or e}). Please ensure that there is an object "
                "located at the URL and that the role passed to CreateModel has permissions "
                "to download the model.")

        try:
            head = s3.head_object(Bucket=bucket, Key=key)
        except ClientError as e:
            raise unreadable(e) from e
        if int(head.get("ContentLength", 0)) > self.max_model_bytes:
            raise _too_large(model_data_url, self.max_model_bytes)
        digest = hashlib.sha256(f"{model_data_url}|{head['ETag']}".encode()).hexdigest()[:16]
        extracted = self._cache_dir / digest
        if (extracted / ".complete").exists():
            return extracted
        # The process id in the name tells a later start which leftovers are stale.
        partial = self._cache_dir / f"{digest}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        archive = partial.with_name(f"{partial.name}.tar.gz")
        partial.mkdir(parents=True)
        try:
            try:
                s3.download_file(bucket, key, str(archive))
            except ClientError as e:
                raise unreadable(e) from e
            _unpack(archive, partial, self.max_model_bytes, model_data_url)
            (partial / ".complete").touch()
            try:
                partial.rename(extracted)
            except OSError:  # another thread finished first
                if not (extracted / ".complete").exists():
                    raise
        finally:
            archive.unlink(missing_ok=True)
            shutil.rmtree(partial, ignore_errors=True)
        return extracted


def _too_large(source: str, max_bytes: int) -> HostingError:
    return HostingError(
        f"the model data {source} is larger than {max_bytes} bytes uncompressed, the most "
        f"local hosting unpacks (BREEDOPS_HOSTING_MAX_MODEL_BYTES)")


def _unpack(archive: Path, into: Path, max_bytes: int, source: str) -> None:
    """Extract member by member, refusing an archive once its sizes pass `max_bytes` (before
    that member is written) and any path or link that leads out of `into`."""
    total = 0
    try:
        with tarfile.open(archive) as tar:
            for member in tar:
                total += member.size if member.isreg() else 0
                if total > max_bytes:
                    raise _too_large(source, max_bytes)
                tar.extract(member, into, filter="data")
    except tarfile.FilterError as e:
        raise HostingError(f"the model data {source} has an unsafe member: {e}") from e
    except (tarfile.TarError, EOFError, OSError) as e:
        raise HostingError(f"the model data {source} cannot be unpacked: {e}") from e


def _sweep_partials(cache_dir: Path) -> None:
    """Remove what interrupted extractions left (their process is gone)."""
    if not cache_dir.is_dir():
        return
    for leftover in cache_dir.glob("*.partial-*"):
        owner = leftover.name.split(".partial-", 1)[1].split("-", 1)[0]
        if owner.isdigit() and _process_alive(int(owner)):
            continue
        logger.info("removing %s, left by an interrupted model extraction", leftover)
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's
        return True
    return True


def _renew_at(credentials: dict[str, Any]) -> float:
    """When credentials from the emulator should be renewed (epoch seconds)."""
    expiration = credentials.get("Expiration")
    if isinstance(expiration, int | float):
        expires = float(expiration)
    elif isinstance(expiration, str):
        from datetime import datetime

        try:
            expires = datetime.fromisoformat(expiration).timestamp()
        except ValueError:
            expires = time.time() + CREDENTIALS_DEFAULT_SECONDS
    else:
        expires = time.time() + CREDENTIALS_DEFAULT_SECONDS
    return expires - CREDENTIALS_MARGIN_SECONDS


def load_local_environment() -> None:
    """Without `AWS_ENDPOINT_URL`, take the emulator's variables from `.local/env` (written by
    `breedops local up`), leaving any variable already set alone."""
    env_file = state_dir() / "env"
    if "AWS_ENDPOINT_URL" in os.environ or not env_file.is_file():
        return
    for line in env_file.read_text().splitlines():
        name, sep, value = line.removeprefix("export ").partition("=")
        if sep and not line.startswith("#"):
            os.environ.setdefault(name.strip(), value.strip())


class RuntimeHandler(BaseHTTPRequestHandler):
    """HTTP front: the Runtime API (`registry` set) or the container contract (`pool` set)."""

    server: HostingServer
    protocol_version = "HTTP/1.1"

    def parse_request(self) -> bool:
        # The emulator's front-door check: a web page must never reach the models' code.
        if not super().parse_request():
            return False
        refused = refusal(self.headers.get, self.server.server_address[1],
                          self.server.server_address[0])
        if refused is not None:
            self.close_connection = True
            self._send_error(RuntimeApiError(refused.status, refused.code, refused.message))
        return refused is None

    def setup(self) -> None:
        self.timeout = self.server.request_timeout_seconds  # each socket read and write
        super().setup()
        # An answer goes out as two writes (headers, body): with Nagle's algorithm the body
        # waits for the client's delayed ACK of the headers, 40 ms on Linux, on every request.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def handle_one_request(self) -> None:
        # The whole request must arrive in time, not only each read: a client that trickles
        # bytes would otherwise hold this thread. Past the deadline the socket is shut down.
        self._expect_continue = False
        self._read_deadline = WATCHDOG.arm(self.server.request_timeout_seconds, self._cut_off)
        try:
            super().handle_one_request()
        finally:
            WATCHDOG.disarm(self._read_deadline)

    def handle_expect_100(self) -> bool:
        # "100 Continue" is sent only once the declared length is accepted (`_read_body`), so
        # a refused upload is never sent.
        self._expect_continue = True
        return True

    def do_GET(self) -> None:
        if self.path == "/ping":
            self._send(200, b"", "text/plain")
        else:
            self._send_error(RuntimeApiError(404, "UnknownOperationException", "Unknown path"))

    def do_POST(self) -> None:
        match = INVOCATIONS_PATH.match(self.path.split("?")[0])
        try:
            body = self._read_body()
            if body is None:
                return
            if match and self.server.registry is not None:
                self._invoke_endpoint(match["name"], body)
            elif self.path == "/invocations" and self.server.pool is not None:
                reply = self.server.pool.invoke(self._worker_header(), body)
                self._send(reply.status, reply.body,
                           "text/plain" if reply.timed_out else "application/json")
            else:
                raise RuntimeApiError(404, "UnknownOperationException", "Unknown path")
        except RuntimeApiError as e:
            self._send_error(e)
        except Exception as e:  # the server stays up whatever a request does
            logger.exception("request failed")
            self._send_error(RuntimeApiError(500, "InternalFailure", f"internal failure: {e}"))

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    def _content_length(self) -> int:
        """The declared body size, checked before a byte of the body is read. A refused
        request's connection closes: its body was never consumed."""
        values = self.headers.get_all("Content-Length") or []
        error = None
        if "Transfer-Encoding" in self.headers:
            error = RuntimeApiError(411, "ValidationError",
                                    "Transfer-Encoding is not supported: send the body with a "
                                    "Content-Length header.")
        elif not values:
            error = RuntimeApiError(411, "ValidationError",
                                    "A Content-Length header is required.")
        elif (len({v.strip() for v in values}) > 1
              or not CONTENT_LENGTH.fullmatch(values[0].strip())):
            error = RuntimeApiError(400, "ValidationError",
                                    f"Content-Length {', '.join(values)!r} is not a byte count.")
        elif int(values[0]) > MAX_PAYLOAD_BYTES:
            error = RuntimeApiError(413, "ValidationError",
                                    f"HTTP content length exceeded: the request is "
                                    f"{int(values[0])} bytes; the limit is "
                                    f"{MAX_PAYLOAD_BYTES} bytes.")
        if error:
            self.close_connection = True
            raise error
        return int(values[0])

    def _read_body(self) -> bytes | None:
        """The body; None when it did not arrive within the request timeout (the connection is
        dropped, as there is nobody left to answer)."""
        length = self._content_length()
        if self._expect_continue:
            self.send_response_only(100)
            self.end_headers()
        try:
            body = self.rfile.read(length)
        except OSError:  # a read timed out, or the deadline shut the socket
            body = b""
        if not WATCHDOG.disarm(self._read_deadline) or len(body) < length:
            self.close_connection = True
            logger.info("dropped a request from %s: its body did not arrive within %g s",
                        self.address_string(), self.server.request_timeout_seconds)
            return None
        return body

    def _cut_off(self) -> None:
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:  # already closed
            pass

    def _invoke_endpoint(self, endpoint_name: str, body: bytes) -> None:
        registry = self.server.registry
        assert registry is not None
        registry.authorize(self.command, self.path, dict(self.headers.items()), body,
                           endpoint_name)
        for _ in range(3):  # a pool retired under us (an update) hands over to its successor
            try:
                target, pool = registry.pool_for(endpoint_name)
                reply = pool.invoke(self._worker_header(), body)
                break
            except HostingError as e:
                raise RuntimeApiError(503, "ServiceUnavailable", str(e)) from e
            except PoolRetiredError:
                continue
        else:
            raise RuntimeApiError(503, "ServiceUnavailable",
                                  f"endpoint {endpoint_name} is being updated; retry")
        if reply.status != 200:
            raise _model_error(target, registry.account_id(), reply)
        self._send(200, reply.body, "application/json", {
            "x-Amzn-Invoked-Production-Variant": target.variant_name,
        })

    def _worker_header(self) -> dict[str, Any]:
        return {
            "content_type": self.headers.get("Content-Type"),
            "accept": self.headers.get("Accept"),
            "headers": {h: self.headers[h] for h in FORWARDED_HEADERS if h in self.headers},
        }

    def _send_error(self, error: RuntimeApiError) -> None:
        headers = {"x-amzn-ErrorType": error.error_type}
        if self.close_connection:
            headers["Connection"] = "close"
        self._send(error.status, error.body(), "application/json", headers)

    def _send(self, status: int, body: bytes, content_type: str,
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


def _model_error(target: EndpointTarget, account_id: str, reply: WorkerReply) -> RuntimeApiError:
    """A container error wrapped as SageMaker does: 424 ModelError with the original answer."""
    # A container that never answered has no status: SageMaker reports 0.
    status = 0 if reply.timed_out else reply.status
    kind = "client" if 400 <= status < 500 else "server"
    original = reply.body.decode(errors="replace")
    log_group = f"/aws/sagemaker/Endpoints/{target.endpoint_name}"
    return RuntimeApiError(
        424, "ModelError",
        f"Received {kind} error ({status}) from primary with message \"{original}\". "
        f"See the log group {log_group} in account {account_id} for more information.",
        OriginalStatusCode=status,
        OriginalMessage=original,
        LogStreamArn=(f"arn:aws:logs:{DEFAULT_REGION}:{account_id}:log-group:{log_group}"),
    )


class HostingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], *, registry: EndpointRegistry | None = None,
                 pool: WorkerPool | None = None,
                 request_timeout_seconds: float = REQUEST_TIMEOUT_SECONDS) -> None:
        super().__init__(address, RuntimeHandler)
        self.registry, self.pool = registry, pool
        self.request_timeout_seconds = request_timeout_seconds

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up or is cut off (a timeout, a retry) is routine, not an error.
        if isinstance(sys.exc_info()[1], OSError):
            logger.debug("client %s disconnected", client_address)
        else:
            super().handle_error(request, client_address)

    def server_close(self) -> None:
        super().server_close()
        if self.registry:
            self.registry.close()
        if self.pool:
            self.pool.retire()
            self.pool.join()


def build_server(host: str, port: int, model_dir: Path | None = None, workers: int = 1,
                 preload_seconds: float | None = None,
                 invocation_timeout_seconds: float = INVOCATION_TIMEOUT_SECONDS,
                 request_timeout_seconds: float = REQUEST_TIMEOUT_SECONDS) -> HostingServer:
    """The Runtime API server (preloading endpoints every `preload_seconds` when given), or the
    container contract for `model_dir`."""
    if model_dir is not None:
        if not (model_dir / "code" / "inference.py").is_file():
            raise HostingError(f"{model_dir} has no code/inference.py: not an extracted model")
        return HostingServer((host, port),
                             pool=WorkerPool(model_dir, workers, invocation_timeout_seconds),
                             request_timeout_seconds=request_timeout_seconds)
    registry = EndpointRegistry(state_dir() / "hosting",
                                invocation_timeout_seconds=invocation_timeout_seconds)
    if preload_seconds:
        threading.Thread(target=registry.preload_forever, args=(preload_seconds,),
                         daemon=True).start()
    return HostingServer((host, port), registry=registry,
                         request_timeout_seconds=request_timeout_seconds)


def serve(host: str, port: int, model_dir: Path | None = None, workers: int = 1,
          preload_seconds: float | None = PRELOAD_SECONDS) -> None:
    """Serve in the foreground until interrupted."""
    server = build_server(host, port, model_dir, workers, preload_seconds)
    logger.info("local hosting on http://%s:%d", host, server.server_address[1])
    try:
        server.serve_forever()
    finally:
        server.server_close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default: 5567)")
    parser.add_argument("--model-dir", type=Path, default=None,
                        help="serve one extracted model directory (container contract)")
    parser.add_argument("--workers", type=int, default=1,
                        help="worker processes with --model-dir (default: 1)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        serve(args.host, args.port, args.model_dir, args.workers)
    except BreedopsError as e:
        print(f"breedops hosting: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
