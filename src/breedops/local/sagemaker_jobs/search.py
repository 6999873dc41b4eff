"""The search strategy of SageMaker hyperparameter tuning jobs, for an emulator.

moto records `CreateHyperParameterTuningJob` but never proposes a training job, so a tuning job
run locally has nothing to run. `TuningSearch` takes the request's `HyperParameterTuningJobConfig`
exactly as the AWS API shapes it, rejects what AWS would reject (with ValidationException-style
messages), proposes the hyperparameters of each training job as SageMaker passes them (strings)
and learns from the final objective value of each one:

- `Bayesian`: Optuna's TPE sampler, with a constant liar because trials run in parallel, and the
  first `MaxParallelTrainingJobs` trials random (there is nothing to learn from before the first
  parallel batch reports);
- `Random`: uniform sampling in each range's scale;
- `Grid`: every combination of the categorical values, in a deterministic order;
- `Hyperband` is rejected: it needs early stopping inside training jobs, which the emulator lacks.

The caller (a tuning job's runner) asks for trials from several threads, starts a training job
for each proposal and tells the objective back; the object is thread-safe. It has no moto or
emulator dependency, so it could be proposed to moto as is.
"""

from __future__ import annotations

import itertools
import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import Trial, TrialState

optuna.logging.set_verbosity(optuna.logging.WARNING)

STRATEGIES = ("Bayesian", "Random", "Hyperband", "Grid")
DIRECTIONS = ("Minimize", "Maximize")
CONTINUOUS_SCALES = ("Auto", "Linear", "Logarithmic", "ReverseLogarithmic")
INTEGER_SCALES = ("Auto", "Linear", "Logarithmic")


class InvalidTuningConfig(ValueError):
    """A tuning configuration AWS would reject.

    The message is AWS's style of ValidationException text, so a server can return it as is.
    """


@dataclass(frozen=True)
class Proposal:
    """One training job of the tuning job: its trial number and the hyperparameters to tune."""

    number: int  # 1-based, in the order proposed
    hyperparameters: dict[str, str]  # tuned hyperparameters only, as SageMaker sends them


@dataclass(frozen=True)
class _Range:
    """A validated parameter range: how Optuna samples it and how a sample becomes a value."""

    name: str
    distribution: BaseDistribution
    kind: str  # "Continuous" | "Integer" | "Categorical"
    reverse: bool = False  # ReverseLogarithmic: the distribution samples 1 - value
    low: float = 0.0
    high: float = 0.0

    def format(self, sample: Any) -> str:
        if self.kind == "Integer":
            return str(int(sample))
        if self.kind == "Categorical":
            return str(sample)
        value = 1.0 - sample if self.reverse else float(sample)
        # 1 - (1 - x) can round just outside the range; SageMaker never proposes outside it.
        value = min(max(value, self.low), self.high)
        # Plain decimal ("0.00001", not "1e-05"): SageMaker passes decimals, and scripts that
        # parse with something stricter than float() should not meet exponents.
        return np.format_float_positional(value, trim="0")


class TuningSearch:
    """Proposes the training jobs of a hyperparameter tuning job and learns from their results.

    `config` is a `HyperParameterTuningJobConfig` in the AWS API shape; `seed` defaults to its
    `RandomSeed`. The same config and seed give the same proposals when told the same values
    in the same order. All methods may be called from several threads.
    """

    def __init__(self, config: dict, seed: int | None = None) -> None:
        if not isinstance(config, dict):
            raise InvalidTuningConfig("HyperParameterTuningJobConfig must be a structure.")
        self._strategy = _strategy(config)
        self._direction = _direction(config)
        max_jobs, max_parallel = _resource_limits(config, self._strategy)
        self._ranges = _ranges(config, self._strategy)
        self._seed = config.get("RandomSeed") if seed is None else seed
        if self._seed is not None and (isinstance(self._seed, bool)
                                       or not isinstance(self._seed, int)):
            raise InvalidTuningConfig(f"The value for the parameter RandomSeed ({self._seed}) "
                                      "must be an integer.")
        self._lock = threading.Lock()
        self._asked = 0
        self._trials: dict[int, Trial | None] = {}  # number -> Optuna trial (None for Grid)
        self._told: set[int] = set()

        if self._strategy == "Grid":
            self._grid = list(itertools.product(
                *(r.distribution.choices for r in self._ranges)  # type: ignore[attr-defined]
            ))
            self._max_trials = min(len(self._grid), max_jobs or len(self._grid))
            self._study: optuna.Study | None = None
            return
        assert max_jobs is not None  # required for the other strategies, checked above
        self._max_trials = max_jobs
        sampler: optuna.samplers.BaseSampler
        if self._strategy == "Bayesian":
            # Parallel trials are pending when the next one is asked for; the constant liar
            # keeps TPE from proposing the same point to all of them. Pending trials count
            # towards the startup trials, so the whole first parallel batch is random.
            sampler = optuna.samplers.TPESampler(
                seed=self._seed, constant_liar=True, n_startup_trials=max_parallel
            )
        else:
            sampler = optuna.samplers.RandomSampler(seed=self._seed)
        self._study = optuna.create_study(sampler=sampler, direction=self._direction.lower())

    @property
    def max_trials(self) -> int:
        """How many training jobs the tuning job runs at most."""
        return self._max_trials

    @property
    def direction(self) -> str:
        """The objective's `Type`: "Minimize" or "Maximize"."""
        return self._direction

    def ask(self) -> Proposal | None:
        """The next training job's hyperparameters, or None once `max_trials` were proposed."""
        with self._lock:
            if self._asked >= self._max_trials:
                return None
            number = self._asked + 1
            if self._study is None:
                choice = self._grid[number - 1]
                pairs = zip(self._ranges, choice, strict=True)
                hyperparameters = {r.name: r.format(v) for r, v in pairs}
                self._trials[number] = None
            else:
                trial = self._study.ask({r.name: r.distribution for r in self._ranges})
                hyperparameters = {r.name: r.format(trial.params[r.name]) for r in self._ranges}
                self._trials[number] = trial
            self._asked = number
            return Proposal(number=number, hyperparameters=hyperparameters)

    def tell(self, number: int, value: float | None) -> None:
        """Report trial `number`'s final objective value.

        None (or a value that is not finite) means the training job failed, was stopped or
        logged no objective metric; the search goes on without learning from it. Raises
        ValueError for a number that was not proposed or was already told.
        """
        with self._lock:
            if number not in self._trials:
                raise ValueError(f"Trial {number} was not proposed.")
            if number in self._told:
                raise ValueError(f"Trial {number} was already told.")
            self._told.add(number)
            trial = self._trials[number]
            if trial is None or self._study is None:
                return  # Grid search has nothing to learn
            if value is None or not math.isfinite(value):
                self._study.tell(trial, state=TrialState.FAIL)
            else:
                self._study.tell(trial, float(value))

    def is_better(self, a: float, b: float) -> bool:
        """Whether objective value `a` beats `b` under the objective's direction."""
        return a < b if self._direction == "Minimize" else a > b


def _strategy(config: dict) -> str:
    strategy = config.get("Strategy")
    if strategy is None:
        raise InvalidTuningConfig("Strategy is required in HyperParameterTuningJobConfig.")
    if strategy not in STRATEGIES:
        raise InvalidTuningConfig(
            f"Value '{strategy}' at 'hyperParameterTuningJobConfig.strategy' failed to satisfy "
            f"constraint: Member must satisfy enum value set: [{', '.join(STRATEGIES)}]"
        )
    if strategy == "Hyperband":
        raise InvalidTuningConfig(
            "The Hyperband strategy is not supported by the emulator; use Bayesian, Random or Grid."
        )
    return strategy


def _direction(config: dict) -> str:
    objective = config.get("HyperParameterTuningJobObjective")
    if not isinstance(objective, dict):
        raise InvalidTuningConfig(
            "HyperParameterTuningJobObjective is required for the "
            f"{config.get('Strategy')} strategy."
        )
    if not objective.get("MetricName"):
        raise InvalidTuningConfig("MetricName is required in HyperParameterTuningJobObjective.")
    kind = objective.get("Type")
    if kind not in DIRECTIONS:
        raise InvalidTuningConfig(
            f"Value '{kind}' at 'hyperParameterTuningJobConfig.hyperParameterTuningJobObjective"
            f".type' failed to satisfy constraint: Member must satisfy enum value set: "
            f"[{', '.join(DIRECTIONS)}]"
        )
    return kind


def _resource_limits(config: dict, strategy: str) -> tuple[int | None, int]:
    limits = config.get("ResourceLimits")
    if not isinstance(limits, dict):
        raise InvalidTuningConfig("ResourceLimits is required in HyperParameterTuningJobConfig.")
    max_jobs = limits.get("MaxNumberOfTrainingJobs")
    max_parallel = limits.get("MaxParallelTrainingJobs")
    if max_jobs is None and strategy != "Grid":
        raise InvalidTuningConfig(
            f"MaxNumberOfTrainingJobs is required in ResourceLimits for the {strategy} strategy."
        )
    if max_parallel is None:
        raise InvalidTuningConfig("MaxParallelTrainingJobs is required in ResourceLimits.")
    for name, value in (("MaxNumberOfTrainingJobs", max_jobs),
                        ("MaxParallelTrainingJobs", max_parallel)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidTuningConfig(
                f"Value '{value}' at 'hyperParameterTuningJobConfig.resourceLimits."
                f"{name[0].lower()}{name[1:]}' failed to satisfy constraint: "
                "Member must have value greater than or equal to 1"
            )
    if max_jobs is not None and max_parallel > max_jobs:
        raise InvalidTuningConfig(
            f"The value for the parameter MaxParallelTrainingJobs ({max_parallel}) must be less "
            f"than or equal to MaxNumberOfTrainingJobs ({max_jobs})."
        )
    return max_jobs, max_parallel


def _ranges(config: dict, strategy: str) -> list[_Range]:
    """The ranges in the order given: continuous, integer, categorical (AWS's member order)."""
    ranges = config.get("ParameterRanges") or {}
    if not isinstance(ranges, dict):
        raise InvalidTuningConfig("ParameterRanges must be a structure.")
    parsed: list[_Range] = []
    for kind in ("Continuous", "Integer", "Categorical"):
        for item in ranges.get(f"{kind}ParameterRanges") or []:
            name = item.get("Name") if isinstance(item, dict) else None
            if not name or not isinstance(name, str):
                raise InvalidTuningConfig(f"Name is required in every {kind}ParameterRanges item.")
            if any(r.name == name for r in parsed):
                raise InvalidTuningConfig(
                    f"The hyperparameter {name} is specified in more than one parameter range; "
                    "hyperparameter names must be unique across ParameterRanges."
                )
            if strategy == "Grid" and kind != "Categorical":
                raise InvalidTuningConfig(
                    f"The Grid strategy supports only CategoricalParameterRanges; hyperparameter "
                    f"{name} is in {kind}ParameterRanges."
                )
            if kind == "Categorical":
                parsed.append(_categorical(name, item))
            else:
                parsed.append(_numeric(name, item, kind))
    if not parsed:
        raise InvalidTuningConfig(
            "ParameterRanges must contain at least one Continuous, Integer or Categorical range."
        )
    return parsed


def _categorical(name: str, item: dict) -> _Range:
    values = item.get("Values")
    if not isinstance(values, list) or not values:
        raise InvalidTuningConfig(
            f"The parameter Values must contain at least one value for hyperparameter {name}."
        )
    if not all(isinstance(v, str) for v in values):
        raise InvalidTuningConfig(
            f"The parameter Values must contain only strings for hyperparameter {name}."
        )
    return _Range(name, CategoricalDistribution(values), "Categorical")


def _numeric(name: str, item: dict, kind: str) -> _Range:
    low = _number(name, item, "MinValue", kind)
    high = _number(name, item, "MaxValue", kind)
    if low > high:
        raise InvalidTuningConfig(
            "The value for the parameter MinValue must be less than or equal to MaxValue "
            f"for hyperparameter {name}."
        )
    scale = item.get("ScalingType", "Auto")
    allowed = CONTINUOUS_SCALES if kind == "Continuous" else INTEGER_SCALES
    if scale not in allowed:
        raise InvalidTuningConfig(
            f"The ScalingType {scale} is not valid for hyperparameter {name}: a {kind} range "
            f"must use one of [{', '.join(allowed)}]."
        )
    if scale == "Logarithmic" and low <= 0:
        raise InvalidTuningConfig(
            "The value for the parameter MinValue must be greater than 0 for hyperparameter "
            f"{name} when ScalingType is Logarithmic."
        )
    if scale == "ReverseLogarithmic" and not (0 <= low and high < 1):
        raise InvalidTuningConfig(
            "The values for the parameters MinValue and MaxValue must satisfy "
            f"0 <= MinValue and MaxValue < 1 for hyperparameter {name} when ScalingType is "
            "ReverseLogarithmic."
        )
    # AWS lets Auto pick the scale from the range; the emulator always takes Auto as Linear.
    log = scale in ("Logarithmic", "ReverseLogarithmic")
    if kind == "Integer":
        return _Range(name, IntDistribution(int(low), int(high), log=log), kind)
    if scale == "ReverseLogarithmic":
        # Values near 1 matter most (momentum, decay): sample 1 - value on a log scale.
        distribution = FloatDistribution(1.0 - high, 1.0 - low, log=True)
        return _Range(name, distribution, kind, reverse=True, low=low, high=high)
    return _Range(name, FloatDistribution(low, high, log=log), kind, low=low, high=high)


def _number(name: str, item: dict, field: str, kind: str) -> float:
    """A range bound: AWS sends numeric strings; integers must be integral."""
    raw = item.get(field)
    try:
        if isinstance(raw, bool) or raw is None:
            raise ValueError
        number = int(raw) if kind == "Integer" and isinstance(raw, str) else float(raw)
    except (TypeError, ValueError):
        number = math.nan
    integral = kind != "Integer" or float(number).is_integer()
    if not math.isfinite(number) or not integral:
        expected = "an integer" if kind == "Integer" else "a number"
        raise InvalidTuningConfig(
            f"The value for the parameter {field} must be {expected} for hyperparameter {name}."
        )
    return number
