"""SageMaker's job APIs, executed: what moto 5.2 only registers, the emulator runs.

moto marks every training job Completed at once with filler metrics and answers a tuning job
with a hard-coded `FakeTrainingJobName`. `apply()` wraps and adds moto's SageMaker actions so
that:

- `CreateTrainingJob` validates the request as AWS does (unique name, an execution role that
  exists and that SageMaker may assume) and starts a `TrainingJobRun`;
- `StopTrainingJob` stops it (Stopping, then Stopped);
- `CreateHyperParameterTuningJob` validates its configuration and starts a `TuningJobRun`;
  `StopHyperParameterTuningJob` stops it and its trials;
  `ListTrainingJobsForHyperParameterTuningJob` lists its trials;
- `DescribeTrainingJob`/`DescribeHyperParameterTuningJob` answer what the runs recorded.

While the emulator replays its journal (`suspend()`), creations only register jobs; `resume()`
then runs again every job that was still running when the emulator stopped or was killed, as
the job would have gone on on AWS (a job outlives an outage of the API): a training job from
its request and its checkpoints, a tuning job from its trials so far.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from moto.core.responses import ActionResult, EmptyResult
from moto.sagemaker.exceptions import ResourceInUseException, ResourceNotFound, ValidationError
from moto.sagemaker.models import FakeTrainingJob, HyperParameterTuningJob, sagemaker_backends
from moto.sagemaker.responses import SageMakerResponse

from breedops.local import service_roles
from breedops.local.sagemaker_jobs import records, transfer
from breedops.local.sagemaker_jobs.search import InvalidTuningConfig, TuningSearch
from breedops.local.sagemaker_jobs.training import TERMINAL, Site, TrainingJobRun
from breedops.local.sagemaker_jobs.tuning import TuningJobRun
from breedops.local.service_roles import SAGEMAKER_PRINCIPAL

log = logging.getLogger(__name__)


class _Executor:
    """The runs in progress, where they run, and whether new runs may start."""

    def __init__(self) -> None:
        self.site: Site | None = None
        self.suspended = False
        self.training: dict[tuple[str, str, str], TrainingJobRun] = {}
        self.tuning: dict[tuple[str, str, str], TuningJobRun] = {}
        self.lock = threading.Lock()

    def start(self, runs: dict[tuple[str, str, str], Any], key: tuple[str, str, str],
              run: Any) -> None:
        """Register a run (forgetting the finished ones) and start it."""
        with self.lock:
            for done in [k for k, r in runs.items() if r.done.is_set()]:
                del runs[done]
            runs[key] = run
        run.start()

    def stop(self, runs: dict[tuple[str, str, str], Any], backend: Any, name: str) -> None:
        """Stop the run of a job, if this emulator process runs it."""
        run = runs.get((backend.account_id, backend.region_name, name))
        if run is not None:
            run.stop()

    def require_site(self) -> Site:
        if self.site is None:
            raise RuntimeError("the job executor is not configured: call configure() first")
        return self.site


EXECUTOR = _Executor()


def configure(endpoint_url: str, jobs_dir: Path, cpu_count: int | None = None) -> None:
    """Where jobs run (one folder per job) and the URL through which they reach the emulator."""
    jobs_dir.mkdir(parents=True, exist_ok=True)
    EXECUTOR.site = Site(endpoint_url=endpoint_url, jobs_dir=jobs_dir,
                         cpu_count=cpu_count or os.cpu_count() or 1)


def suspend() -> None:
    EXECUTOR.suspended = True


def resume() -> None:
    """Allow runs again, and run again the jobs a stopped emulator left in progress."""
    EXECUTOR.suspended = False
    for account, by_region in list(sagemaker_backends.items()):
        for region, backend in list(by_region.items()):
            for name, job in list(backend.hyper_parameter_tuning_jobs.items()):
                status = job.hyper_parameter_tuning_job_status
                if status == "Stopping":  # StopHyperParameterTuningJob was acknowledged
                    _record_stopped(records.TUNING_STATE, account, region, name,
                                    "HyperParameterTuningJobStatus")
                elif status not in TERMINAL:
                    log.info("tuning job %s was in progress: it goes on", name)
                    _start_tuning(account, region, name, restored=True)
            for name, job in list(backend.training_jobs.items()):
                status = job.training_job_status
                if status == "Stopping":
                    _record_stopped(records.TRAINING_STATE, account, region, name,
                                    "TrainingJobStatus")
                # A tuning job's trials run again with their tuning job, just above.
                elif status not in TERMINAL and not getattr(job, "tuning_job_arn", None):
                    log.info("training job %s was in progress: it runs again", name)
                    _start_training(account, region, name, restarted=True)


def _record_stopped(route: str, account: str, region: str, name: str, field: str) -> None:
    records.dispatch(route, {"account": account, "region": region, "name": name,
                             "fields": {field: "Stopped"}})


def shutdown() -> None:
    """The emulator is stopping: kill every running job's processes (SIGKILL, each host's
    process group) and start nothing more. The jobs stay InProgress; `resume()` at the next
    start runs them again."""
    EXECUTOR.suspended = True
    with EXECUTOR.lock:
        tuning = [run for run in EXECUTOR.tuning.values() if not run.done.is_set()]
        training = [run for run in EXECUTOR.training.values() if not run.done.is_set()]
    for run in tuning:
        run.abandon()
    for run in training:
        run.abandon()


# -- validation ---------------------------------------------------------------------------------

def _check_role(response: SageMakerResponse, role_arn: str, kind: str, name: str) -> None:
    """AWS refuses a job whose role does not exist or does not trust SageMaker for this job."""
    from moto.iam.exceptions import NotFoundException
    from moto.iam.models import iam_backends

    from breedops.local.iam_enforcement import arn_of

    message = (f"Could not assume role {role_arn}. Please ensure that the role exists and allows "
               f"principal '{SAGEMAKER_PRINCIPAL}' to assume the role.")
    account = response.current_account
    try:
        role = iam_backends[account]["global"].get_role_by_arn(role_arn)
    except NotFoundException:
        raise ValidationError(message=message) from None
    source = arn_of(response, "sagemaker", f"{kind}/{name.lower()}")
    if not service_roles.trusts(role.assume_role_policy_document, SAGEMAKER_PRINCIPAL,
                                {"aws:SourceAccount": account, "aws:SourceArn": source}):
        raise ValidationError(message=message)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _check_training_request(self: SageMakerResponse, name: str) -> None:
    backend = self.sagemaker_backend
    if name in backend.training_jobs:
        arn = FakeTrainingJob.arn_formatter(name, backend.account_id, backend.region_name)
        raise ResourceInUseException(message=f"Training job names must be unique within an AWS "
                                             f"account and region, and a training job with "
                                             f"this name already exists ({arn})")
    spec = self._get_param("AlgorithmSpecification") or {}
    if not spec.get("TrainingImage") and not spec.get("AlgorithmName"):
        raise ValidationError(message="Either TrainingImage or AlgorithmName must be specified "
                                      "in AlgorithmSpecification")
    for channel in self._get_param("InputDataConfig") or []:
        source = (channel.get("DataSource") or {}).get("S3DataSource") or {}
        if not str(source.get("S3Uri", "")).startswith("s3://"):
            raise ValidationError(message=f"Channel {channel.get('ChannelName')}: S3Uri must be "
                                          "an s3:// URI")
    _check_role(self, self._get_param("RoleArn"), "training-job",
                self._get_param("TrainingJobName") or "")


# -- training jobs ------------------------------------------------------------------------------

def _role_fetch(account: str, region: str, role_arn: str) -> transfer.Fetch:
    """Channel objects from the emulator's own S3 store, authorised as the role would be.

    With IAM enforced, each read needs `s3:GetObject` on the object and, for an SSE-KMS object,
    `kms:Decrypt` on its key, from the role's identity policies (AWS's AccessDenied otherwise).
    """
    from moto.s3.models import s3_backends

    from breedops.local import iam_enforcement

    store = s3_backends[account]["aws"]
    session = f"arn:aws:sts::{account}:assumed-role/{role_arn.rsplit('/', 1)[-1]}/SageMaker"
    policies: list[dict[str, Any]] | None = None
    if iam_enforcement.enabled():
        from moto.iam.models import iam_backends

        from breedops.local.iam_simulation import principal_policies

        policies = [document for _, _, document in
                    principal_policies(iam_backends[account]["global"], role_arn)]

    # The policies are read once per job, so a decision holds for its whole download: the key's
    # kms:Decrypt, the same for every object, is evaluated once, not once per object.
    allowed: set[tuple[str, str, tuple[tuple[str, str], ...]]] = set()

    def authorize(action: str, resource: str, context: dict[str, str] | None = None) -> None:
        decision = (action, resource, tuple(sorted((context or {}).items())))
        if policies is None or decision in allowed:
            return
        if not iam_enforcement.is_allowed(policies, action, resource, context,
                                          principal=session):
            raise transfer.ChannelError(f"AccessDenied: {role_arn} is not authorized to "
                                        f"perform: {action} on resource: {resource}")
        allowed.add(decision)

    def fetch(bucket: str, key: str) -> bytes:
        authorize("s3:GetObject", f"arn:aws:s3:::{bucket}/{key}")
        obj = store.get_object(bucket, key)
        if obj is None:
            raise transfer.ChannelError(f"NoSuchKey: s3://{bucket}/{key}")
        if obj.encryption == "aws:kms" and obj.kms_key_id:
            key_id = obj.kms_key_id
            authorize("kms:Decrypt", key_id if key_id.startswith("arn:")
                      else f"arn:aws:kms:{region}:{account}:key/{key_id}",
                      {"kms:ViaService": f"s3.{region}.amazonaws.com",
                       "kms:CallerAccount": account})
        return obj.value

    return fetch


def _start_training(account: str, region: str, name: str,
                    threads: int | None = None, restarted: bool = False) -> TrainingJobRun:
    backend = sagemaker_backends[account][region]
    job = backend.training_jobs[name]
    described = copy.deepcopy(job.response_object)
    described["Environment"] = getattr(job, "environment", None) or {}
    run = TrainingJobRun(EXECUTOR.require_site(), described, account, region, threads=threads,
                         fetch=_role_fetch(account, region, job.role_arn), restarted=restarted)
    EXECUTOR.start(EXECUTOR.training, (account, region, name), run)
    return run


def _register_training_job(backend: Any, request: dict[str, Any],
                           tuning_job_arn: str | None = None) -> FakeTrainingJob:
    """moto's job record, fixed to say what AWS says of a job that has just been created."""
    job = backend.training_jobs[request["TrainingJobName"]]
    job.algorithm_specification = copy.deepcopy(request["AlgorithmSpecification"])
    job.environment = request.get("Environment")
    job.retry_strategy = request.get("RetryStrategy")
    job.tuning_job_arn = tuning_job_arn
    job.training_job_status = "InProgress"
    job.secondary_status = "Starting"
    job.secondary_status_transitions = [{
        "Status": "Starting", "StartTime": job.creation_time,
        "StatusMessage": "Launching requested ML instances"}]
    job.final_metric_data_list = None
    job.training_start_time = job.training_end_time = None
    job.model_artifacts = None
    return job


def _create_training_job(original: Any) -> Any:
    def create_training_job(self: SageMakerResponse) -> ActionResult:
        name = self._get_param("TrainingJobName")
        _check_training_request(self, name)
        result = original(self)
        backend = self.sagemaker_backend
        request = json.loads(self.body)
        _register_training_job(backend, request)
        if not EXECUTOR.suspended:
            _start_training(backend.account_id, backend.region_name, name)
        return result

    create_training_job.__wrapped__ = original  # type: ignore[attr-defined]
    return create_training_job


def _training_job(self: SageMakerResponse) -> FakeTrainingJob:
    name = self._get_param("TrainingJobName")
    backend = self.sagemaker_backend
    if name not in backend.training_jobs:
        arn = FakeTrainingJob.arn_formatter(name, backend.account_id, backend.region_name)
        raise ValidationError(message=f"Could not find training job '{arn}'.")
    return backend.training_jobs[name]


def _stop_training_job(self: SageMakerResponse) -> EmptyResult:
    job = _training_job(self)
    if job.training_job_status in TERMINAL or job.training_job_status == "Stopping":
        raise ValidationError(message=f"The training job {job.training_job_name} is "
                                      f"{job.training_job_status} and cannot be stopped.")
    job.training_job_status = "Stopping"
    job.secondary_status = "Stopping"
    EXECUTOR.stop(EXECUTOR.training, self.sagemaker_backend, job.training_job_name)
    return EmptyResult()


# -- tuning jobs --------------------------------------------------------------------------------

def _create_hyper_parameter_tuning_job(original: Any) -> Any:
    def create_hyper_parameter_tuning_job(self: SageMakerResponse) -> ActionResult:
        config = self._get_param("HyperParameterTuningJobConfig") or {}
        definition = self._get_param("TrainingJobDefinition")
        if self._get_param("TrainingJobDefinitions"):
            raise ValidationError(message="The emulator runs tuning jobs with one "
                                          "TrainingJobDefinition; TrainingJobDefinitions (several "
                                          "algorithms) is not supported")
        if not definition:
            raise ValidationError(message="TrainingJobDefinition is required")
        try:
            TuningSearch(config)
        except InvalidTuningConfig as e:
            raise ValidationError(message=str(e)) from None
        _check_role(self, definition.get("RoleArn", ""), "hyper-parameter-tuning-job",
                    self._get_param("HyperParameterTuningJobName") or "")
        result = original(self)
        backend = self.sagemaker_backend
        name = self._get_param("HyperParameterTuningJobName")
        job = backend.hyper_parameter_tuning_jobs[name]
        _reset_tuning_job(job)
        if not EXECUTOR.suspended:
            _start_tuning(backend.account_id, backend.region_name, name)
        return result

    create_hyper_parameter_tuning_job.__wrapped__ = original  # type: ignore[attr-defined]
    return create_hyper_parameter_tuning_job


def _reset_tuning_job(job: HyperParameterTuningJob) -> None:
    """Clear moto's filler: a new tuning job has no trials and no best one yet."""
    job.hyper_parameter_tuning_job_status = "InProgress"
    job.hyper_parameter_tuning_end_time = None
    job.training_job_status_counters = {"Completed": 0, "InProgress": 0, "RetryableError": 0,
                                        "NonRetryableError": 0, "Stopped": 0}
    job.objective_status_counters = {"Succeeded": 0, "Pending": 0, "Failed": 0}
    job.best_training_job = None
    job.OverallBestTrainingJob = None
    job.tuning_job_completion_details = None
    job.consumed_resources = None
    job.failure_reason = None
    job.trials = []


def _start_tuning(account: str, region: str, name: str, restored: bool = False) -> TuningJobRun:
    job = sagemaker_backends[account][region].hyper_parameter_tuning_jobs[name]
    described = copy.deepcopy({"HyperParameterTuningJobName": name,
                               "HyperParameterTuningJobArn": job.arn,
                               "HyperParameterTuningJobConfig":
                                   job.hyper_parameter_tuning_job_config,
                               "TrainingJobDefinition": job.training_job_definition})

    def start_trial(request: dict[str, Any], threads: int) -> TrainingJobRun:
        records.dispatch(records.TUNING_TRIAL, {"account": account, "region": region,
                                                "tuning_job": name, "request": request})
        return _start_training(account, region, request["TrainingJobName"], threads=threads)

    def restart_trial(trial: str, threads: int) -> TrainingJobRun | _EndedRun:
        ended = sagemaker_backends[account][region].training_jobs[trial]
        if ended.training_job_status in TERMINAL:  # it ended just before the emulator stopped
            return _EndedRun(ended)
        return _start_training(account, region, trial, threads=threads, restarted=True)

    run = TuningJobRun(EXECUTOR.require_site(), described, account, region, start_trial,
                       restored=list(getattr(job, "trials", None) or []) if restored else None,
                       restart_trial=restart_trial)
    EXECUTOR.start(EXECUTOR.tuning, (account, region, name), run)
    return run


class _EndedRun:
    """What a tuning job reads of a trial's run, for a trial whose training job had ended."""

    def __init__(self, job: FakeTrainingJob) -> None:
        self.job = job.response_object
        self.status = job.training_job_status
        self.final_metrics = list(job.final_metric_data_list or [])
        self.failure_reason = getattr(job, "failure_reason", None)
        self.training_started = None
        self.done = threading.Event()
        self.done.set()

    def stop(self) -> None:
        """It has ended already."""


def _tuning_job(self: SageMakerResponse) -> HyperParameterTuningJob:
    name = self._get_param("HyperParameterTuningJobName")
    jobs = self.sagemaker_backend.hyper_parameter_tuning_jobs
    if name not in jobs:
        raise ResourceNotFound(message=f"Amazon SageMaker can't find a tuning job named {name}")
    return jobs[name]


def _describe_hyper_parameter_tuning_job(self: SageMakerResponse) -> ActionResult:
    job = _tuning_job(self)
    described = {
        "HyperParameterTuningJobName": job.hyper_parameter_tuning_job_name,
        "HyperParameterTuningJobArn": job.arn,
        "HyperParameterTuningJobConfig": job.hyper_parameter_tuning_job_config,
        "TrainingJobDefinition": job.training_job_definition,
        "WarmStartConfig": job.warm_start_config,
        "HyperParameterTuningJobStatus": job.hyper_parameter_tuning_job_status,
        "CreationTime": job.creation_time,
        "HyperParameterTuningEndTime": job.hyper_parameter_tuning_end_time,
        "LastModifiedTime": job.last_modified_time,
        "TrainingJobStatusCounters": job.training_job_status_counters,
        "ObjectiveStatusCounters": job.objective_status_counters,
        "BestTrainingJob": job.best_training_job,
        "FailureReason": job.failure_reason,
        "ConsumedResources": job.consumed_resources,
        "Autotune": job.autotune,
    }
    return ActionResult({k: v for k, v in described.items() if v not in (None, {}, "")})


def _stop_hyper_parameter_tuning_job(self: SageMakerResponse) -> EmptyResult:
    job = _tuning_job(self)
    if job.hyper_parameter_tuning_job_status != "InProgress":
        raise ValidationError(message=f"The tuning job {job.hyper_parameter_tuning_job_name} is "
                                      f"{job.hyper_parameter_tuning_job_status} and cannot be "
                                      "stopped.")
    job.hyper_parameter_tuning_job_status = "Stopping"
    EXECUTOR.stop(EXECUTOR.tuning, self.sagemaker_backend, job.hyper_parameter_tuning_job_name)
    return EmptyResult()


SORT_KEYS = {
    "Name": lambda t: t["TrainingJobName"],
    "CreationTime": lambda t: t["CreationTime"],
    "Status": lambda t: t["TrainingJobStatus"],
    "FinalObjectiveMetricValue": lambda t: (
        t.get("FinalHyperParameterTuningJobObjectiveMetric") or {}).get("Value", float("inf")),
}


def _list_training_jobs_for_hyper_parameter_tuning_job(self: SageMakerResponse) -> ActionResult:
    job = _tuning_job(self)
    trials = list(getattr(job, "trials", None) or [])
    status = self._get_param("StatusEquals")
    if status:
        trials = [t for t in trials if t["TrainingJobStatus"] == status]
    sort_by = self._get_param("SortBy") or "Name"
    if sort_by not in SORT_KEYS:
        raise ValidationError(message=f"Value '{sort_by}' at 'sortBy' failed to satisfy "
                                      f"constraint: Member must satisfy enum value set: "
                                      f"[{', '.join(SORT_KEYS)}]")
    if sort_by == "FinalObjectiveMetricValue":
        trials = [t for t in trials if "FinalHyperParameterTuningJobObjectiveMetric" in t]
    trials.sort(key=SORT_KEYS[sort_by], reverse=self._get_param("SortOrder") == "Descending")
    start = int(self._get_param("NextToken") or 0)
    size = int(self._get_param("MaxResults") or 100)
    page = trials[start:start + size]
    result: dict[str, Any] = {"TrainingJobSummaries": [records.with_datetimes(t) for t in page]}
    if start + size < len(trials):
        result["NextToken"] = str(start + size)
    return ActionResult(result)


# -- internal routes ----------------------------------------------------------------------------

def _backend(payload: dict[str, Any]) -> Any:
    return sagemaker_backends[payload["account"]][payload["region"]]


def _record_training_state(payload: dict[str, Any]) -> dict[str, Any]:
    job = _backend(payload).training_jobs[payload["name"]]
    records.apply_fields(job, payload["fields"])
    return {}


def _record_tuning_state(payload: dict[str, Any]) -> dict[str, Any]:
    job = _backend(payload).hyper_parameter_tuning_jobs[payload["name"]]
    records.apply_fields(job, payload["fields"])
    return {}


def _create_trial(payload: dict[str, Any]) -> dict[str, Any]:
    """A tuning job's trial: a training job created by SageMaker itself, not by a request."""
    backend = _backend(payload)
    tuning = backend.hyper_parameter_tuning_jobs[payload["tuning_job"]]
    request = payload["request"]
    backend.create_training_job(
        training_job_name=request["TrainingJobName"],
        hyper_parameters=request.get("HyperParameters") or {},
        algorithm_specification=copy.deepcopy(request["AlgorithmSpecification"]),
        role_arn=request["RoleArn"], input_data_config=request.get("InputDataConfig") or [],
        output_data_config=request["OutputDataConfig"], resource_config=request["ResourceConfig"],
        vpc_config=request.get("VpcConfig"), stopping_condition=request["StoppingCondition"],
        tags=[], enable_network_isolation=request.get("EnableNetworkIsolation", False),
        enable_inter_container_traffic_encryption=request.get(
            "EnableInterContainerTrafficEncryption", False),
        enable_managed_spot_training=request.get("EnableManagedSpotTraining", False),
        checkpoint_config=request.get("CheckpointConfig"), debug_hook_config=None,
        debug_rule_configurations=None, tensor_board_output_config=None, experiment_config=None)
    _register_training_job(backend, request, tuning_job_arn=tuning.arn)
    return {}


def _assume_role(payload: dict[str, Any]) -> dict[str, Any]:
    """The execution role's credentials for a job: SageMaker's own AssumeRole."""
    from moto.sts.models import sts_backends

    role = sts_backends[payload["account"]]["aws"].assume_role(
        region_name=payload["region"], role_session_name=payload["session_name"],
        role_arn=payload["role_arn"], policy=None, duration=service_roles.SESSION_SECONDS,
        external_id=None)
    return {"AccessKeyId": role.access_key_id, "SecretAccessKey": role.secret_access_key,
            "SessionToken": role.session_token}


ROUTES = {records.TRAINING_STATE: _record_training_state,
          records.TUNING_STATE: _record_tuning_state,
          records.TUNING_TRIAL: _create_trial,
          records.ASSUME_ROLE: _assume_role}


def routes(app: Any) -> records.RouteApp:
    """The internal routes in front of moto's app (inside the journal, so they are recorded)."""
    return records.RouteApp(app, ROUTES)


# Actions moto lacks or answers with filler, by the name of SageMakerResponse's method.
ACTIONS = {
    "stop_training_job": _stop_training_job,
    "describe_hyper_parameter_tuning_job": _describe_hyper_parameter_tuning_job,
    "stop_hyper_parameter_tuning_job": _stop_hyper_parameter_tuning_job,
    "list_training_jobs_for_hyper_parameter_tuning_job":
        _list_training_jobs_for_hyper_parameter_tuning_job,
}


def apply() -> None:
    """Make moto's SageMaker execute jobs (idempotent)."""
    if hasattr(SageMakerResponse, "stop_training_job"):
        return
    SageMakerResponse.create_training_job = _create_training_job(  # type: ignore[method-assign]
        SageMakerResponse.create_training_job)
    SageMakerResponse.create_hyper_parameter_tuning_job = (  # type: ignore[method-assign]
        _create_hyper_parameter_tuning_job(SageMakerResponse.create_hyper_parameter_tuning_job))
    for action, method in ACTIONS.items():
        setattr(SageMakerResponse, action, method)
