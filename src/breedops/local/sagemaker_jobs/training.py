"""One training job, run as SageMaker runs it: Starting, Downloading, Training, Uploading.

`TrainingJobRun` takes a job as `DescribeTrainingJob` shows it, assumes its execution role,
lays out one folder per host (`container.py`), downloads the channels and any checkpoint, runs
the container's command on every host, streams the log to CloudWatch Logs while applying the
metric regexes, syncs checkpoints, enforces `MaxRuntimeInSeconds` and `StopTrainingJob`
(SIGTERM, then SIGKILL after SageMaker's grace period), and uploads model.tar.gz and
output.tar.gz. Every change of state is recorded through `records.dispatch`.

A job that was in progress when the emulator stopped (or was killed) runs again when it starts
(`restarted`): on AWS a job outlives an outage of the API, and its checkpoints carry it on.
Each host's pid is kept beside its folder, so that a killed emulator's leftover processes are
ended before the job runs again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from breedops.local import service_roles
from breedops.local.sagemaker_jobs import cloudwatch, container, records, transfer
from breedops.local.sagemaker_jobs.container import Host

log = logging.getLogger(__name__)

STOP_GRACE_SECONDS = float(os.environ.get("BREEDOPS_JOB_STOP_GRACE_SECONDS", "120"))
# SageMaker uploads checkpoints as they change; the emulator at most this often (and at the end):
# a resnet's checkpoint with its optimizer state is 100+ MB, written every epoch.
CHECKPOINT_SYNC_SECONDS = 30.0
POLL_SECONDS = 0.25
FAILURE_REASON_LIMIT = 1024
LOG_TAIL_LINES = 12
TOOLKIT_LINE = re.compile(r"^(\d{4}-\d\d-\d\d [\d:,]+ sagemaker-training-toolkit |\+\+? )")
TERMINAL = ("Completed", "Failed", "Stopped")
RESTART_MESSAGE = ("The emulator restarted while the job was in progress; the job runs again "
                   "from its last checkpoint")


@dataclass(frozen=True)
class Site:
    """Where jobs run and how they reach the emulator."""

    endpoint_url: str
    jobs_dir: Path
    cpu_count: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((container.LOOPBACK, 0))
        return int(sock.getsockname()[1])


class TrainingJobRun:
    """The executor of one training job; `start()` runs it in a thread of its own.

    `fetch` reads a channel object as the job's role (`transfer.Fetch`); by default an S3
    client signed with the role's credentials does.
    """

    def __init__(self, site: Site, job: dict[str, Any], account: str, region: str,
                 threads: int | None = None, fetch: transfer.Fetch | None = None,
                 restarted: bool = False) -> None:
        self.site = site
        self.restarted = restarted
        self.fetch = fetch
        self.job = job
        self.name: str = job["TrainingJobName"]
        self.account = account
        self.region = region
        count = int(job["ResourceConfig"].get("InstanceCount", 1))
        self.threads = threads or max(1, site.cpu_count // count)
        self.status = "InProgress"
        self.final_metrics: list[dict[str, Any]] = []
        self.failure_reason: str | None = None
        self.done = threading.Event()
        self._stop_reason: str | None = None  # "Stopped" or "MaxRuntimeExceeded"
        self._stop_signalled_at: float | None = None
        self._abandoned = False  # the emulator is shutting down: record nothing more
        self._processes: list[subprocess.Popen] = []
        self._streams: list[cloudwatch.LogStream] = []
        self._pumps: list[threading.Thread] = []  # per process: alive while its output is open
        self._transitions: list[dict[str, Any]] = []
        self._syncs: list[transfer.CheckpointSync] | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"job-{self.name}", daemon=True)
        self.training_started: float | None = None

    # -- control ----------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self, reason: str = "Stopped") -> None:
        """StopTrainingJob (or the runtime limit): SIGTERM now, SIGKILL after the grace period."""
        with self._lock:
            if self._stop_reason is None:
                self._stop_reason = reason
        self._signal_processes()

    def abandon(self) -> None:
        """The emulator is stopping: kill the hosts' process groups now and record nothing more.

        The job stays InProgress in the journal; the next start marks it Failed.
        """
        with self._lock:
            self._abandoned = True
            processes = list(self._processes)
        for process in processes:
            _signal_group(process, signal.SIGKILL)

    def _signal_processes(self) -> None:
        with self._lock:
            if self._stop_reason is None or self._stop_signalled_at is not None:
                return
            if not self._processes:
                return
            self._stop_signalled_at = time.monotonic()
            processes = list(self._processes)
        for process in processes:
            _signal_group(process, signal.SIGTERM)

    # -- the job ----------------------------------------------------------------------------
    def _run(self) -> None:
        job_dir = self.site.jobs_dir / self.name
        try:
            if self.restarted:
                self._transition("Restarting", RESTART_MESSAGE)
                end_leftovers(job_dir)
            self._transition("Starting", "Preparing the instances for training")
            credentials = self._assume_role()
            session = _RoleSession(credentials, self.region, self.site.endpoint_url)
            s3 = session.client("s3")
            hosts = container.make_hosts(job_dir, int(self.job["ResourceConfig"]
                                                      .get("InstanceCount", 1)))
            self._transition("Downloading", "Downloading input data")
            self._download(s3, hosts)
            if self._stop_reason:
                self._finish("Stopped", "Stopped", "Training job stopped before it started")
                return
            self._transition("Training",
                             "Training image download completed. Training in progress.")
            codes = self._train(hosts, credentials, session)
            stopped = self._stop_reason is not None
            self._sync_checkpoints(s3, hosts, final=True)
            if any(codes) and not stopped:
                self._upload_failure_output(s3, hosts[0])
                self._finish("Failed", "Failed", self._failure_reason(hosts, codes))
                return
            self._transition("Uploading", "Uploading generated training model")
            model_uri = self._upload(s3, hosts)
            if stopped:
                secondary = "MaxRuntimeExceeded" if self._stop_reason == "MaxRuntimeExceeded" \
                    else "Stopped"
                self._finish("Stopped", secondary, "Training job stopped", model_uri=model_uri)
            else:
                self._finish("Completed", "Completed", "Training job completed",
                             model_uri=model_uri)
        except Exception as e:  # any error is the job's FailureReason
            log.exception("training job %s failed", self.name)
            self._finish("Failed", "Failed", _client_error_reason(e))
        finally:  # the instances are gone: keep logs and outputs, not a copy of the data
            for host_dir in job_dir.glob("algo-*"):
                shutil.rmtree(host_dir / "input" / "data", ignore_errors=True)

    def _assume_role(self) -> dict[str, str]:
        return service_roles.assume(self.job["RoleArn"], service_roles.SAGEMAKER_PRINCIPAL,
                                    f"SageMaker-{self.name}", self.job["TrainingJobArn"],
                                    self.region)

    def _download(self, s3: Any, hosts: list[Host]) -> None:
        downloads = []
        for index, host in enumerate(hosts):
            for channel in self.job.get("InputDataConfig") or []:
                downloads += transfer.channel_downloads(
                    s3, channel, host.data / channel["ChannelName"], index, len(hosts))
        count = transfer.download_all(self.fetch or transfer.client_fetch(s3), downloads)
        checkpoint = self.job.get("CheckpointConfig")
        restored = 0
        if checkpoint:
            for host in hosts:
                restored = transfer.restore_checkpoints(s3, checkpoint["S3Uri"],
                                                        self._checkpoint_dir(host))
        log.info("training job %s: %d objects downloaded, %d checkpoint files restored",
                 self.name, count, restored)

    def _checkpoint_dir(self, host: Host) -> Path:
        local = (self.job.get("CheckpointConfig") or {}).get("LocalPath") or "/opt/ml/checkpoints"
        return host.local(local) if local.startswith(container.CONTAINER_BASE) else \
            host.base / "checkpoints"

    def _train(self, hosts: list[Host], credentials: dict[str, str],
               session: _RoleSession) -> list[int]:
        """Run the container on every host; their exit codes."""
        port = free_port()
        logs = session.client("logs")
        collector = cloudwatch.MetricCollector(
            self.job["AlgorithmSpecification"].get("MetricDefinitions") or [])
        self.training_started = time.time()
        for host in hosts:
            container.write_config(host, hosts, self.job)
            container.localize_drivers(host, port)
            env = container.environment(host, hosts, self.job, credentials,
                                        self.site.endpoint_url, self.region, port, self.threads)
            stream = cloudwatch.LogStream(logs, cloudwatch.stream_name(
                self.name, host.name, self.training_started))
            self._streams.append(stream)
            process = subprocess.Popen(
                container.command(host, self.job), env=env, cwd=host.base,
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                start_new_session=True)
            _write_pidfile(host.base.parent / f"{host.name}.pid", process.pid)
            with self._lock:
                self._processes.append(process)
                abandoned = self._abandoned
            if abandoned:  # started while the emulator was shutting down
                _signal_group(process, signal.SIGKILL)
            pump = threading.Thread(target=_pump, args=(process, stream, collector,
                                                        host.base.parent / f"{host.name}.log"),
                                    daemon=True)
            pump.start()
            self._pumps.append(pump)
        self._signal_processes()  # a stop that arrived while the hosts were starting
        s3 = session.client("s3")
        self._monitor(s3, hosts)
        for pump in self._pumps:
            pump.join()
        self.final_metrics = collector.final()
        return [p.returncode for p in self._processes]

    def _monitor(self, s3: Any, hosts: list[Host]) -> None:
        limit = float((self.job.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds")
                      or 86400)
        started = time.monotonic()
        last_sync = started
        while True:
            codes = [p.poll() for p in self._processes]
            # A host is done when its output closed too: the toolkit may die of SIGTERM while
            # the script it started (same process group, same stdout) still runs.
            if all(code is not None for code in codes) and not any(
                    pump.is_alive() for pump in self._pumps):
                return
            if any(code not in (None, 0) for code in codes) and self._stop_reason is None:
                # One host failed: SageMaker tears the others down.
                self._kill_all(signal.SIGTERM)
            now = time.monotonic()
            if self._stop_reason is None and now - started > limit:
                log.warning("training job %s exceeded MaxRuntimeInSeconds=%.0f", self.name, limit)
                self.stop("MaxRuntimeExceeded")
            if self._stop_signalled_at and now - self._stop_signalled_at > STOP_GRACE_SECONDS:
                self._kill_all(signal.SIGKILL)
            self._flush_logs()
            if now - last_sync >= CHECKPOINT_SYNC_SECONDS:
                self._sync_checkpoints(s3, hosts)
                last_sync = now
            time.sleep(POLL_SECONDS)

    def _flush_logs(self) -> None:
        for stream in self._streams:
            try:
                stream.flush_if_due()
            except Exception:  # a lost log line must not kill the job
                log.warning("could not write to log stream %s", stream.name, exc_info=True)

    def _kill_all(self, sig: int) -> None:
        """Signal every host whose process group may still run (its output is still open)."""
        for process, pump in zip(self._processes, self._pumps, strict=True):
            if process.poll() is None or pump.is_alive():
                _signal_group(process, sig)

    def _sync_checkpoints(self, s3: Any, hosts: list[Host], final: bool = False) -> None:
        checkpoint = self.job.get("CheckpointConfig")
        if not checkpoint:
            return
        if self._syncs is None:
            self._syncs = [transfer.CheckpointSync(s3, checkpoint["S3Uri"],
                                                   self._checkpoint_dir(h)) for h in hosts]
        try:
            for sync in self._syncs:
                sync.sync()
        except Exception:  # a failed periodic sync is retried; the last one counts
            if final:
                raise
            log.warning("training job %s: checkpoint sync failed; retrying", self.name,
                        exc_info=True)

    def _upload(self, s3: Any, hosts: list[Host]) -> str:
        output = self.job["OutputDataConfig"]["S3OutputPath"].rstrip("/")
        source = next((h for h in hosts if any(h.model.iterdir())), hosts[0])
        return transfer.upload_outputs(s3, source.base, f"{output}/{self.name}/output")

    def _failure_reason(self, hosts: list[Host], codes: list[int]) -> str:
        """SageMaker's `AlgorithmError`: the container's failure file and its last traceback."""
        failed = next((h for h, c in zip(hosts, codes, strict=True) if c), hosts[0])
        code = next(c for c in codes if c)
        message = ""
        if failed.failure_file.is_file():
            message = failed.failure_file.read_text(errors="replace").strip()
        log_path = failed.base.parent / f"{failed.name}.log"
        lines = log_path.read_text(errors="replace").splitlines() if log_path.is_file() else []
        # The user's own lines, not the toolkit's or the driver script's commentary.
        lines = [line for line in lines if not TOOLKIT_LINE.match(line)]
        start = max((i for i, line in enumerate(lines) if line.startswith("Traceback")),
                    default=max(0, len(lines) - LOG_TAIL_LINES))
        tail = "\n".join(lines[start:][-LOG_TAIL_LINES:]).strip()
        reason = "\n".join(filter(None, [f"AlgorithmError: {message or f'ExitCode {code}'}",
                                          tail]))
        return reason[:FAILURE_REASON_LIMIT]

    # -- state --------------------------------------------------------------------------------
    def _transition(self, secondary: str, message: str) -> None:
        now = time.time()
        if self._transitions:
            self._transitions[-1]["EndTime"] = now
        self._transitions.append({"Status": secondary, "StartTime": now, "StatusMessage": message})
        fields: dict[str, Any] = {"SecondaryStatus": secondary, "LastModifiedTime": now,
                                  "SecondaryStatusTransitions": self._transitions}
        if secondary == "Training":
            fields["TrainingStartTime"] = now
        self._record(fields)

    def _upload_failure_output(self, s3: Any, host: Host) -> None:
        """A failed job still leaves output.tar.gz (with its failure file), as on SageMaker."""
        output = self.job["OutputDataConfig"]["S3OutputPath"].rstrip("/")
        try:
            bucket, key = transfer.split_s3_uri(f"{output}/{self.name}/output/output.tar.gz")
            archive = transfer.pack(host.output, host.base / ".upload" / "output.tar.gz")
            transfer.upload(s3, archive, bucket, key)
        except Exception:  # the job has failed already; keep its reason
            log.warning("training job %s: could not upload output.tar.gz", self.name,
                        exc_info=True)

    def _finish(self, status: str, secondary: str, message: str,
                model_uri: str | None = None) -> None:
        now = time.time()
        self.status = status
        self.failure_reason = message if status == "Failed" else None
        self._transition(secondary, message)
        self._transitions[-1]["EndTime"] = now
        start = self.training_started or now
        fields: dict[str, Any] = {
            "TrainingJobStatus": status, "SecondaryStatus": secondary,
            "SecondaryStatusTransitions": self._transitions, "TrainingEndTime": now,
            "LastModifiedTime": now, "FinalMetricDataList": self.final_metrics,
            "TrainingTimeInSeconds": max(1, round(now - start)),
            "BillableTimeInSeconds": max(1, round(now - start)),
        }
        if self.training_started is None:
            fields["TrainingStartTime"] = now
        if model_uri:
            fields["ModelArtifacts"] = {"S3ModelArtifacts": model_uri}
        if status == "Failed":
            fields["FailureReason"] = message
        try:
            self._record(fields)
        finally:
            self.done.set()
            log.info("training job %s: %s", self.name, status)

    def _record(self, fields: dict[str, Any]) -> None:
        if self._abandoned:
            return
        records.dispatch(records.TRAINING_STATE, {"account": self.account, "region": self.region,
                                                  "name": self.name, "fields": fields})


class _RoleSession:
    """Clients that sign with the job's role credentials and reach the emulator."""

    def __init__(self, credentials: dict[str, str], region: str, endpoint_url: str) -> None:
        import boto3
        from botocore.config import Config

        self._session = boto3.session.Session(
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"], region_name=region)
        self._endpoint_url = endpoint_url
        # UNSIGNED-PAYLOAD, as botocore sends uploads to S3 over TLS: on plain HTTP it would hash
        # every byte for the signature (SHA-256, ~2 CPU-s per GB); the CRC32 still checks them.
        self._config = Config(max_pool_connections=2 * transfer.TRANSFER_WORKERS,
                              retries={"max_attempts": 3, "mode": "standard"},
                              s3={"payload_signing_enabled": False})

    def client(self, service: str) -> Any:
        return self._session.client(service, endpoint_url=self._endpoint_url,
                                    config=self._config)


def _write_pidfile(path: Path, pid: int) -> None:
    """The host's pid and start time: a pid alone may be reused by another process."""
    try:
        started = psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:  # it ended already
        return
    path.write_text(json.dumps({"pid": pid, "create_time": started}))


def end_leftovers(job_dir: Path) -> None:
    """Kill what an earlier emulator process left of a job (its hosts' process groups) and
    clear the hosts' folders, so that the job's next run starts as on fresh instances."""
    for pidfile in sorted(job_dir.glob("algo-*.pid")):
        try:
            record = json.loads(pidfile.read_text())
            pid = int(record["pid"])
        except (ValueError, KeyError, TypeError):
            pidfile.unlink(missing_ok=True)
            continue
        try:
            reused = psutil.Process(pid).create_time() != record.get("create_time")
        except psutil.NoSuchProcess:
            # The host's leader is gone, but its group may live on (the script it started):
            # Linux gives no new process the id of a group that still has members.
            reused = False
        if not reused:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
                log.info("training job %s: killed the leftover processes of group %d",
                         job_dir.name, pid)
        pidfile.unlink(missing_ok=True)
    for host_dir in job_dir.glob("algo-*"):
        if host_dir.is_dir():
            shutil.rmtree(host_dir, ignore_errors=True)


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _pump(process: subprocess.Popen, stream: cloudwatch.LogStream,
          collector: cloudwatch.MetricCollector, log_path: Path) -> None:
    """A host's output, line by line, to its log file, CloudWatch and the metric regexes."""
    with open(log_path, "ab") as local_log:
        assert process.stdout is not None
        for raw in process.stdout:
            local_log.write(raw)
            local_log.flush()
            # A progress bar redraws with \r: the text after the last one is the real line.
            line = raw.decode(errors="replace").rstrip("\n").rsplit("\r", 1)[-1]
            collector.feed(line)
            try:
                stream.write(line)
            except Exception:  # a lost log line must not kill the job
                log.warning("could not write to log stream %s", stream.name, exc_info=True)
        process.wait()
    try:
        stream.flush()
    except Exception:
        log.warning("could not flush log stream %s", stream.name, exc_info=True)


def _client_error_reason(error: Exception) -> str:
    """A failure before the algorithm ran, in SageMaker's words where it has some."""
    text = str(error)
    if isinstance(error, transfer.ChannelError):
        return f"ClientError: {text}"[:FAILURE_REASON_LIMIT]
    if type(error).__name__ == "ClientError":
        return f"ClientError: {text}"[:FAILURE_REASON_LIMIT]
    return f"InternalServerError: {type(error).__name__}: {text}"[:FAILURE_REASON_LIMIT]
