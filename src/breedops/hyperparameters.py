"""Every hyperparameter of the training entry point, once, and the per-dataset presets.

One entry per hyperparameter: its name (the flag and SageMaker's hyperparameter name are the
name with dashes: `batch_size` -> `--batch-size`, `batch-size`), type, default, help and, when
the tuner searches it, its range. The entry point's flags, `breedops train/tune`'s flags, the
jobs' wire form and the tuning job's ranges are all derived from `SCHEMA`. A preset changes
defaults and ranges for a dataset; the defaults of the entries are the digits demo's.

Torch-free, and of breedops it imports only the architecture names (`modeling.architectures`
imports torch when a model is built, not before): the pipeline fingerprints job requests on
every run without paying for torch, and nothing that imports this module drags in the rest.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from breedops.modeling.architectures import ARCHITECTURES

# SageMaker's ScalingType values for a numeric range.
SCALINGS = ("Auto", "Linear", "Logarithmic", "ReverseLogarithmic")


def str2bool(value: str) -> bool:
    """A typed boolean: true/false, yes/no, 1/0."""
    lowered = str(value).strip().lower()
    if lowered in ("true", "yes", "1"):
        return True
    if lowered in ("false", "no", "0"):
        return False
    raise ValueError(f"expected a boolean (true/false), got {value!r}")


def argparse_type(parse: Callable[[str], Any], name: str) -> Callable[[str], Any]:
    """`parse` as an argparse type: its ValueError becomes a usage error; `name` names the
    type in argparse's messages."""
    def typed(raw: str) -> Any:
        try:
            return parse(raw)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from e
    typed.__name__ = name
    return typed


# Booleans typed explicitly (no store_true): SageMaker passes every hyperparameter a value.
boolean = argparse_type(str2bool, "boolean")


def _integer(value: str) -> int:
    """An int; "48.0" too (a tuner may send an integer range's value as a float)."""
    number = float(value)
    if not number.is_integer():
        raise ValueError(f"expected an integer, got {value!r}")
    return int(number)


PARSERS: dict[type, Callable[[str], Any]] = {float: float, int: _integer, str: str,
                                             bool: str2bool}


@dataclass(frozen=True)
class Interval:
    """A numeric search range, `low..high` inclusive, scaled as SageMaker's ScalingType."""

    low: float
    high: float
    scaling: str = "Auto"


@dataclass(frozen=True)
class Choice:
    """A categorical search range."""

    values: tuple[Any, ...]


Range = Interval | Choice


@dataclass(frozen=True)
class Hyperparameter:
    """One hyperparameter: what it is, its default and (when tuned by default) its range."""

    name: str
    kind: type
    default: Any
    help: str
    tuned: Range | None = None
    positive: bool = False
    choices: tuple[str, ...] | None = None
    minimum: float | None = None
    # Part of what a run is: a checkpoint resumes only a run with the same values. False for a
    # setting of how the job runs (it may change between a run and its resumption).
    defines_run: bool = True

    @property
    def wire_name(self) -> str:
        """The SageMaker hyperparameter's name (the flag without its dashes)."""
        return self.name.replace("_", "-")

    @property
    def flag(self) -> str:
        return f"--{self.wire_name}"

    def check(self, value: Any) -> Any:
        """`value` if it is valid for this hyperparameter; ValueError saying why otherwise."""
        if self.kind in (int, float) and isinstance(value, bool) or not isinstance(
                value, (int, float) if self.kind is float else self.kind):
            raise ValueError(f"{self.name} must be a {self.kind.__name__}, got {value!r}")
        if self.positive and not value > 0:
            raise ValueError(f"{self.name} must be positive, got {value}")
        if self.minimum is not None and not value >= self.minimum:  # also refuses nan
            raise ValueError(f"{self.name} must be at least {self.minimum:g}, got {value}")
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"unknown {'architecture' if self.name == 'arch' else self.name} "
                             f"{value!r}; choose one of {', '.join(self.choices)}")
        return value

    def parse(self, raw: str) -> Any:
        """The value a flag or the wire form `raw` stands for; ValueError if it is invalid."""
        try:
            value = PARSERS[self.kind](str(raw).strip().strip('"'))
        except ValueError as e:
            raise ValueError(f"{self.name}: {e}") from e
        return self.check(value)

    def format(self, value: Any) -> str:
        """The wire form: every value a string, booleans lower case."""
        return str(value).lower() if isinstance(value, bool) else str(value)


# The digits ranges hold only settings that train well: with 2 trials the tuner cannot afford a
# poor one. Test accuracy (180 images) of one-thread runs here: 4 epochs 0.956-0.972 (8 runs, 4
# under 0.97); a peak lr of 6e-3..8e-3 over 6 epochs 0.967-0.983 (4 runs, 2 under); 1.5e-3..5e-3
# over 5-7 epochs 0.972-0.994 (15 runs). Batches under 48 train up to a quarter slower.
SCHEMA: tuple[Hyperparameter, ...] = (
    Hyperparameter("lr", float, 3e-3, "peak learning rate (one-cycle schedule)",
                   tuned=Interval(1.5e-3, 5e-3, "Logarithmic"), positive=True),
    Hyperparameter("batch_size", int, 64, "per-process batch", tuned=Interval(48, 96),
                   positive=True),
    Hyperparameter("epochs", int, 5, "passes over the data", tuned=Interval(5, 7),
                   positive=True),
    Hyperparameter("arch", str, "resnet18", "torchvision model", choices=ARCHITECTURES),
    Hyperparameter("pretrained", bool, False,
                   "start from ImageNet weights (downloaded, or the --weights file)"),
    Hyperparameter("image_size", int, 24, "input side in pixels", positive=True),
    Hyperparameter("hflip", bool, False,
                   "random horizontal flips (good for photographs, not for digits)"),
    Hyperparameter("weight_decay", float, 1e-4, "AdamW weight decay"),
    Hyperparameter("seed", int, 0, "seed for weights, order, augmentation"),
    # A hyperparameter because SageMaker passes a script nothing else; see `EpochCheckpoints`.
    Hyperparameter("checkpoint_interval", float, 60.0,
                   "seconds between end-of-epoch checkpoints (0: every epoch); an epoch not yet "
                   "due is kept in memory and written on SIGTERM", minimum=0, defines_run=False),
)
BY_NAME = {hp.name: hp for hp in SCHEMA}


def hyperparameter(name: str) -> Hyperparameter:
    """The schema's entry for `name`; ValueError naming the known ones otherwise."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown hyperparameter {name!r}; known: {', '.join(BY_NAME)}") from None


@dataclass(frozen=True)
class Preset:
    """A dataset's defaults and search ranges, as changes to the schema's."""

    name: str
    description: str
    defaults: dict[str, Any] = field(default_factory=dict)
    ranges: dict[str, Range | None] = field(default_factory=dict)
    # The tuning job's budget unless one is asked for: trials in all, and at a time.
    trials: int = 4
    parallel_trials: int = 2

    def __post_init__(self) -> None:
        for name, value in self.defaults.items():
            hyperparameter(name).check(value)
        for name in self.ranges:
            hyperparameter(name)
        check_budget(self.trials, self.parallel_trials)

    def budget(self, trials: int | None = None,
               parallel_trials: int | None = None) -> tuple[int, int]:
        """`(trials, at a time)`: what is asked for, else this preset's; asking for fewer
        trials than the preset runs at a time runs them all at once."""
        trials = self.trials if trials is None else trials
        if parallel_trials is None:
            parallel_trials = min(self.parallel_trials, trials)
        check_budget(trials, parallel_trials)
        return trials, parallel_trials

    def default_values(self) -> dict[str, Any]:
        """Every hyperparameter's default under this preset."""
        return {hp.name: self.defaults.get(hp.name, hp.default) for hp in SCHEMA}

    def search_ranges(self) -> dict[str, Range]:
        """What the tuner searches under this preset (a range of None drops one)."""
        ranges = {hp.name: self.ranges.get(hp.name, hp.tuned) for hp in SCHEMA}
        return {name: r for name, r in ranges.items() if r is not None}


def check_budget(trials: int, parallel_trials: int) -> None:
    """ValueError unless 1 <= trials at a time <= trials."""
    if trials < 1:
        raise ValueError(f"need at least 1 trial, got {trials}")
    if not 1 <= parallel_trials <= trials:
        raise ValueError(f"need 1 <= trials at a time ({parallel_trials}) <= trials ({trials})")


DIGITS = "digits"
DOG_IMAGES = "dog-images"
PRESETS = {preset.name: preset for preset in (
    # The laptop demo's tuning job is one round: 2 one-thread trials fill 2 cores. A second
    # round would add a trial's fixed costs again (start-up, ONNX export and gate, model upload:
    # about 30 s here) for a Bayesian search that had only 2 results to learn from.
    Preset(DIGITS, "8x8 digits rendered at 32 px: a small ResNet from scratch (the schema's "
           "defaults)", trials=2, parallel_trials=2),
    # Fine-tuning ImageNet's resnet50 on 133 breeds (~6.7k training photos): 224 px is what
    # the weights were trained at; a learning rate well below from-scratch ones (1e-4, searched
    # log-scaled 1e-5..1e-3) keeps the pretrained features; batches of 16-48 fit a 16 GB T4 at
    # 224 px and give more updates per epoch on a small dataset; flips suit photographs; AdamW's
    # decay a little stronger against overfitting the small set; 5-15 epochs converge from a
    # pretrained start.
    Preset(DOG_IMAGES, "dogImages' 133 breeds: ImageNet-pretrained resnet50 fine-tuned at 224 px",
           defaults={"lr": 1e-4, "batch_size": 32, "epochs": 10, "arch": "resnet50",
                     "pretrained": True, "image_size": 224, "hflip": True,
                     "weight_decay": 1e-2},
           ranges={"lr": Interval(1e-5, 1e-3, "Logarithmic"), "batch_size": Interval(16, 48),
                   "epochs": Interval(5, 15)}),
)}


def preset(name: str) -> Preset:
    """The preset `name`; ValueError naming the known ones otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None


def preset_for_dataset(dataset: str) -> str:
    """A built-in dataset's own preset; a folder of one's own gets the digits defaults (its
    owner names a preset, e.g. dog-images for an extracted dogImages archive)."""
    return dataset if dataset in PRESETS else DIGITS


def fixed(ranges: dict[str, Range], **values: Any) -> dict[str, Range]:
    """`ranges` with the named hyperparameters pinned to one value each."""
    return {**ranges, **{name: Interval(value, value) for name, value in values.items()}}


def check_range(name: str, search: Range) -> None:
    """ValueError unless `search` is a valid range for hyperparameter `name`."""
    hp = hyperparameter(name)
    if isinstance(search, Choice):
        for value in search.values:
            hp.check(value)
        return
    if hp.kind not in (int, float):
        raise ValueError(f"{name} is a {hp.kind.__name__}: give it a Choice, not an Interval")
    if not (0 < search.low <= search.high if hp.positive else search.low <= search.high):
        raise ValueError(f"range for {name} must satisfy {'0 < ' if hp.positive else ''}"
                         f"low <= high, got {search.low}..{search.high}")
    if search.scaling not in SCALINGS:
        raise ValueError(f"range for {name}: scaling {search.scaling!r} is not one of "
                         f"{', '.join(SCALINGS)}")


def add_arguments(group: argparse._ActionsContainer, defaults: dict[str, Any] | None) -> None:
    """One flag per hyperparameter; `defaults` None: every flag defaults to None (unset)."""
    for hp in SCHEMA:
        default = None if defaults is None else defaults[hp.name]
        # A choice is argparse's to check: its message lists them ("invalid choice: ...").
        kind = None if hp.choices else argparse_type(hp.parse, hp.kind.__name__)
        group.add_argument(hp.flag, dest=hp.name, type=kind, default=default, choices=hp.choices,
                           metavar=hp.kind.__name__.upper() if hp.choices is None else None,
                           help=hp.help if defaults is None else f"{hp.help} (default: {default})")
