"""Where benchmark results live, and the latest measured per-instance capacity."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from breedops.settings import project_root


def benchmarks_dir() -> Path:
    return project_root() / "benchmarks"


def results_dir() -> Path:
    return benchmarks_dir() / "results"


def latest_results(directory: Path | None = None) -> dict[str, Any] | None:
    """The newest full `<date>.json` (names sort by date; quick runs are smoke tests)."""
    files = sorted(p for p in (directory or results_dir()).glob("*.json")
                   if not p.stem.endswith("-quick"))
    return json.loads(files[-1].read_text()) if files else None


def measured_capacity_rps(results: dict[str, Any] | None) -> float | None:
    """The max RPS one instance sustained under the p99 bound, if a bench measured it."""
    if not results:
        return None
    value = results.get("endpoint_throughput", {}).get("max_rps")
    return float(value) if value else None
