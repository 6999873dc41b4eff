"""Jobs on SageMaker through the SageMaker Python SDK v3: ALL SDK use lives in this module.

The one job backend, for both environments: against `local` the same requests go to the
emulator, which runs the jobs as SageMaker does. `ModelTrainer` submits training jobs (managed
spot, checkpoints, Torchrun for several instances with the training channel sharded by S3 key)
and `HyperparameterTuner` tuning jobs (Bayesian, `valid_loss` minimised, metric definitions from
`breedops.jobs.metrics`). Results come back as on AWS: from the describe calls and from S3.
The entry point is `breedops.training.train`, staged with the package subset it imports.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from breedops import hyperparameters, interrupts
from breedops.errors import BreedopsError
from breedops.jobs import naming, staged_source
from breedops.jobs.metrics import (
    METRIC_DEFINITIONS,
    OBJECTIVE_METRIC,
    OBJECTIVE_TYPE,
    final_metrics,
)
from breedops.jobs.spec import (
    CHANNELS,
    FRAMEWORK_VERSION,
    PY_VERSION,
    WEIGHTS_CHANNEL,
    HyperParameters,
    TrainingRequest,
    TrainingResult,
    TuningRequest,
    TuningResult,
)
from breedops.jobs.submitted import SubmittedJob, attach_or_submit

LOG = logging.getLogger(__name__)
CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"
VOLUME_SIZE_GB = 30
POLL_SECONDS = 5
VALIDATE_ROLE_VARIABLE = "SAGEMAKER_VALIDATE_ROLE"
TRAINING_LOG_GROUP = "/aws/sagemaker/TrainingJobs"
ENTRY_SCRIPT = "train_entry.py"
ENTRY_SOURCE = f'''"""SageMaker entry point: the container runs this from /opt/ml/code (on sys.path)."""
import sys

from {staged_source.ENTRY_MODULE} import main

if __name__ == "__main__":
    sys.exit(main())
'''
# The training container's PyTorch image may lack these; the SDK installs them first. The ONNX
# three export and gate the served model at packaging (versions as in requirements.lock).
REQUIREMENTS = "tqdm\nmatplotlib\nonnx==1.23.2\nonnxscript==0.7.2\nonnxruntime==1.32.0\n"


class SageMakerJobError(BreedopsError):
    """A SageMaker job failed or could not be submitted."""


def training_log_command(job_name: str) -> str:
    """The AWS CLI (v1 and v2) command that prints a training job's log."""
    return (f"aws logs filter-log-events --log-group-name {TRAINING_LOG_GROUP} "
            f"--log-stream-name-prefix {job_name}/")


def stop_command(kind: str, job_name: str) -> str:
    """The AWS CLI command that stops a training or tuning job."""
    if kind == "tuning":
        return ("aws sagemaker stop-hyper-parameter-tuning-job "
                f"--hyper-parameter-tuning-job-name {job_name}")
    return f"aws sagemaker stop-training-job --training-job-name {job_name}"


@contextmanager
def waiting_for(kind: str, job_name: str, resumable: bool) -> Iterator[None]:
    """An interrupt while waiting leaves the job running: say so, and how to resume or stop."""
    try:
        yield
    except KeyboardInterrupt as e:
        then = ("the next `make apply` resumes waiting on it" if resumable else
                "its result is read with `aws sagemaker describe-"
                f"{'hyper-parameter-tuning-job' if kind == 'tuning' else 'training-job'}`")
        raise interrupts.Interrupted(
            f"stopped waiting for {kind} job {job_name}, which keeps running (on AWS, and "
            f"billing); {then}. To stop it: {stop_command(kind, job_name)}") from e


def distribution_type(channel: str, instance_count: int) -> str:
    """Each host gets 1/N of the training objects; evaluation splits go to every host."""
    return "ShardedByS3Key" if channel == "train" and instance_count > 1 else "FullyReplicated"


def stage_source_dir(target: Path) -> Path:
    """A source dir with the entry script and the breedops subset the script imports."""
    package = target / "breedops"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text('"""breedops, as staged for a training job."""\n')
    for relative in staged_source.staged_files():
        destination = package / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(staged_source.PACKAGE_ROOT / relative, destination)
    (target / ENTRY_SCRIPT).write_text(ENTRY_SOURCE)
    (target / "requirements.txt").write_text(REQUIREMENTS)
    return target


class SageMakerBackend:
    """Training and tuning jobs on SageMaker."""

    def __init__(self) -> None:
        import boto3

        # The SDK's client-side role check simulates a broad "training role" action list (VPC
        # network interfaces, PutMetricData without its namespace condition) that a
        # least-privilege execution role deliberately lacks. SageMaker itself refuses a role it
        # cannot assume at CreateTrainingJob (the emulator too); the user's setting wins.
        os.environ.setdefault(VALIDATE_ROLE_VARIABLE, "false")
        # sagemaker-core keeps its clients per process; a backend follows the endpoint
        # variables of its time (a process may point at several emulators in turn).
        from sagemaker.core.utils.utils import SageMakerClient

        SageMakerClient.reset()

        self.sagemaker = boto3.client("sagemaker")
        self.s3 = boto3.client("s3")
        self.logs = boto3.client("logs")
        self._staging = tempfile.TemporaryDirectory(prefix="breedops-source-")
        self.source_dir = stage_source_dir(Path(self._staging.name))

    def model_trainer(self, request: TrainingRequest, job_name: str,
                      source_dir: str | None = None) -> Any:
        """The ModelTrainer for `request` (a tuner uses it as its training job definition);
        `source_dir` is the staged source's S3 URI (default: the local staging folder)."""
        from sagemaker.core import image_uris
        from sagemaker.core.helper.session_helper import Session
        from sagemaker.core.shapes import StoppingCondition
        from sagemaker.core.training.configs import (
            CheckpointConfig,
            Compute,
            OutputDataConfig,
            SourceCode,
        )
        from sagemaker.train import ModelTrainer
        from sagemaker.train.distributed import Torchrun

        region = self.sagemaker.meta.region_name
        image = image_uris.retrieve("pytorch", region, version=FRAMEWORK_VERSION,
                                    py_version=PY_VERSION, instance_type=request.instance_type,
                                    image_scope="training")
        stopping = {"max_runtime_in_seconds": request.max_run_s}
        if request.use_spot:
            stopping["max_wait_time_in_seconds"] = request.max_wait_s
        trainer = ModelTrainer(
            # The data bucket, not the SDK's default one: the execution role can reach it, and
            # naming the bucket spares an STS call on a hard-coded regional endpoint.
            sagemaker_session=Session(default_bucket=request.bucket,
                                      default_bucket_prefix=request.code_prefix),
            training_image=image,
            role=request.role_arn,
            base_job_name=job_name,
            source_code=SourceCode(source_dir=source_dir or str(self.source_dir),
                                   entry_script=ENTRY_SCRIPT,
                                   requirements="requirements.txt"),
            distributed=Torchrun() if request.instance_count > 1 else None,
            compute=Compute(instance_type=request.instance_type,
                            instance_count=request.instance_count,
                            volume_size_in_gb=VOLUME_SIZE_GB,
                            enable_managed_spot_training=request.use_spot),
            stopping_condition=StoppingCondition(**stopping),
            output_data_config=OutputDataConfig(s3_output_path=request.output_uri),
            checkpoint_config=CheckpointConfig(s3_uri=request.checkpoint_uri(job_name),
                                               local_path=CHECKPOINT_LOCAL_PATH),
            hyperparameters=request.hyperparameters.as_strings(),
            tags=[{"key": k, "value": v} for k, v in request.tags.items()] or None,
        )
        return trainer.with_metric_definitions(_metric_definitions())

    def input_data(self, request: TrainingRequest) -> list:
        """The three channels, `train` sharded by S3 key across several instances, and the
        pretrained weights' channel when the request brings a weights file."""
        from sagemaker.core.shapes import Channel, DataSource, S3DataSource

        uris = {channel: request.channel_uri(channel) for channel in CHANNELS}
        if request.weights_uri:
            uris[WEIGHTS_CHANNEL] = request.weights_uri
        return [
            Channel(channel_name=channel, input_mode="File", data_source=DataSource(
                s3_data_source=S3DataSource(
                    s3_data_type="S3Prefix", s3_uri=uri,
                    s3_data_distribution_type=distribution_type(channel,
                                                                request.instance_count))))
            for channel, uri in uris.items()
        ]

    def submit_training(self, request: TrainingRequest, job_name: str | None = None,
                        wait: bool = False) -> str:
        """Create a training job; return its name.

        The SDK appends its own timestamp to `job_name` (its base job name); the checkpoint
        prefix is `checkpoints/<job_name>/`, stable across the job's spot restarts.
        """
        # The SDK appends "-<yyyymmddHHMMSS>" (15 characters) to its base job name.
        job_name = job_name or naming.job_name("train", naming.TRAINING_JOB_NAME_MAX - 15,
                                               request.name_prefix)
        trainer = self.model_trainer(request, job_name)
        trainer.train(input_data_config=self.input_data(request), wait=False)
        name = trainer._latest_training_job.training_job_name
        LOG.info("training job %s submitted", name)
        if wait:
            self.wait_for_training(name)
        return name

    def wait_for_training(self, name: str) -> None:
        """Stream the job's CloudWatch log until it ends; its outcome is read by `_result`."""
        from sagemaker.core.resources import TrainingJob
        from sagemaker.core.utils.exceptions import FailedStatusError

        try:
            TrainingJob.get(training_job_name=name).wait(poll=POLL_SECONDS, logs=True)
        except FailedStatusError:
            pass  # `_result` reports the failure with SageMaker's FailureReason

    def train(self, request: TrainingRequest,
              submitted: SubmittedJob | None = None) -> TrainingResult:
        """Run a training job to the end (streaming its logs).

        With `submitted`, the job is recorded there once created, and a job recorded by an
        earlier run for the same request is waited on (or its result used) instead.
        """
        name = attach_or_submit("training", submitted, self._training_status,
                                lambda: self.submit_training(request))
        with waiting_for("training", name, resumable=submitted is not None):
            self.wait_for_training(name)
        return self._result(name, request.hyperparameters)

    def _training_status(self, name: str) -> str | None:
        return _status_or_none(lambda: self.sagemaker.describe_training_job(
            TrainingJobName=name)["TrainingJobStatus"])

    def _tuning_status(self, name: str) -> str | None:
        return _status_or_none(lambda: self.sagemaker.describe_hyper_parameter_tuning_job(
            HyperParameterTuningJobName=name)["HyperParameterTuningJobStatus"])

    def _result(self, job_name: str, hyperparameters: HyperParameters) -> TrainingResult:
        described = self.sagemaker.describe_training_job(TrainingJobName=job_name)
        status = described["TrainingJobStatus"]
        if status != "Completed":
            raise SageMakerJobError(
                f"training job {job_name} ended {status}: "
                f"{described.get('FailureReason', 'no reason given')}\n"
                f"its log: {training_log_command(job_name)}")
        metrics = {m["MetricName"]: m["Value"] for m in described.get("FinalMetricDataList", [])
                   if m["MetricName"] in {d["Name"] for d in METRIC_DEFINITIONS}}
        return TrainingResult(
            job_name=job_name, job_arn=described["TrainingJobArn"],
            model_data_url=described["ModelArtifacts"]["S3ModelArtifacts"],
            metrics=metrics or self._metrics_from_logs(job_name), hyperparameters=hyperparameters)

    def _metrics_from_logs(self, job_name: str) -> dict[str, float]:
        """Fallback when SageMaker recorded no final metrics: the same regexes on the logs."""
        return final_metrics("\n".join(self.job_logs(job_name).values()))

    def job_logs(self, job_name: str) -> dict[str, str]:
        """Each host's log of a job (`algo-1` -> its text), read as the SDK streams it while
        waiting: the job's streams by prefix, then each stream from its start."""
        streams: list[str] = []
        try:
            pages = self.logs.get_paginator("describe_log_streams").paginate(
                logGroupName=TRAINING_LOG_GROUP, logStreamNamePrefix=f"{job_name}/")
            streams = [s["logStreamName"] for page in pages for s in page["logStreams"]]
        except self.logs.exceptions.ResourceNotFoundException:
            return {}
        logs = {}
        for stream in sorted(streams):
            lines, token = [], None
            while True:
                kwargs = {"nextToken": token} if token else {"startFromHead": True}
                page = self.logs.get_log_events(logGroupName=TRAINING_LOG_GROUP,
                                                logStreamName=stream, **kwargs)
                lines += [e["message"] for e in page["events"]]
                if not page["events"] or page.get("nextForwardToken") == token:
                    break
                token = page.get("nextForwardToken")
            host = stream.split("/", 1)[1].rsplit("-", 1)[0]  # <job>/algo-1-<epoch>
            logs[host] = "\n".join(lines)
        return logs

    def save_job_logs(self, job_name: str, target: Path) -> list[Path]:
        """The job's logs as `<target>/<host>.log`, beside its plots."""
        target.mkdir(parents=True, exist_ok=True)
        saved = []
        for host, text in self.job_logs(job_name).items():
            path = target / f"{host}.log"
            path.write_text(text + "\n")
            saved.append(path)
        return saved

    def submit_tuning(self, request: TuningRequest, job_name: str | None = None,
                      wait: bool = False) -> str:
        """Create a Bayesian tuning job over the ranges; return its name."""
        from sagemaker.train.tuner import HyperparameterTuner

        job_name = job_name or naming.job_name("tune", naming.TUNING_JOB_NAME_MAX,
                                               request.training.name_prefix)
        tuner = HyperparameterTuner(
            model_trainer=self.model_trainer(request.training, job_name,
                                             self._stage_source(request.training, job_name)),
            objective_metric_name=OBJECTIVE_METRIC,
            objective_type=OBJECTIVE_TYPE,
            metric_definitions=[dict(d) for d in METRIC_DEFINITIONS],
            hyperparameter_ranges=sdk_ranges(request.ranges),
            strategy="Bayesian",
            max_jobs=request.max_jobs,
            max_parallel_jobs=request.max_parallel_jobs,
            random_seed=request.training.hyperparameters.seed,
        )
        tuner.tune(inputs=self.input_data(request.training), job_name=job_name, wait=False)
        LOG.info("tuning job %s submitted: %d trials, %d in parallel", job_name,
                 request.max_jobs, request.max_parallel_jobs)
        if wait:
            self.wait_for_tuning(job_name)
        return job_name

    def _stage_source(self, request: TrainingRequest, job_name: str) -> str:
        """The source as `<code prefix>/<job>/sourcedir.tar.gz`: the tuner would otherwise
        upload it under `<job>/` at the bucket's root, outside the staging prefix that the
        operator may write and the execution role may read."""
        from breedops.jobs.source_bundle import upload_training_source

        return upload_training_source(self.s3, request.bucket,
                                      f"{request.code_prefix}/{job_name}/sourcedir.tar.gz")

    def wait_for_tuning(self, name: str) -> None:
        """Poll the tuning job until it ends, logging each trial as it finishes."""
        reported: set[str] = set()
        while True:
            described = self.sagemaker.describe_hyper_parameter_tuning_job(
                HyperParameterTuningJobName=name)
            for trial in self._trials(name):
                if trial["TrainingJobStatus"] in ("Completed", "Failed", "Stopped") and \
                        trial["TrainingJobName"] not in reported:
                    reported.add(trial["TrainingJobName"])
                    objective = trial.get("FinalHyperParameterTuningJobObjectiveMetric", {})
                    LOG.info("tuning job %s: trial %s %s, %s=%s %s", name,
                             trial["TrainingJobName"], trial["TrainingJobStatus"],
                             OBJECTIVE_METRIC, objective.get("Value", "-"),
                             trial.get("TunedHyperParameters", {}))
            if described["HyperParameterTuningJobStatus"] in ("Completed", "Failed", "Stopped"):
                return
            time.sleep(POLL_SECONDS)

    def _trials(self, name: str) -> list[dict[str, Any]]:
        pages = self.sagemaker.get_paginator(
            "list_training_jobs_for_hyper_parameter_tuning_job").paginate(
            HyperParameterTuningJobName=name)
        return [trial for page in pages for trial in page["TrainingJobSummaries"]]

    def tune(self, request: TuningRequest,
             submitted: SubmittedJob | None = None) -> TuningResult:
        """Run a tuning job to the end; its best trial is the result. `submitted` as for
        `train`."""
        name = attach_or_submit("tuning", submitted, self._tuning_status,
                                lambda: self.submit_tuning(request))
        with waiting_for("tuning", name, resumable=submitted is not None):
            self.wait_for_tuning(name)
        described = self.sagemaker.describe_hyper_parameter_tuning_job(
            HyperParameterTuningJobName=name)
        if described["HyperParameterTuningJobStatus"] != "Completed":
            failures = "; ".join(
                f"{t['TrainingJobName']}: {t.get('FailureReason', t['TrainingJobStatus'])}"
                for t in self._trials(name) if t["TrainingJobStatus"] != "Completed")
            raise SageMakerJobError(
                f"tuning job {name} ended {described['HyperParameterTuningJobStatus']}: "
                f"{described.get('FailureReason', 'no reason given')}"
                + (f"\nfailed trials: {failures}" if failures else ""))
        best_name = self.best_training_job(name)
        hps = HyperParameters.from_strings(self.sagemaker.describe_training_job(
            TrainingJobName=best_name)["HyperParameters"])
        objective = described["BestTrainingJob"].get(
            "FinalHyperParameterTuningJobObjectiveMetric", {}).get("Value")
        return TuningResult(tuning_job_name=name, best=self._result(best_name, hps),
                            objective_value=float("nan" if objective is None else objective))

    def best_training_job(self, tuning_job_name: str) -> str:
        described = self.sagemaker.describe_hyper_parameter_tuning_job(
            HyperParameterTuningJobName=tuning_job_name)
        name = (described.get("BestTrainingJob") or {}).get("TrainingJobName")
        if not name:
            raise SageMakerJobError(f"tuning job {tuning_job_name} has no best training job")
        return name


def _status_or_none(describe: Callable[[], str]) -> str | None:
    """A job's status; None for a name SageMaker does not know (an emulator wiped since)."""
    try:
        return describe()
    except ClientError as e:
        if e.response["Error"]["Code"] in ("ValidationException", "ResourceNotFound"):
            return None
        raise


def sdk_ranges(ranges: dict[str, hyperparameters.Range]) -> dict[str, Any]:
    """The tuner's ranges as the SDK's parameters, by SageMaker hyperparameter name."""
    from sagemaker.core.parameter import (
        CategoricalParameter,
        ContinuousParameter,
        IntegerParameter,
    )

    parameters = {}
    for name, search in ranges.items():
        hp = hyperparameters.hyperparameter(name)
        if isinstance(search, hyperparameters.Choice):
            parameter = CategoricalParameter([hp.format(v) for v in search.values])
        else:
            kind = ContinuousParameter if hp.kind is float else IntegerParameter
            parameter = kind(search.low, search.high, scaling_type=search.scaling)
        parameters[hp.wire_name] = parameter
    return parameters


def _metric_definitions() -> list:
    from sagemaker.core.shapes import MetricDefinition

    return [MetricDefinition(name=d["Name"], regex=d["Regex"]) for d in METRIC_DEFINITIONS]

