"""What a job is asked to do and what it returns, independent of the backend."""

from __future__ import annotations

from dataclasses import dataclass, field, make_dataclass
from typing import Any

from breedops.errors import ConfigurationError
from breedops.hyperparameters import DIGITS, SCHEMA, Range, check_budget, check_range, preset
from breedops.settings import DEFAULT_CODE_PREFIX, DEFAULT_PROJECT

CHANNELS = ("train", "valid", "test")
# The optional channel that brings a pretrained weights file (the entry point's --weights).
WEIGHTS_CHANNEL = "weights"
DEFAULT_INSTANCE_TYPE = "ml.g4dn.xlarge"
DEFAULT_MAX_RUN_S = 3600
DEFAULT_MAX_WAIT_S = 7200
# The container PyTorch version; it matches the pinned torch minor where AWS publishes one.
FRAMEWORK_VERSION = "2.5"
PY_VERSION = "py311"


class _HyperParameterValues:
    """What `HyperParameters` does besides holding the schema's fields."""

    def __post_init__(self) -> None:
        for hp in SCHEMA:
            try:
                hp.check(getattr(self, hp.name))
            except ValueError as e:
                raise ConfigurationError(str(e)) from e

    @classmethod
    def of_preset(cls, name: str, **overrides: Any) -> HyperParameters:
        """The preset's values, with `overrides`."""
        try:
            defaults = preset(name).default_values()
        except ValueError as e:
            raise ConfigurationError(str(e)) from e
        return cls(**{**defaults, **overrides})

    def as_strings(self) -> dict[str, str]:
        """SageMaker's wire form: the flag names without dashes, every value a string."""
        return {hp.wire_name: hp.format(getattr(self, hp.name)) for hp in SCHEMA}

    @classmethod
    def from_strings(cls, values: dict[str, str]) -> HyperParameters:
        """Parse the wire form back (unknown keys, such as SageMaker's own, are ignored)."""
        kwargs = {}
        for hp in SCHEMA:
            raw = values.get(hp.wire_name, values.get(hp.name))
            if raw is not None:
                try:
                    kwargs[hp.name] = hp.parse(raw)
                except ValueError as e:
                    raise ConfigurationError(str(e)) from e
        return cls(**kwargs)


# The training script's hyperparameters: one field per schema entry, the defaults the digits
# demo's (`HyperParameters.of_preset` for another dataset's).
HyperParameters = make_dataclass(
    "HyperParameters", [(hp.name, hp.kind, field(default=hp.default)) for hp in SCHEMA],
    bases=(_HyperParameterValues,), frozen=True)


@dataclass(frozen=True)
class TrainingRequest:
    """One training job: data, hyperparameters and compute."""

    bucket: str
    dataset: str
    role_arn: str
    hyperparameters: HyperParameters = field(default_factory=HyperParameters)
    instance_type: str = DEFAULT_INSTANCE_TYPE
    instance_count: int = 1
    use_spot: bool = True
    max_run_s: int = DEFAULT_MAX_RUN_S
    max_wait_s: int = DEFAULT_MAX_WAIT_S
    tags: dict[str, str] = field(default_factory=dict)
    # Job names start with `<name_prefix>-`: the operator's policy allows only those.
    name_prefix: str = DEFAULT_PROJECT
    # Where the SDK stages the job's source: the operator writes it, the execution role reads it.
    code_prefix: str = DEFAULT_CODE_PREFIX
    # An S3 prefix holding one pretrained weights file, given to the job as its weights channel.
    weights_uri: str | None = None

    def __post_init__(self) -> None:
        if self.instance_count < 1:
            raise ConfigurationError(f"instance count must be >= 1, got {self.instance_count}")
        if self.use_spot and self.max_wait_s <= self.max_run_s:
            raise ConfigurationError(
                f"managed spot needs max wait ({self.max_wait_s}s) > max run ({self.max_run_s}s)")

    def channel_uri(self, channel: str) -> str:
        return f"s3://{self.bucket}/data/{self.dataset}/{channel}/"

    @property
    def output_uri(self) -> str:
        """SageMaker appends `<job-name>/output/model.tar.gz` (contract 2)."""
        return f"s3://{self.bucket}/jobs"

    def checkpoint_uri(self, job_name: str) -> str:
        return f"s3://{self.bucket}/checkpoints/{job_name}/"

    def model_data_url(self, job_name: str) -> str:
        return f"{self.output_uri}/{job_name}/output/model.tar.gz"


@dataclass(frozen=True)
class TuningRequest:
    """A tuning job: a base training request, the ranges and the trial budget."""

    training: TrainingRequest
    # Hyperparameter name -> its search range (`hyperparameters.Preset.search_ranges`).
    ranges: dict[str, Range] = field(
        default_factory=lambda: preset(DIGITS).search_ranges())
    max_jobs: int = field(default_factory=lambda: preset(DIGITS).trials)
    max_parallel_jobs: int = field(default_factory=lambda: preset(DIGITS).parallel_trials)

    def __post_init__(self) -> None:
        for name, search in self.ranges.items():
            try:
                check_range(name, search)
            except ValueError as e:
                raise ConfigurationError(str(e)) from e
        try:
            check_budget(self.max_jobs, self.max_parallel_jobs)
        except ValueError as e:
            raise ConfigurationError(str(e)) from e


@dataclass(frozen=True)
class TrainingResult:
    """A finished training job."""

    job_name: str
    job_arn: str
    model_data_url: str
    metrics: dict[str, float]
    hyperparameters: HyperParameters


@dataclass(frozen=True)
class TuningResult:
    """A finished tuning job and its best trial."""

    tuning_job_name: str
    best: TrainingResult
    objective_value: float
