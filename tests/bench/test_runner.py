"""`bench run --sections`: a subset is a run of its own, never merged with another run."""

from __future__ import annotations

import json

import pytest

from breedops.bench.results import RUN_ID_PATTERN, load_run
from breedops.bench.runner import run_benchmarks
from breedops.errors import ConfigurationError

from .test_report import results_fixture, write_results


def test_run_benchmarks_subset_is_a_new_run_that_keeps_nothing_of_earlier_ones(tmp_path):
    out = tmp_path / "benchmarks" / "results"
    earlier = write_results(out, results_fixture())  # its endpoint sustained 12 req/s
    path = run_benchmarks(output_dir=out, sections=("autoscaling",))
    results = load_run(path)
    assert RUN_ID_PATTERN.match(results["run_id"]) and path.stem == results["run_id"]
    assert results["sections"] == ["autoscaling"] and "training" not in results
    # Its capacity would have come from another run: the section says it has none.
    assert "no measured capacity" in results["autoscaling"]["error"]
    assert results["autoscaling"]["run_id"] == results["run_id"]
    summary = (tmp_path / "benchmarks" / "BENCHMARKS.md").read_text()
    assert f"Run **{results['run_id']}**" in summary and "360" not in summary
    assert not earlier.exists()  # the docs cite the new run; the old one's files are gone
    assert json.loads(path.read_text())["machine"]["load_average_1m_at_end"] >= 0


def test_run_benchmarks_unknown_section_raises(tmp_path):
    with pytest.raises(ConfigurationError, match="unknown section"):
        run_benchmarks(output_dir=tmp_path, sections=("gpu",))
