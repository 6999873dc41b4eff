"""The hyperparameter schema: every flag, wire name and tuning range derives from it."""

from __future__ import annotations

import argparse

import pytest

from breedops import hyperparameters
from breedops.errors import ConfigurationError
from breedops.hyperparameters import (
    DIGITS,
    DOG_IMAGES,
    SCHEMA,
    Choice,
    Interval,
    preset,
    preset_for_dataset,
)
from breedops.jobs import cli
from breedops.jobs.sagemaker_backend import sdk_ranges
from breedops.jobs.spec import HyperParameters, TrainingRequest, TuningRequest
from breedops.pipeline.apply import PipelineOptions
from breedops.training.train import HYPERPARAMETERS, build_parser

# Before the schema: the entry point's defaults and the tuner's ranges (the digits demo).
DIGITS_DEFAULTS = {"lr": 3e-3, "batch_size": 64, "epochs": 5, "arch": "resnet18",
                   "pretrained": False, "image_size": 24, "hflip": False, "weight_decay": 1e-4,
                   "seed": 0, "checkpoint_interval": 60.0}
DIGITS_RANGES = {"lr": Interval(1.5e-3, 5e-3, "Logarithmic"), "batch_size": Interval(48, 96),
                 "epochs": Interval(5, 7)}


def _jobs_parser(command: str) -> argparse.ArgumentParser:
    """The parser of `breedops <command>`."""
    subparsers = argparse.ArgumentParser().add_subparsers()
    cli.register(subparsers)
    return subparsers.choices[command]


def _job_args(command: str, *flags: str) -> argparse.Namespace:
    return _jobs_parser(command).parse_args(["--bucket", "b", "--role-arn", "r", *flags])


def test_digits_preset_keeps_the_demo_defaults_and_ranges() -> None:
    assert preset(DIGITS).default_values() == DIGITS_DEFAULTS
    assert preset(DIGITS).search_ranges() == DIGITS_RANGES
    assert HyperParameters() == HyperParameters(**DIGITS_DEFAULTS)
    assert TuningRequest(training=TrainingRequest("b", "d", "r")).ranges == DIGITS_RANGES


def test_dog_images_preset_fine_tunes_a_pretrained_resnet50_at_224_px() -> None:
    hps = HyperParameters.of_preset(DOG_IMAGES)
    assert (hps.arch, hps.pretrained, hps.image_size) == ("resnet50", True, 224)
    ranges = preset(DOG_IMAGES).search_ranges()
    assert ranges["lr"] == Interval(1e-5, 1e-3, "Logarithmic")
    assert ranges["batch_size"].high <= 48


def test_each_preset_sizes_its_tuning_job_and_a_smaller_one_asked_for_runs_at_once() -> None:
    # digits: one round on a 2-core machine; dog-images: 4 trials, 2 at a time on AWS.
    assert PipelineOptions().budget == (2, 2)
    assert PipelineOptions(dataset="dog-images").budget == (4, 2)
    assert PipelineOptions(dataset="dog-images", trials=3).budget == (3, 2)
    assert PipelineOptions(trials=1).budget == (1, 1)
    assert PipelineOptions(trials=6, parallel_trials=3).budget == (6, 3)
    tune = cli._tuning_request(_job_args("tune"))
    assert (tune.max_jobs, tune.max_parallel_jobs) == (2, 2)
    assert tune.ranges == DIGITS_RANGES
    tune = cli._tuning_request(_job_args("tune", "--dataset", "dog-images", "--max-jobs", "5"))
    assert (tune.max_jobs, tune.max_parallel_jobs) == (5, 2)
    assert tune.ranges == preset(DOG_IMAGES).search_ranges()
    default = TuningRequest(training=TrainingRequest("b", "d", "r"))
    assert (default.max_jobs, default.max_parallel_jobs) == (2, 2)


@pytest.mark.parametrize(("budget", "message"), [
    ({"trials": 2, "parallel_trials": 3}, r"need 1 <= trials at a time \(3\) <= trials \(2\)"),
    ({"trials": 0}, "need at least 1 trial, got 0"),
    ({"parallel_trials": 0}, r"trials at a time \(0\)"),
])
def test_a_bad_tuning_budget_is_a_configuration_error(budget: dict, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        PipelineOptions(**budget)
    flags = {"trials": "--max-jobs", "parallel_trials": "--max-parallel-jobs"}
    args = _job_args("tune", *[f for k, v in budget.items() for f in (flags[k], str(v))])
    with pytest.raises(ConfigurationError, match=message):
        cli._tuning_request(args)


@pytest.mark.parametrize(("dataset", "expected"), [
    ("digits", DIGITS), ("dog-images", DOG_IMAGES), ("/data/dogImages", DIGITS)])
def test_a_dataset_chooses_its_preset_and_a_folder_gets_the_digits_one(dataset: str,
                                                                       expected: str) -> None:
    assert preset_for_dataset(dataset) == expected


def test_every_schema_entry_is_a_flag_of_the_entry_point_and_of_train_and_tune() -> None:
    entry = {a.dest: a.option_strings for a in build_parser()._actions}
    for command in ("train", "tune"):
        jobs = {a.dest: a.option_strings for a in _jobs_parser(command)._actions}
        for hp in SCHEMA:
            assert entry[hp.name] == jobs[hp.name] == [hp.flag]
    # What a checkpoint records: every hyperparameter but how often the job checkpoints.
    assert HYPERPARAMETERS == tuple(hp.name for hp in SCHEMA if hp.name != "checkpoint_interval")


def test_train_sets_weight_decay_and_takes_the_datasets_preset() -> None:
    args = _job_args("train", "--dataset", "dog-images", "--weight-decay", "0.05")
    request = cli._request(args)
    assert request.hyperparameters == HyperParameters.of_preset(DOG_IMAGES, weight_decay=0.05)
    assert request.hyperparameters.as_strings()["weight-decay"] == "0.05"


def test_a_folder_trains_with_the_preset_it_names() -> None:
    args = _job_args("train", "--dataset", "dogImages", "--preset", "dog-images")
    assert cli._request(args).hyperparameters.arch == "resnet50"


@pytest.mark.parametrize("flags", [["--batch-size", "0"], ["--arch", "vgg11"],
                                   ["--pretrained", "maybe"], ["--preset", "imagenet"]])
def test_train_refuses_a_bad_hyperparameter_as_a_usage_error(flags: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _job_args("train", *flags)
    assert exit_info.value.code == 2


def test_wire_form_has_one_spelling_per_hyperparameter() -> None:
    wire = HyperParameters.of_preset(DOG_IMAGES).as_strings()
    assert set(wire) == {hp.name.replace("_", "-") for hp in SCHEMA}
    assert HyperParameters.from_strings({**wire, "batch-size": "24.0"}).batch_size == 24
    with pytest.raises(ConfigurationError, match="batch_size must be positive"):
        HyperParameters.from_strings({"batch-size": "-3"})


def test_sdk_ranges_carry_each_kind_and_scaling_under_the_wire_name() -> None:
    ranges = sdk_ranges({"lr": Interval(1e-5, 1e-3, "Logarithmic"),
                         "batch_size": Interval(16, 48),
                         "arch": Choice(("resnet18", "resnet50")),
                         "hflip": Choice((True, False))})
    assert set(ranges) == {"lr", "batch-size", "arch", "hflip"}
    assert type(ranges["lr"]).__name__ == "ContinuousParameter"
    assert ranges["lr"].scaling_type == "Logarithmic"
    assert type(ranges["batch-size"]).__name__ == "IntegerParameter"
    assert ranges["arch"].values == ["resnet18", "resnet50"]
    assert ranges["hflip"].values == ["true", "false"]


@pytest.mark.parametrize(("ranges", "message"), [
    ({"lr": Interval(0, 1e-3)}, "0 < low <= high"),
    ({"arch": Interval(1, 2)}, "give it a Choice"),
    ({"arch": Choice(("vgg11",))}, "unknown architecture"),
    ({"momentum": Interval(0.1, 0.9)}, "unknown hyperparameter 'momentum'"),
    ({"epochs": Interval(1, 2, "Cubic")}, "scaling 'Cubic'"),
])
def test_tuning_request_refuses_a_bad_range(ranges: dict, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        TuningRequest(training=TrainingRequest("b", "d", "r"), ranges=ranges)


def test_fixed_pins_a_range_to_one_value() -> None:
    pinned = hyperparameters.fixed(preset(DOG_IMAGES).search_ranges(), epochs=1)
    assert pinned["epochs"] == Interval(1, 1)
    assert pinned["lr"] == preset(DOG_IMAGES).search_ranges()["lr"]
