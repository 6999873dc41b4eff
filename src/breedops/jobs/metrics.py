"""The metric lines of the training script: the ONE place their regexes live (contract 5 of
docs/ARCHITECTURE.md).

The SageMaker tuner's `metric_definitions` and the local tuner both use these definitions.
"""

from __future__ import annotations

import re

METRIC_NAMES = ("train_loss", "valid_loss", "valid_accuracy", "test_loss", "test_accuracy")
METRIC_DEFINITIONS: list[dict[str, str]] = [
    {"Name": name, "Regex": f"{name}=([0-9.]+);"} for name in METRIC_NAMES
]
OBJECTIVE_METRIC = "valid_loss"
OBJECTIVE_TYPE = "Minimize"
TEST_METRICS = ("test_loss", "test_accuracy")


def parse_metrics(text: str) -> dict[str, list[float]]:
    """Every value of every metric found in a log, in order of appearance."""
    found: dict[str, list[float]] = {}
    for definition in METRIC_DEFINITIONS:
        values = [float(v) for v in re.findall(definition["Regex"], text)]
        if values:
            found[definition["Name"]] = values
    return found


def final_metrics(text: str) -> dict[str, float]:
    """The last value of each metric: what SageMaker reports as a job's final metric."""
    return {name: values[-1] for name, values in parse_metrics(text).items()}
