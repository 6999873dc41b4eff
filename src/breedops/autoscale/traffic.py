"""Traffic curves for the autoscaling simulator: one row per minute, in requests per minute.

The CSV has the header `minute,requests_per_minute` and one row per consecutive minute from 0.
A minute is CloudWatch's resolution for `InvocationsPerInstance`, so a finer curve would only be
summed back to minutes. `write_example_curves` makes the shipped curves reproducibly.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from breedops.errors import BreedopsError

HEADER = ("minute", "requests_per_minute")


class TrafficError(BreedopsError):
    """A traffic CSV is missing, malformed or not a per-minute curve."""


def read_traffic(path: Path) -> list[float]:
    """The requests per minute of each minute, validated; a clear error names the bad line."""
    if not path.is_file():
        raise TrafficError(f"traffic file {path}: no such file")
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows or tuple(cell.strip() for cell in rows[0]) != HEADER:
        found = ",".join(rows[0]) if rows else "an empty file"
        raise TrafficError(f"{path}: the first line must be {','.join(HEADER)!r}, found {found!r}")
    demand: list[float] = []
    for line_number, row in enumerate(rows[1:], start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != 2:
            raise TrafficError(f"{path}:{line_number}: expected 2 columns, found {len(row)}")
        try:
            minute, value = int(row[0]), float(row[1])
        except ValueError as e:
            raise TrafficError(f"{path}:{line_number}: not a number: {','.join(row)!r}") from e
        if minute != len(demand):
            raise TrafficError(f"{path}:{line_number}: expected minute {len(demand)}, "
                               f"found {minute} (minutes must be consecutive from 0)")
        if not math.isfinite(value) or value < 0:
            raise TrafficError(f"{path}:{line_number}: requests_per_minute must be a finite "
                               f"number >= 0, found {row[1]!r}")
        demand.append(value)
    if not demand:
        raise TrafficError(f"{path}: no data rows after the header")
    return demand


def write_traffic(path: Path, demand: list[float]) -> Path:
    """Write a curve in the format `read_traffic` reads."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(HEADER)
        writer.writerows((minute, round(value)) for minute, value in enumerate(demand))
    return path


def steady(minutes: int = 180, level: float = 3000.0) -> list[float]:
    """A flat load with a small deterministic ripple (+-5 %), as real steady traffic has."""
    return [level * (1 + 0.05 * math.sin(2 * math.pi * m / 17)) for m in range(minutes)]


def daily_cycle(minutes: int = 1440, low: float = 600.0, high: float = 6000.0) -> list[float]:
    """One day: a trough at 04:00 and a peak at 16:00, a sinusoid between `low` and `high`."""
    middle, amplitude = (high + low) / 2, (high - low) / 2
    return [middle - amplitude * math.cos(2 * math.pi * (m - 240) / 1440) for m in range(minutes)]


def spike(minutes: int = 180, base: float = 1200.0, peak: float = 9000.0,
          start: int = 60, length: int = 20) -> list[float]:
    """A flat base with a sudden plateau (a launch, a mention): the hardest case to scale for."""
    return [peak if start <= m < start + length else base for m in range(minutes)]


EXAMPLE_CURVES = {"steady": steady, "daily_cycle": daily_cycle, "spike": spike}


def write_example_curves(directory: Path) -> list[Path]:
    """The shipped curves (`benchmarks/traffic/*.csv`)."""
    return [write_traffic(directory / f"{name}.csv", make()) for name, make in
            EXAMPLE_CURVES.items()]
