"""Where benchmark results live; one run = one results file, and nothing mixes runs.

A run's id is the UTC time it started (`20261202T063000Z`); its file is
`benchmarks/results/<run-id>.json` (`<run-id>-quick.json` for a smoke run), and every section
in it carries the same id. Whatever is generated from results reads exactly one such file.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

from breedops.errors import ConfigurationError
from breedops.settings import project_root

RUN_ID_FORMAT = "%Y%m%dT%H%M%SZ"
RUN_ID_PATTERN = re.compile(r"^\d{8}T\d{6}Z$")
# A run's sections, measured in this order (the autoscaling replay needs the capacity).
SECTIONS = ("serving", "runtimes", "runtime_throughput", "endpoint_throughput", "speedups",
            "training", "autoscaling")


class MixedRunsError(ConfigurationError):
    """A results file whose figures come from more than one run (or several files at once)."""


def benchmarks_dir() -> Path:
    return project_root() / "benchmarks"


def results_dir() -> Path:
    return benchmarks_dir() / "results"


def new_run_id(now: dt.datetime | None = None) -> str:
    return (now or dt.datetime.now(dt.UTC)).strftime(RUN_ID_FORMAT)


def run_file(directory: Path, run_id: str, quick: bool) -> Path:
    return directory / f"{run_id}{'-quick' if quick else ''}.json"


def stamp_sections(results: dict[str, Any], sections: list[str]) -> None:
    """Mark every measured section with the run's id, so that a copied section shows."""
    for name in sections:
        if isinstance(results.get(name), dict):
            results[name]["run_id"] = results["run_id"]


def load_run(path: Path) -> dict[str, Any]:
    """One run's results, checked to come from that run alone.

    Raises `MixedRunsError` when the file has no run id or a section carries another run's id
    (or none): a report must never put figures of two runs side by side.
    """
    try:
        results = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigurationError(f"cannot read benchmark results {path}: {e}") from e
    if not isinstance(results, dict):
        raise ConfigurationError(f"{path} is not a benchmark results file (not an object)")
    run_id = results.get("run_id")
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.match(run_id):
        raise MixedRunsError(f"{path} has no run id: it predates one-run-per-file results "
                             "(or was assembled by hand); run `make bench` for a new one")
    foreign = {name: results[name].get("run_id") for name in results.get("sections", [])
               if isinstance(results.get(name), dict)
               and results[name].get("run_id") != run_id}
    if foreign:
        listed = ", ".join(f"{name} (run {other or 'unknown'})"
                           for name, other in sorted(foreign.items()))
        raise MixedRunsError(f"{path} mixes runs: it is run {run_id} but has {listed}; "
                             "measure them again in one run")
    return results


def latest_results(directory: Path | None = None) -> dict[str, Any] | None:
    """The newest full run (run ids sort by time; quick runs are smoke tests)."""
    files = sorted(p for p in (directory or results_dir()).glob("*.json")
                   if RUN_ID_PATTERN.match(p.stem))
    return load_run(files[-1]) if files else None


def measured_capacity_rps(results: dict[str, Any] | None) -> float | None:
    """The max RPS one instance sustained under the p99 bound, if a bench measured it."""
    if not results:
        return None
    value = results.get("endpoint_throughput", {}).get("max_rps")
    return float(value) if value else None
