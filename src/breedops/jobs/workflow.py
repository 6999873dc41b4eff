"""tune -> train -> artifacts file: what `breedops tune` and `breedops train` do."""

from __future__ import annotations

import logging
from typing import Any, Protocol

from breedops.errors import ConfigurationError
from breedops.jobs.artifacts import write_artifact
from breedops.jobs.spec import (
    HyperParameters,
    TrainingRequest,
    TrainingResult,
    TuningRequest,
    TuningResult,
)
from breedops.jobs.submitted import SubmittedJob
from breedops.settings import ENVIRONMENTS

LOG = logging.getLogger(__name__)


class JobBackend(Protocol):
    """What the pipeline needs of a job backend: run jobs to the end, find the best trial."""

    sagemaker: Any
    s3: Any

    def train(self, request: TrainingRequest,
              submitted: SubmittedJob | None = None) -> TrainingResult: ...

    def tune(self, request: TuningRequest,
             submitted: SubmittedJob | None = None) -> TuningResult: ...

    def best_training_job(self, tuning_job_name: str) -> str: ...


def get_backend(env: str) -> JobBackend:
    """SageMaker through its SDK, for both environments: `local` differs only in where the
    standard `AWS_ENDPOINT_URL*` variables point (the emulator, which runs the jobs)."""
    if env not in ENVIRONMENTS:
        raise ConfigurationError(f"unknown env {env!r}: use local or aws")
    from breedops.jobs.sagemaker_backend import SageMakerBackend

    return SageMakerBackend()


def best_hyperparameters_of(backend: JobBackend, tuning_job_name: str) -> HyperParameters:
    """The full hyperparameters of a tuning job's best trial, from DescribeTrainingJob."""
    name = backend.best_training_job(tuning_job_name)
    described = backend.sagemaker.describe_training_job(TrainingJobName=name)
    return HyperParameters.from_strings(described["HyperParameters"])


def record(env: str, backend: JobBackend, result: TrainingResult,
           tuning_job_name: str | None = None) -> None:
    """Merge the job's artifact into the env's tfvars file (after checking S3)."""
    write_artifact(
        env, backend.s3, model_data_url=result.model_data_url,
        training_job_name=result.job_name, training_job_arn=result.job_arn,
        tuning_job_name=tuning_job_name,
        best_hyperparameters=(result.hyperparameters.as_strings() if tuning_job_name
                              else None),
        test_metrics={k: v for k, v in result.metrics.items() if k.startswith("test_")} or None,
    )


def tune(env: str, backend: JobBackend, request: TuningRequest) -> TuningResult:
    result = backend.tune(request)
    record(env, backend, result.best, tuning_job_name=result.tuning_job_name)
    return result


def train(env: str, backend: JobBackend, request: TrainingRequest,
          tuning_job_name: str | None = None,
          submitted: SubmittedJob | None = None) -> TrainingResult:
    result = backend.train(request, submitted)
    record(env, backend, result, tuning_job_name=tuning_job_name)
    return result
