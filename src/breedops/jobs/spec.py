"""What a job is asked to do and what it returns, independent of the backend."""

from __future__ import annotations

from dataclasses import dataclass, field

from breedops.errors import ConfigurationError
from breedops.settings import DEFAULT_CODE_PREFIX, DEFAULT_PROJECT
from breedops.training.train import DEFAULTS

CHANNELS = ("train", "valid", "test")
DEFAULT_INSTANCE_TYPE = "ml.g4dn.xlarge"
DEFAULT_MAX_RUN_S = 3600
DEFAULT_MAX_WAIT_S = 7200
# The container PyTorch version; it matches the pinned torch minor where AWS publishes one.
FRAMEWORK_VERSION = "2.5"
PY_VERSION = "py311"
# What every tuning trial is given besides its hyperparameters: a trial's model is compared,
# not served, so it skips the ONNX export, its gate and the vendored runtime (the final
# training job packages them).
TRIAL_STATIC_HYPERPARAMETERS = {"onnx": "false"}


@dataclass(frozen=True)
class HyperParameters:
    """The training script's hyperparameters; the defaults are the digits demo's."""

    lr: float = DEFAULTS["lr"]
    batch_size: int = DEFAULTS["batch_size"]
    epochs: int = DEFAULTS["epochs"]
    arch: str = DEFAULTS["arch"]
    pretrained: bool = DEFAULTS["pretrained"]
    image_size: int = DEFAULTS["image_size"]
    hflip: bool = DEFAULTS["hflip"]
    seed: int = DEFAULTS["seed"]

    def __post_init__(self) -> None:
        from breedops.modeling.architectures import ARCHITECTURES  # torch: only when used

        if self.arch not in ARCHITECTURES:
            raise ConfigurationError(
                f"unknown architecture {self.arch!r}; choose one of {', '.join(ARCHITECTURES)}")
        for name in ("lr", "batch_size", "epochs", "image_size"):
            if not getattr(self, name) > 0:
                raise ConfigurationError(f"{name} must be positive, got {getattr(self, name)}")

    def as_strings(self) -> dict[str, str]:
        """SageMaker's wire form: the flag names without dashes, every value a string."""
        return {name.replace("_", "-"): _format(value) for name, value in self.__dict__.items()}

    @classmethod
    def from_strings(cls, values: dict[str, str]) -> HyperParameters:
        """Parse the wire form back (unknown keys, such as SageMaker's own, are ignored)."""
        kwargs = {}
        for name, default in cls().__dict__.items():
            raw = values.get(name.replace("_", "-"), values.get(name))
            if raw is None:
                continue
            raw = str(raw).strip('"')
            kwargs[name] = (raw.lower() == "true") if isinstance(default, bool) else type(
                default)(float(raw) if isinstance(default, int) else raw)
        return cls(**kwargs)


def _format(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


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
class ParameterRanges:
    """The tuner's search space: learning rate (log scale), batch size and epochs."""

    lr: tuple[float, float] = (2e-3, 8e-3)
    batch_size: tuple[int, int] = (32, 96)
    epochs: tuple[int, int] = (4, 6)

    def __post_init__(self) -> None:
        for name, (low, high) in self.__dict__.items():
            if not 0 < low <= high:
                raise ConfigurationError(f"range for {name} must satisfy 0 < low <= high")


@dataclass(frozen=True)
class TuningRequest:
    """A tuning job: a base training request, the ranges and the trial budget."""

    training: TrainingRequest
    ranges: ParameterRanges = field(default_factory=ParameterRanges)
    max_jobs: int = 4
    max_parallel_jobs: int = 2

    def __post_init__(self) -> None:
        if not 1 <= self.max_parallel_jobs <= self.max_jobs:
            raise ConfigurationError("need 1 <= max parallel jobs <= max jobs")


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
