"""The search strategy of the emulator's SageMaker hyperparameter tuning jobs (pure unit tests)."""

from __future__ import annotations

import copy
import math
import sys
import threading

import pytest

from breedops.local.sagemaker_jobs.search import InvalidTuningConfig, Proposal, TuningSearch


def tuning_config(strategy: str = "Bayesian", jobs: int | None = 4, parallel: int = 2,
                  objective: str = "Minimize", **ranges: list[dict]) -> dict:
    """A HyperParameterTuningJobConfig in the AWS API shape; the example ranges unless given."""
    limits = {"MaxParallelTrainingJobs": parallel}
    if jobs is not None:
        limits["MaxNumberOfTrainingJobs"] = jobs
    return {
        "Strategy": strategy,
        "HyperParameterTuningJobObjective": {"Type": objective, "MetricName": "valid_loss"},
        "ResourceLimits": limits,
        "ParameterRanges": ranges or {
            "ContinuousParameterRanges": [{"Name": "lr", "MinValue": "0.002", "MaxValue": "0.008",
                                           "ScalingType": "Logarithmic"}],
            "IntegerParameterRanges": [{"Name": "batch-size", "MinValue": "32",
                                        "MaxValue": "96", "ScalingType": "Linear"}],
            "CategoricalParameterRanges": [{"Name": "arch", "Values": ["resnet18", "resnet34"]}],
        },
        "RandomSeed": 7,
    }


def continuous(name: str, low: str, high: str, scale: str = "Linear") -> dict:
    return {"Name": name, "MinValue": low, "MaxValue": high, "ScalingType": scale}


def ask_all(search: TuningSearch, objective=None) -> list[Proposal]:
    """Ask until the search is done, telling each trial `objective(hyperparameters)` if given."""
    proposals = []
    while (proposal := search.ask()) is not None:
        proposals.append(proposal)
        if objective is not None:
            search.tell(proposal.number, objective(proposal.hyperparameters))
    return proposals


def test_ask_example_config_proposes_values_in_their_ranges():
    search = TuningSearch(tuning_config(jobs=30, parallel=3))

    proposals = ask_all(search, lambda h: float(h["lr"]) * int(h["batch-size"]))

    assert [p.number for p in proposals] == list(range(1, 31))
    for proposal in proposals:
        assert set(proposal.hyperparameters) == {"lr", "batch-size", "arch"}
        assert all(isinstance(v, str) for v in proposal.hyperparameters.values())
        assert 0.002 <= float(proposal.hyperparameters["lr"]) <= 0.008
        assert 32 <= int(proposal.hyperparameters["batch-size"]) <= 96
        assert proposal.hyperparameters["arch"] in {"resnet18", "resnet34"}


@pytest.mark.parametrize("strategy", ["Bayesian", "Random"])
def test_ask_integer_range_gives_integral_strings(strategy):
    search = TuningSearch(tuning_config(
        strategy, jobs=40, parallel=4,
        IntegerParameterRanges=[{"Name": "epochs", "MinValue": "1", "MaxValue": "1000",
                                 "ScalingType": "Logarithmic"},
                                {"Name": "layers", "MinValue": "2", "MaxValue": "8"}],
    ))

    proposals = ask_all(search, lambda h: float(h["epochs"]) + float(h["layers"]))

    for proposal in proposals:
        for name, (low, high) in {"epochs": (1, 1000), "layers": (2, 8)}.items():
            value = proposal.hyperparameters[name]
            assert value == str(int(value)), value
            assert low <= int(value) <= high


def test_ask_logarithmic_range_spreads_over_decades():
    search = TuningSearch(tuning_config(
        "Random", jobs=400, parallel=4,
        ContinuousParameterRanges=[continuous("lr", "0.00001", "0.1", "Logarithmic")],
    ))

    values = [float(p.hyperparameters["lr"]) for p in ask_all(search)]

    assert all(1e-5 <= v <= 0.1 for v in values)
    decades = [sum(1 for v in values if 10 ** e <= v < 10 ** (e + 1)) for e in range(-5, -1)]
    # A linear scale would put ~90% of the values in the top decade; a log scale ~25% in each.
    assert min(decades) >= 0.15 * len(values), decades


def test_ask_reverse_logarithmic_range_crowds_towards_one():
    search = TuningSearch(tuning_config(
        "Random", jobs=400, parallel=4,
        ContinuousParameterRanges=[continuous("momentum", "0.9", "0.9999", "ReverseLogarithmic")],
    ))

    values = [float(p.hyperparameters["momentum"]) for p in ask_all(search)]

    assert all(0.9 <= v <= 0.9999 for v in values)
    # 1 - value is log-uniform over [1e-4, 0.1]: a quarter of the values lie above 0.999.
    above = sum(1 for v in values if v > 0.999)
    assert 0.15 * len(values) <= above <= 0.4 * len(values), above


def test_ask_continuous_values_are_plain_decimals():
    search = TuningSearch(tuning_config(
        "Random", jobs=50, parallel=1,
        ContinuousParameterRanges=[continuous("wd", "0.0000001", "0.00001", "Logarithmic")],
    ))

    for proposal in ask_all(search):
        text = proposal.hyperparameters["wd"]
        assert "e" not in text.lower(), text
        assert 1e-7 <= float(text) <= 1e-5


def test_ask_same_seed_gives_same_proposals():
    def run(seed: int | None) -> list[dict[str, str]]:
        search = TuningSearch(tuning_config(jobs=12, parallel=3), seed=seed)
        return [p.hyperparameters for p in ask_all(search, lambda h: float(h["lr"]))]

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_ask_seed_defaults_to_random_seed_of_config():
    config = tuning_config("Random", jobs=5)

    from_config = [p.hyperparameters for p in ask_all(TuningSearch(config))]
    explicit = [p.hyperparameters for p in ask_all(TuningSearch(config, seed=7))]

    assert from_config == explicit


def test_ask_bayesian_concentrates_near_the_minimum_after_startup():
    parallel = 4
    ranges = {"ContinuousParameterRanges": [continuous("x", "-10", "10"),
                                            continuous("y", "-10", "10")]}

    def distance(hyperparameters: dict[str, str]) -> float:
        return math.hypot(float(hyperparameters["x"]) - 3, float(hyperparameters["y"]) + 2)

    startup, later = [], []
    for seed in range(5):
        search = TuningSearch(tuning_config(jobs=40, parallel=parallel, **ranges), seed=seed)
        proposals = ask_all(search, lambda h: distance(h) ** 2)
        startup += [distance(p.hyperparameters) for p in proposals[:parallel]]
        later += [distance(p.hyperparameters) for p in proposals[-15:]]

    mean_startup, mean_later = sum(startup) / len(startup), sum(later) / len(later)
    # TPE keeps exploring, so the margin is modest; random sampling would keep the ratio near 1.
    assert mean_later < 0.75 * mean_startup, (mean_later, mean_startup)


def test_ask_bayesian_with_maximize_climbs_towards_the_maximum():
    ranges = {"ContinuousParameterRanges": [continuous("x", "0", "100")]}
    search = TuningSearch(tuning_config(jobs=30, parallel=2, objective="Maximize", **ranges))

    proposals = ask_all(search, lambda h: -abs(float(h["x"]) - 90))

    later = [float(p.hyperparameters["x"]) for p in proposals[-10:]]
    # Uniform proposals lie 41 from 90 on average; minimizing instead would head for 0.
    assert sum(abs(x - 90) for x in later) / len(later) < 20, later


def test_ask_bayesian_parallel_pending_trials_get_distinct_proposals():
    search = TuningSearch(tuning_config(
        jobs=10, parallel=2, ContinuousParameterRanges=[continuous("x", "0", "1")],
    ))
    for proposal in [search.ask(), search.ask()]:
        search.tell(proposal.number, float(proposal.hyperparameters["x"]))

    pending = [search.ask() for _ in range(4)]  # asked before any of them reports

    assert len({p.hyperparameters["x"] for p in pending}) == 4


@pytest.mark.parametrize(("direction", "better", "worse"),
                         [("Minimize", 0.1, 0.2), ("Maximize", 0.9, 0.8)])
def test_is_better_follows_the_direction(direction, better, worse):
    search = TuningSearch(tuning_config(objective=direction))

    assert search.direction == direction
    assert search.is_better(better, worse)
    assert not search.is_better(worse, better)
    assert not search.is_better(better, better)


def test_ask_grid_enumerates_every_combination_once_then_none():
    search = TuningSearch(tuning_config(
        "Grid", jobs=None, parallel=2,
        CategoricalParameterRanges=[{"Name": "arch", "Values": ["resnet18", "resnet34"]},
                                    {"Name": "optimizer", "Values": ["sgd", "adam", "adamw"]}],
    ))

    proposals = ask_all(search, lambda h: 1.0)

    assert search.max_trials == 6
    combos = [(p.hyperparameters["arch"], p.hyperparameters["optimizer"]) for p in proposals]
    assert combos == [(a, o) for a in ["resnet18", "resnet34"] for o in ["sgd", "adam", "adamw"]]
    assert search.ask() is None


def test_max_trials_grid_is_capped_by_max_number_of_training_jobs():
    search = TuningSearch(tuning_config(
        "Grid", jobs=3, parallel=1,
        CategoricalParameterRanges=[{"Name": "arch", "Values": ["a", "b", "c", "d", "e"]}],
    ))

    assert search.max_trials == 3
    assert [p.hyperparameters["arch"] for p in ask_all(search)] == ["a", "b", "c"]


def test_init_grid_with_continuous_range_is_rejected():
    with pytest.raises(InvalidTuningConfig, match="Grid.*hyperparameter lr"):
        TuningSearch(tuning_config("Grid", jobs=None))


@pytest.mark.parametrize("strategy", ["Random", "Bayesian"])
def test_ask_stops_at_max_number_of_training_jobs(strategy):
    search = TuningSearch(tuning_config(strategy, jobs=7, parallel=3))

    proposals = ask_all(search)  # nobody reports: all seven stay pending

    assert search.max_trials == 7
    assert [p.number for p in proposals] == list(range(1, 8))
    assert search.ask() is None
    assert search.ask() is None


def test_tell_failed_trials_do_not_break_the_search():
    search = TuningSearch(tuning_config(jobs=20, parallel=2))

    proposals = ask_all(search, lambda h: None if h["arch"] == "resnet34" else float(h["lr"]))

    assert len(proposals) == 20
    assert all(0.002 <= float(p.hyperparameters["lr"]) <= 0.008 for p in proposals)


def test_tell_all_trials_failed_keeps_proposing():
    search = TuningSearch(tuning_config(jobs=10, parallel=2))

    proposals = ask_all(search, lambda h: None)
    nan_search = TuningSearch(tuning_config(jobs=10, parallel=2))
    nan_proposals = ask_all(nan_search, lambda h: math.nan)

    assert len(proposals) == len(nan_proposals) == 10


def test_tell_unknown_or_repeated_trial_raises():
    search = TuningSearch(tuning_config())
    proposal = search.ask()
    search.tell(proposal.number, 0.5)

    with pytest.raises(ValueError, match="already told"):
        search.tell(proposal.number, 0.4)
    with pytest.raises(ValueError, match="not proposed"):
        search.tell(99, 0.4)


def test_ask_from_four_threads_gives_unique_numbers():
    search = TuningSearch(tuning_config(jobs=60, parallel=4))
    numbers: list[int] = []
    errors: list[BaseException] = []
    record = threading.Lock()

    def worker() -> None:
        try:
            while (proposal := search.ask()) is not None:
                with record:
                    numbers.append(proposal.number)
                search.tell(proposal.number, float(proposal.hyperparameters["lr"]))
        except Exception as error:  # noqa: BLE001 -- otherwise a thread only prints it
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    # Switch threads as often as possible, so that an unguarded ask would interleave.
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        sys.setswitchinterval(previous)

    assert errors == []
    assert sorted(numbers) == list(range(1, 61))


def replace(config: dict, path: tuple, value) -> dict:
    """A copy of `config` with the item at `path` set to `value` (or deleted when it is ...)."""
    config = copy.deepcopy(config)
    target = config
    for key in path[:-1]:
        target = target[key]
    if value is ...:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return config


CONTINUOUS = ("ParameterRanges", "ContinuousParameterRanges", 0)
INTEGER = ("ParameterRanges", "IntegerParameterRanges", 0)
CATEGORICAL = ("ParameterRanges", "CategoricalParameterRanges", 0)

INVALID = {
    "min above max": (CONTINUOUS + ("MinValue",), "0.01", "MinValue.*MaxValue.*lr"),
    "integer min above max": (INTEGER + ("MinValue",), "100", "MinValue.*MaxValue.*batch-size"),
    "non-numeric min": (CONTINUOUS + ("MinValue",), "fast", "MinValue.*number.*lr"),
    "infinite max": (CONTINUOUS + ("MaxValue",), "inf", "MaxValue.*number.*lr"),
    "fractional integer": (INTEGER + ("MaxValue",), "96.5", "MaxValue.*integer.*batch-size"),
    "missing max": (INTEGER + ("MaxValue",), ..., "MaxValue.*batch-size"),
    "log with zero min": (CONTINUOUS + ("MinValue",), "0", "greater than 0.*lr.*Logarithmic"),
    "integer log with zero min": (
        INTEGER, {"Name": "epochs", "MinValue": "0", "MaxValue": "9",
                  "ScalingType": "Logarithmic"}, "greater than 0.*epochs"),
    "reverse log reaching one": (
        CONTINUOUS, continuous("momentum", "0.9", "1", "ReverseLogarithmic"),
        "MaxValue < 1.*momentum"),
    "reverse log below zero": (
        CONTINUOUS, continuous("momentum", "-0.1", "0.5", "ReverseLogarithmic"),
        "0 <= MinValue.*momentum"),
    "reverse log on integers": (INTEGER + ("ScalingType",), "ReverseLogarithmic",
                                "ScalingType ReverseLogarithmic.*batch-size"),
    "unknown scaling type": (CONTINUOUS + ("ScalingType",), "Exponential",
                             "ScalingType Exponential.*lr"),
    "duplicate name": (CATEGORICAL + ("Name",), "lr", "hyperparameter lr.*more than one"),
    "empty categorical values": (CATEGORICAL + ("Values",), [], "Values.*arch"),
    "non-string categorical value": (CATEGORICAL + ("Values",), ["a", 1], "Values.*arch"),
    "no ranges": (("ParameterRanges",), {}, "ParameterRanges"),
    "parallel above total": (("ResourceLimits", "MaxParallelTrainingJobs"), 5,
                             "MaxParallelTrainingJobs.*MaxNumberOfTrainingJobs"),
    "zero total": (("ResourceLimits", "MaxNumberOfTrainingJobs"), 0, "maxNumberOfTrainingJobs"),
    "zero parallel": (("ResourceLimits", "MaxParallelTrainingJobs"), 0,
                      "maxParallelTrainingJobs"),
    "missing total": (("ResourceLimits", "MaxNumberOfTrainingJobs"), ...,
                      "MaxNumberOfTrainingJobs.*Bayesian"),
    "missing parallel": (("ResourceLimits", "MaxParallelTrainingJobs"), ...,
                         "MaxParallelTrainingJobs"),
    "unknown objective type": (("HyperParameterTuningJobObjective", "Type"), "Minimise",
                               "Minimise.*Objective.type"),
    "missing metric name": (("HyperParameterTuningJobObjective", "MetricName"), ...,
                            "MetricName"),
    "missing objective": (("HyperParameterTuningJobObjective",), ...,
                          "HyperParameterTuningJobObjective"),
    "unknown strategy": (("Strategy",), "Annealing", "Annealing.*strategy"),
    "hyperband": (("Strategy",), "Hyperband", "Hyperband.*not supported by the emulator"),
    "fractional seed": (("RandomSeed",), 1.5, "RandomSeed"),
}


@pytest.mark.parametrize(("path", "value", "message"), INVALID.values(), ids=INVALID.keys())
def test_init_invalid_config_raises_invalid_tuning_config(path, value, message):
    with pytest.raises(InvalidTuningConfig, match=message):
        TuningSearch(replace(tuning_config(), path, value))


def test_init_invalid_tuning_config_is_a_value_error():
    assert issubclass(InvalidTuningConfig, ValueError)


def test_init_valid_edge_ranges_are_accepted():
    search = TuningSearch(tuning_config(
        "Random", jobs=5, parallel=5,
        ContinuousParameterRanges=[continuous("fixed", "0.5", "0.5"),
                                   continuous("momentum", "0", "0.99", "ReverseLogarithmic"),
                                   continuous("auto", "-1", "1", "Auto")],
        IntegerParameterRanges=[{"Name": "one", "MinValue": "1", "MaxValue": "1"}],
    ))

    for proposal in ask_all(search):
        assert proposal.hyperparameters["fixed"] == "0.5"
        assert proposal.hyperparameters["one"] == "1"
        assert 0 <= float(proposal.hyperparameters["momentum"]) <= 0.99
        assert -1 <= float(proposal.hyperparameters["auto"]) <= 1
