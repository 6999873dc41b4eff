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
import json
import logging
import os
import queue
import re
import subprocess
import sys
import tarfile
import threading
import time
import urllib.error
import uuid
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
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # InvokeEndpoint's request limit
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


class ModelWorker:
    """One `model_worker.py` process; it answers one request at a time."""

    def __init__(self, model_dir: Path, threads: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-P", str(WORKER_SCRIPT), str(model_dir), str(threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )
        ready = self._read_frame()
        if ready is None or not ready[0].get("ready"):
            self.close()
            raise HostingError(f"the model in {model_dir} failed to load (see the worker log)")

    def invoke(self, header: dict[str, Any], body: bytes) -> WorkerReply:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(
                json.dumps({**header, "length": len(body)}).encode() + b"\n" + body
            )
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            return WorkerReply(500, b'{"error": "WorkerDied", "message": "the worker exited"}')
        frame = self._read_frame()
        if frame is None:
            return WorkerReply(500, b'{"error": "WorkerDied", "message": "the worker exited"}')
        return WorkerReply(int(frame[0]["status"]), frame[1])

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """Ask the worker to exit (end of its input); `wait` reaps it."""
        if self.process.stdin and not self.process.stdin.closed:
            self.process.stdin.close()

    def wait(self) -> None:
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout:
            self.process.stdout.close()

    def close(self) -> None:
        self.stop()
        self.wait()

    def _read_frame(self) -> tuple[dict[str, Any], bytes] | None:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            return None
        header = json.loads(line)
        return header, self.process.stdout.read(int(header.get("length", 0)))


class PoolRetiredError(Exception):
    """The pool was replaced after the request picked it; the request asks again."""


class WorkerPool:
    """`size` workers for one model directory; a request waits for an idle one.

    Retiring is graceful: requests already waiting are still served, later ones are refused
    with `PoolRetiredError` so that they go to the pool that replaced this one.
    """

    def __init__(self, model_dir: Path, size: int) -> None:
        self.model_dir, self.size = model_dir, size
        self._threads = max(1, (os.cpu_count() or 1) // size)
        self._idle: queue.Queue[ModelWorker] = queue.Queue()
        self._state = threading.Lock()
        self._retired = False
        self._waiting = 0
        for _ in range(size):
            self._idle.put(ModelWorker(model_dir, self._threads))
        logger.info("serving %s with %d worker(s)", model_dir, size)

    def invoke(self, header: dict[str, Any], body: bytes) -> WorkerReply:
        with self._state:
            if self._retired:
                raise PoolRetiredError(str(self.model_dir))
            self._waiting += 1
        worker = self._idle.get()
        with self._state:
            self._waiting -= 1
        try:
            return worker.invoke(header, body)
        finally:
            self._give_back(worker)

    def retire(self) -> list[ModelWorker]:
        """Stop the idle workers (returned, to be waited for); busy ones stop when done."""
        with self._state:
            self._retired = True
            if self._waiting:  # they are served first; `_give_back` stops the workers after
                return []
        stopped = []
        while True:
            try:
                worker = self._idle.get_nowait()
            except queue.Empty:
                return stopped
            worker.stop()  # all stop at once: a worker's exit takes a while under load
            stopped.append(worker)

    def _give_back(self, worker: ModelWorker) -> None:
        with self._state:
            keep = not self._retired or self._waiting > 0
        if not keep:
            worker.close()
            return
        if not worker.alive():  # a crashed worker is replaced, as the model server would
            logger.warning("a worker of %s died; starting a new one", self.model_dir)
            worker = ModelWorker(self.model_dir, self._threads)
        self._idle.put(worker)


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

    def __init__(self, cache_dir: Path, ttl_seconds: float = RESOLVE_TTL_SECONDS) -> None:
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
        if old:
            for worker in old[1].retire():
                worker.wait()

    def _start_pool(self, target: EndpointTarget) -> WorkerPool:
        return WorkerPool(self._extract(target), min(target.instance_count, MAX_WORKERS))

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            stopped = [w for _, pool in self._pools.values() for w in pool.retire()]
            self._pools.clear()
        for worker in stopped:
            worker.wait()

    def preload_forever(self, interval_seconds: float) -> None:
        """Load every InService endpoint's model as it appears, as SageMaker has it loaded
        before it reports InService; runs (in a daemon thread) until `close`."""
        from botocore.exceptions import BotoCoreError, ClientError

        failures: dict[str, str] = {}
        while not self._closed.is_set():
            try:
                pages = self._client("sagemaker").get_paginator("list_endpoints").paginate(
                    StatusEquals="InService")
                names = [e["EndpointName"] for page in pages for e in page["Endpoints"]]
            except (BotoCoreError, ClientError) as e:  # the emulator is not up (yet)
                logger.debug("cannot list endpoints: %s", e)
                names = []
            for name in names:
                try:
                    self.pool_for(name)
                    failures.pop(name, None)
                except HostingError as e:  # e.g. the execution role cannot read the model
                    if failures.get(name) != str(e):  # said once, not every round
                        logger.warning("endpoint %s cannot be loaded: %s", name, e)
                    failures[name] = str(e)
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
                for worker in gone[1].retire():
                    worker.wait()
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
            etag = s3.head_object(Bucket=bucket, Key=key)["ETag"]
        except ClientError as e:
            raise unreadable(e) from e
        digest = hashlib.sha256(f"{model_data_url}|{etag}".encode()).hexdigest()[:16]
        extracted = self._cache_dir / digest
        if (extracted / ".complete").exists():
            return extracted
        partial = self._cache_dir / f"{digest}.partial-{uuid.uuid4().hex[:8]}"
        partial.mkdir(parents=True)
        archive = partial / "model.tar.gz"
        try:
            s3.download_file(bucket, key, str(archive))
        except ClientError as e:
            raise unreadable(e) from e
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(partial, filter="data")  # refuses absolute paths and links out
        except tarfile.TarError as e:
            raise HostingError(f"the model data {model_data_url} is not a tar.gz: {e}") from e
        archive.unlink()
        (partial / ".complete").touch()
        if extracted.exists():  # another thread finished first
            return extracted
        partial.rename(extracted)
        return extracted


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

    def do_GET(self) -> None:
        if self.path == "/ping":
            self._send(200, b"", "text/plain")
        else:
            self._send_error(RuntimeApiError(404, "UnknownOperationException", "Unknown path"))

    def do_POST(self) -> None:
        match = INVOCATIONS_PATH.match(self.path.split("?")[0])
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if match and self.server.registry is not None:
                if length > MAX_PAYLOAD_BYTES:  # refused unread: the connection closes
                    self.close_connection = True
                    raise RuntimeApiError(
                        413, "ValidationError",
                        f"Request payload is {length} bytes; the limit is "
                        f"{MAX_PAYLOAD_BYTES} bytes.")
                self._invoke_endpoint(match["name"], self.rfile.read(length))
                return
            body = self.rfile.read(length)
            if self.path == "/invocations" and self.server.pool is not None:
                reply = self.server.pool.invoke(self._worker_header(), body)
                self._send(reply.status, reply.body, "application/json")
            else:
                raise RuntimeApiError(404, "UnknownOperationException", "Unknown path")
        except RuntimeApiError as e:
            self._send_error(e)
        except Exception as e:  # the server stays up whatever a request does
            logger.exception("request failed")
            self._send_error(RuntimeApiError(500, "InternalFailure", f"internal failure: {e}"))

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

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
    kind = "client" if reply.status < 500 else "server"
    original = reply.body.decode(errors="replace")
    log_group = f"/aws/sagemaker/Endpoints/{target.endpoint_name}"
    return RuntimeApiError(
        424, "ModelError",
        f"Received {kind} error ({reply.status}) from primary with message \"{original}\". "
        f"See the log group {log_group} in account {account_id} for more information.",
        OriginalStatusCode=reply.status,
        OriginalMessage=original,
        LogStreamArn=(f"arn:aws:logs:{DEFAULT_REGION}:{account_id}:log-group:{log_group}"),
    )


class HostingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], *, registry: EndpointRegistry | None = None,
                 pool: WorkerPool | None = None) -> None:
        super().__init__(address, RuntimeHandler)
        self.registry, self.pool = registry, pool

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up (a timeout, a retry) is routine, not a server error.
        if isinstance(sys.exc_info()[1], ConnectionError):
            logger.debug("client %s disconnected", client_address)
        else:
            super().handle_error(request, client_address)

    def server_close(self) -> None:
        super().server_close()
        if self.registry:
            self.registry.close()
        if self.pool:
            for worker in self.pool.retire():
                worker.wait()


def build_server(host: str, port: int, model_dir: Path | None = None, workers: int = 1,
                 preload_seconds: float | None = None) -> HostingServer:
    """The Runtime API server (preloading endpoints every `preload_seconds` when given), or the
    container contract for `model_dir`."""
    if model_dir is not None:
        if not (model_dir / "code" / "inference.py").is_file():
            raise HostingError(f"{model_dir} has no code/inference.py: not an extracted model")
        return HostingServer((host, port), pool=WorkerPool(model_dir, workers))
    registry = EndpointRegistry(state_dir() / "hosting")
    if preload_seconds:
        threading.Thread(target=registry.preload_forever, args=(preload_seconds,),
                         daemon=True).start()
    return HostingServer((host, port), registry=registry)


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
