"""Which endpoints exist and the model each serves: resolved through the emulator's SageMaker
API, downloaded as the execution role, unpacked, loaded ahead of requests (preloading)."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tarfile
import threading
import time
import urllib.error
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from breedops.errors import EmulatorError
from breedops.local.env_file import use_environment
from breedops.local.hosting.errors import HostingError, RuntimeApiError
from breedops.local.hosting.workers import INVOCATION_TIMEOUT_SECONDS, WorkerPool
from breedops.settings import DEFAULT_REGION

logger = logging.getLogger(__name__)

# How long a resolved endpoint is trusted before the emulator is asked again.
RESOLVE_TTL_SECONDS = float(os.environ.get("BREEDOPS_HOSTING_TTL_SECONDS", "2.0"))
# A local machine has few cores: more workers than this only thrash.
MAX_WORKERS = int(os.environ.get("BREEDOPS_HOSTING_MAX_WORKERS", "8"))
# How long preloading leaves an endpoint that failed to load (a request still tries it).
PRELOAD_RETRY_SECONDS = 60.0
# The largest uncompressed model hosting unpacks (SageMaker's default instance volume is 30 GB).
MAX_MODEL_BYTES = int(os.environ.get("BREEDOPS_HOSTING_MAX_MODEL_BYTES", str(10 * 1024**3)))
# How long a call to the emulator's service routes (authorize, assume-role) may take.
AUTHORIZE_TIMEOUT_SECONDS = float(os.environ.get("BREEDOPS_HOSTING_AUTHORIZE_TIMEOUT", "5"))
SAGEMAKER_PRINCIPAL = "sagemaker.amazonaws.com"
HEAD_ERROR_CODES = {"403": "AccessDenied", "404": "NoSuchKey"}
# Execution-role credentials are renewed this long before they expire (or, without an
# expiration, after this long).
CREDENTIALS_MARGIN_SECONDS = 300.0
CREDENTIALS_DEFAULT_SECONDS = 3600.0


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
            except (EmulatorError, BotoCoreError, ClientError) as e:  # the emulator is not up (yet)
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
        """boto3 clients, made at first use: a hosting started on its own (`breedops serve`)
        finds the emulator's variables in `.local/env` only once `make up` has written it."""
        with self._clients_lock:
            if service not in self._clients:
                import boto3

                use_environment()
                region = os.environ.get("AWS_DEFAULT_REGION", DEFAULT_REGION)
                self._clients[service] = boto3.client(service, region_name=region)
            return self._clients[service]

    def account_id(self) -> str:
        if self._account_id is None:
            self._account_id = self._client("sts").get_caller_identity()["Account"]
        return self._account_id

    def region(self) -> str:
        use_environment()
        return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION",
                                                              DEFAULT_REGION)

    def endpoint_arn(self, endpoint_name: str) -> str:
        """The endpoint's ARN; SageMaker lowercases names in its ARNs."""
        region = self.region()
        partition = ("aws-cn" if region.startswith("cn-") else
                     "aws-us-gov" if region.startswith("us-gov-") else "aws")
        return (f"arn:{partition}:sagemaker:{region}:{self.account_id()}:"
                f"endpoint/{endpoint_name.lower()}")

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
