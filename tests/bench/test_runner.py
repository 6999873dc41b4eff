"""`bench run --sections`: one section measured again, today's other figures kept."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from breedops.bench.runner import run_benchmarks
from breedops.errors import ConfigurationError

from .test_report import results_fixture


def test_run_benchmarks_autoscaling_section_uses_todays_capacity(tmp_path, capsys):
    out = tmp_path / "results"
    out.mkdir()
    today = out / f"{dt.date.today().isoformat()}.json"
    earlier = results_fixture()  # its endpoint sustained 12 req/s
    today.write_text(json.dumps(earlier))
    path = run_benchmarks(output_dir=out, sections=("autoscaling",))
    results = json.loads(path.read_text())
    assert path == today
    assert results["training"] == earlier["training"]  # kept
    autoscaling = results["autoscaling"]
    assert autoscaling["recommended_target"] == 360
    curves = {row["curve"] for row in autoscaling["rows"]}
    assert curves == {"steady", "daily_cycle", "spike"}
    assert "| spike | 360 |" in (tmp_path / "BENCHMARKS.md").read_text()


def test_run_benchmarks_without_capacity_records_the_section_error(tmp_path):
    path = run_benchmarks(output_dir=tmp_path / "results", sections=("autoscaling",))
    assert "no measured capacity" in json.loads(path.read_text())["autoscaling"]["error"]


def test_run_benchmarks_unknown_section_raises(tmp_path):
    with pytest.raises(ConfigurationError, match="unknown section"):
        run_benchmarks(output_dir=tmp_path, sections=("gpu",))
