"""Jobs as local processes that honour the SageMaker training-container contract.

Each job is registered in the emulator's SageMaker API (so names, ARNs and `describe` look as
they do on AWS), its channels are downloaded from S3 into a job directory that stands in for
`/opt/ml`, the entry point runs with the `SM_*` variables (N processes with DDP for N
instances), and the model directory is packed into model.tar.gz under
`jobs/<job-name>/output/`. moto reports every job as Completed whatever happens, so the real
outcome is recorded as `breedops:*` tags on the job.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from breedops.errors import BreedopsError
from breedops.jobs import naming, requests
from breedops.jobs.artifacts import split_s3_url
from breedops.jobs.metrics import OBJECTIVE_METRIC, final_metrics
from breedops.jobs.spec import (
    CHANNELS,
    TrainingRequest,
    TrainingResult,
    TuningRequest,
    TuningResult,
)
from breedops.settings import state_dir

LOG = logging.getLogger(__name__)
SRC_DIR = Path(__file__).resolve().parents[2]  # the folder that holds the breedops package
STATUS_TAG = "breedops:status"
LOG_TAIL_LINES = 20
TRANSFER_WORKERS = 16
EXIT_STOPPED = 128 + signal.SIGTERM  # the entry point's status after a SIGTERM


class JobFailedError(BreedopsError):
    """A training job exited with an error or was stopped."""

    def __init__(self, message: str, status: str = "Failed", job_name: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.job_name = job_name


class MissingChannelError(BreedopsError):
    """A channel's S3 prefix holds no objects."""


def s3_client() -> Any:
    """An S3 client whose pool serves the transfer threads of parallel trials."""
    import boto3
    from botocore.config import Config

    return boto3.client("s3", config=Config(max_pool_connections=4 * TRANSFER_WORKERS))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalBackend:
    """Runs training and tuning jobs as local processes, registered in the emulator."""

    def __init__(self, sagemaker: Any = None, s3: Any = None, jobs_dir: Path | None = None,
                 cpu_count: int | None = None) -> None:
        import boto3

        self.sagemaker = sagemaker or boto3.client("sagemaker")
        self.s3 = s3 or s3_client()
        self.jobs_dir = jobs_dir or state_dir() / "jobs"
        self.cpu_count = cpu_count or os.cpu_count() or 1

    # -- training ---------------------------------------------------------------------------
    def train(self, request: TrainingRequest, job_name: str | None = None,
              threads: int | None = None) -> TrainingResult:
        """Register, run and package one training job; raise JobFailedError if it fails."""
        job_name = job_name or naming.job_name("train")
        keys = self._channel_keys(request)
        arn = self.sagemaker.create_training_job(**requests.create_training_job_request(
            request, job_name, request.hyperparameters.as_strings()))["TrainingJobArn"]
        LOG.info("training job %s registered (%s)", job_name, arn)
        job_dir = self.jobs_dir / job_name
        try:
            hosts = self._prepare_hosts(request, job_name, job_dir, keys)
            threads = threads or max(1, self.cpu_count // request.instance_count)
            returncode = self._run_processes(request, job_name, hosts, threads)
            if returncode != 0:  # only an unfinished job resumes: keep its checkpoint in S3
                self._sync_checkpoints_up(request, job_name, hosts[0])
            log_path = hosts[0] / "logs" / "train.log"
            log_text = log_path.read_text(errors="replace")
            if returncode != 0:
                status = "Stopped" if returncode in (EXIT_STOPPED, -signal.SIGTERM) else "Failed"
                tail = "\n".join(log_text.splitlines()[-LOG_TAIL_LINES:])
                raise JobFailedError(f"training job {job_name}: {status.lower()} "
                                     f"(exit {returncode}); log {log_path}:\n{tail}",
                                     status=status, job_name=job_name)
            model_data_url = self._upload_outputs(request, job_name, hosts[0])
        except JobFailedError as e:
            self._tag(arn, {STATUS_TAG: e.status})
            raise
        except BaseException as e:
            self._tag(arn, {STATUS_TAG: "Stopped" if isinstance(e, KeyboardInterrupt)
                            else "Failed"})
            raise
        metrics = final_metrics(log_text)
        self._tag(arn, {STATUS_TAG: "Completed", "breedops:model-data": model_data_url,
                        **{f"breedops:{k}": f"{v:.4f}" for k, v in metrics.items()}})
        LOG.info("training job %s completed: %s", job_name, model_data_url)
        return TrainingResult(job_name=job_name, job_arn=arn, model_data_url=model_data_url,
                              metrics=metrics, hyperparameters=request.hyperparameters)

    def _channel_keys(self, request: TrainingRequest) -> dict[str, list[str]]:
        """Every object key of every channel; a clear error before anything is registered."""
        keys: dict[str, list[str]] = {}
        paginator = self.s3.get_paginator("list_objects_v2")
        for channel in CHANNELS:
            bucket, prefix = split_s3_url(request.channel_uri(channel))
            keys[channel] = [obj["Key"] for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
                             for obj in page.get("Contents", [])]
            if not keys[channel]:
                raise MissingChannelError(
                    f"channel {channel!r} is empty: nothing under {request.channel_uri(channel)}; "
                    f"run `breedops data upload --dataset {request.dataset}` first")
        return keys

    def _prepare_hosts(self, request: TrainingRequest, job_name: str, job_dir: Path,
                       keys: dict[str, list[str]]) -> list[Path]:
        """One `/opt/ml` stand-in per host, with its channels (train sharded for N > 1)."""
        count = request.instance_count
        hosts = [job_dir / f"algo-{i + 1}" for i in range(count)]
        downloads = []
        for i, host in enumerate(hosts):
            for name in ("model", "output/data", "checkpoints", "logs"):
                (host / name).mkdir(parents=True, exist_ok=True)
            for channel in CHANNELS:
                sharded = requests.distribution_type(channel, count) == "ShardedByS3Key"
                channel_keys = sorted(keys[channel])[i::count] if sharded else keys[channel]
                _, prefix = split_s3_url(request.channel_uri(channel))
                for key in channel_keys:
                    downloads.append((key, host / "input" / "data" / channel /
                                      key[len(prefix):]))
        self._sync_checkpoints_down(request, job_name, hosts[0])
        with ThreadPoolExecutor(max_workers=TRANSFER_WORKERS) as pool:
            list(pool.map(lambda kv: self._download(request.bucket, *kv), downloads))
        return hosts

    def _download(self, bucket: str, key: str, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        # One GET per object (download_file adds a HEAD): channels are many small images.
        body = self.s3.get_object(Bucket=bucket, Key=key)["Body"]
        with open(target, "wb") as f:
            shutil.copyfileobj(body, f)

    def _sync_checkpoints_down(self, request: TrainingRequest, job_name: str,
                               host: Path) -> None:
        """Resume: what an earlier run of this job left under checkpoints/<job-name>/."""
        bucket, prefix = split_s3_url(request.checkpoint_uri(job_name))
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                      Prefix=prefix):
            for obj in page.get("Contents", []):
                self._download(bucket, obj["Key"], host / "checkpoints" /
                               obj["Key"][len(prefix):])

    def _sync_checkpoints_up(self, request: TrainingRequest, job_name: str,
                             host: Path) -> None:
        bucket, prefix = split_s3_url(request.checkpoint_uri(job_name))
        for path in sorted((host / "checkpoints").rglob("*")):
            if path.is_file():
                key = prefix + path.relative_to(host / "checkpoints").as_posix()
                self.s3.upload_file(str(path), bucket, key)

    def _host_env(self, request: TrainingRequest, job_name: str, hosts: list[Path], index: int,
                  master_port: int, threads: int) -> dict[str, str]:
        host = hosts[index]
        names = [h.name for h in hosts]
        data = host / "input" / "data"
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC_DIR),
                                                        os.environ.get("PYTHONPATH")])),
            "OMP_NUM_THREADS": str(threads),
            "TRAINING_JOB_NAME": job_name,
            "SM_HOSTS": json.dumps(names),
            "SM_CURRENT_HOST": names[index],
            "SM_NUM_GPUS": "0",
            "SM_NUM_CPUS": str(threads),
            "SM_MODEL_DIR": str(host / "model"),
            "SM_OUTPUT_DIR": str(host / "output"),
            "SM_OUTPUT_DATA_DIR": str(host / "output" / "data"),
            "SM_HPS": json.dumps(request.hyperparameters.as_strings()),
            "SM_INPUT_DATA_CONFIG": json.dumps({
                c: {"TrainingInputMode": "File", "RecordWrapperType": "None",
                    "S3DistributionType": requests.distribution_type(c, len(hosts))}
                for c in CHANNELS}),
            # SageMaker resolves algo-N by DNS; locally every host is the loopback.
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(master_port),
        }
        env.update({f"SM_CHANNEL_{c.upper()}": str(data / c) for c in CHANNELS})
        return env

    def _run_processes(self, request: TrainingRequest, job_name: str, hosts: list[Path],
                       threads: int) -> int:
        """Start one process per host, stream logs, forward Ctrl-C as SIGTERM; first failure."""
        port = free_port()
        flags = [arg for k, v in request.hyperparameters.as_strings().items()
                 for arg in (f"--{k}", v)]
        procs, pumps = [], []
        for i, host in enumerate(hosts):
            command = [sys.executable, "-m", "breedops.training.train", *flags,
                       "--threads", str(threads), "--checkpoint-dir", str(host / "checkpoints")]
            proc = subprocess.Popen(
                command, env=self._host_env(request, job_name, hosts, i, port, threads),
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=host,
                # Own session: a terminal Ctrl-C reaches us, and we stop the job with SIGTERM.
                start_new_session=True)
            procs.append(proc)
            pump = threading.Thread(target=_pump, daemon=True, args=(
                proc, host / "logs" / "train.log", f"{job_name}/{host.name}", i == 0))
            pump.start()
            pumps.append(pump)
        try:
            codes = [proc.wait() for proc in procs]
        except KeyboardInterrupt:
            for proc in procs:  # like StopTrainingJob: SIGTERM, the script checkpoints and exits
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                proc.wait()
            raise
        finally:
            for pump in pumps:
                pump.join()
        return next((code for code in codes if code != 0), 0)

    def _upload_outputs(self, request: TrainingRequest, job_name: str, host: Path) -> str:
        """Pack model/ and output/data/ as SageMaker does; return the model.tar.gz URL."""
        model_data_url = request.model_data_url(job_name)
        bucket, model_key = split_s3_url(model_data_url)
        output_dir = host / "output"
        for source, name in ((host / "model", "model.tar.gz"),
                             (output_dir / "data", "output.tar.gz")):
            archive = output_dir / name
            with tarfile.open(archive, "w:gz") as tar:
                for path in sorted(source.rglob("*")):
                    tar.add(path, arcname=path.relative_to(source).as_posix(), recursive=False)
            # The model last: its presence is what says "this job's outputs are complete".
        self.s3.upload_file(str(output_dir / "output.tar.gz"), bucket,
                            model_key.replace("model.tar.gz", "output.tar.gz"))
        self.s3.upload_file(str(output_dir / "model.tar.gz"), bucket, model_key)
        return model_data_url

    def _tag(self, arn: str, tags: dict[str, str]) -> None:
        self.sagemaker.add_tags(ResourceArn=arn, Tags=[
            {"Key": k, "Value": v[:256]} for k, v in tags.items()])

    # -- tuning -----------------------------------------------------------------------------
    def tune(self, request: TuningRequest, job_name: str | None = None) -> TuningResult:
        """Optuna's TPE over the same ranges, trials in parallel, objective from the logs."""
        import optuna

        job_name = job_name or naming.job_name("tune", naming.TUNING_JOB_NAME_MAX)
        self._channel_keys(request.training)
        arn = self.sagemaker.create_hyper_parameter_tuning_job(
            **requests.create_tuning_job_request(request, job_name))["HyperParameterTuningJobArn"]
        LOG.info("tuning job %s registered (%s): %d trials, %d in parallel", job_name, arn,
                 request.max_jobs, request.max_parallel_jobs)
        threads = max(1, self.cpu_count // request.max_parallel_jobs)
        ranges = request.ranges
        base = request.training.hyperparameters
        counter = iter(range(1, request.max_jobs + 1))
        lock = threading.Lock()

        def objective(trial: optuna.Trial) -> float:
            hps = dataclasses.replace(
                base, lr=trial.suggest_float("lr", *ranges.lr, log=True),
                batch_size=trial.suggest_int("batch_size", *ranges.batch_size),
                epochs=trial.suggest_int("epochs", *ranges.epochs))
            with lock:
                number = next(counter)
            trial_request = dataclasses.replace(
                request.training, hyperparameters=hps,
                tags={**request.training.tags, "breedops:tuning-job": job_name})
            result = self.train(trial_request, naming.trial_job_name(job_name, number),
                                threads=threads)
            if OBJECTIVE_METRIC not in result.metrics:
                raise JobFailedError(f"{result.job_name} logged no {OBJECTIVE_METRIC}")
            trial.set_user_attr("result", result)
            return result.metrics[OBJECTIVE_METRIC]

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler = optuna.samplers.TPESampler(
            seed=base.seed, n_startup_trials=request.max_parallel_jobs, constant_liar=True)
        study = optuna.create_study(direction="minimize", sampler=sampler)
        study.optimize(objective, n_trials=request.max_jobs,
                       n_jobs=request.max_parallel_jobs, catch=(JobFailedError,))
        completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if not completed:
            self._tag(arn, {STATUS_TAG: "Failed"})
            raise JobFailedError(f"tuning job {job_name}: every trial failed; see the logs "
                                 f"under {self.jobs_dir}")
        best = study.best_trial
        result: TrainingResult = best.user_attrs["result"]
        self._tag(arn, {STATUS_TAG: "Completed", "breedops:best-training-job": result.job_name,
                        "breedops:objective-value": f"{best.value:.4f}",
                        "breedops:completed-trials": str(len(completed))})
        LOG.info("tuning job %s: best %s with %s=%.4f", job_name, result.job_name,
                 OBJECTIVE_METRIC, best.value)
        return TuningResult(tuning_job_name=job_name, best=result, objective_value=best.value)

    def best_training_job(self, tuning_job_name: str) -> str:
        """The best trial's name (moto's BestTrainingJob is a placeholder, so: our tag)."""
        arn = self.sagemaker.describe_hyper_parameter_tuning_job(
            HyperParameterTuningJobName=tuning_job_name)["HyperParameterTuningJobArn"]
        tags = {t["Key"]: t["Value"] for t in
                self.sagemaker.list_tags(ResourceArn=arn).get("Tags", [])}
        if tags.get(STATUS_TAG) != "Completed" or "breedops:best-training-job" not in tags:
            raise JobFailedError(f"tuning job {tuning_job_name} has no completed best trial")
        return tags["breedops:best-training-job"]


def _pump(proc: subprocess.Popen, log_path: Path, prefix: str, to_console: bool) -> None:
    """Copy a process's output to its log file, and (without progress bars) to the console."""
    with open(log_path, "ab") as log:
        for raw in proc.stdout:
            log.write(raw)
            log.flush()
            # A progress bar redraws with \r; the text after the last one is a real line.
            line = raw.decode(errors="replace").rstrip().rsplit("\r", 1)[-1].strip()
            if to_console and line:
                LOG.info("[%s] %s", prefix, line)
