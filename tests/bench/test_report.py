"""The capacity rule, the results lookup, and the report written from a results dict."""

from __future__ import annotations

import json

import pytest

from breedops.bench.endpoint import capacity_from_levels
from breedops.bench.report import write_markdown, write_plots
from breedops.bench.results import latest_results, measured_capacity_rps


def level(concurrency: int, rps: float, p99: float, errors: int = 0) -> dict:
    return {"concurrency": concurrency, "achieved_rps": rps, "errors": errors,
            "latency_ms": {"p50": p99 / 2, "p90": p99 * 0.9, "p99": p99, "max": p99}}


LEVELS = [level(1, 8.0, 140), level(2, 11.0, 260), level(4, 12.0, 480),
          level(8, 12.5, 900), level(16, 13.0, 300, errors=3)]


def test_capacity_from_levels_takes_best_within_bound():
    capacity = capacity_from_levels(LEVELS, p99_bound_ms=500)
    # 12.5 req/s breaks the p99 bound and 13.0 had errors: 12.0 is the capacity.
    assert capacity == {"max_rps": 12.0, "at_concurrency": 4, "recommended_target": 360,
                        "max_rps_any_latency": 12.5}


def test_capacity_from_levels_none_within_bound():
    capacity = capacity_from_levels(LEVELS, p99_bound_ms=100)
    assert capacity["max_rps"] is None and capacity["recommended_target"] is None


def test_latest_results_skips_quick_runs(tmp_path):
    (tmp_path / "2026-01-01.json").write_text(json.dumps(
        {"endpoint_throughput": {"max_rps": 9.5}}))
    (tmp_path / "2026-01-02-quick.json").write_text(json.dumps(
        {"endpoint_throughput": {"max_rps": 1.0}}))
    assert measured_capacity_rps(latest_results(tmp_path)) == 9.5
    assert latest_results(tmp_path / "empty") is None and measured_capacity_rps(None) is None


def results_fixture() -> dict:
    latency = {"p50_ms": 40.0, "p99_ms": 60.0}
    return {
        "date": "2026-01-01T00:00:00+00:00", "plan": "full", "total_seconds": 600,
        "machine": {"cpu_count": 2, "torch": "2.14.1", "load_average_1m_at_start": 0.5,
                    "load_average_1m_at_end": 7.5}, "section_seconds": {},
        "serving": {"image_size": 224, "requests": 40, "architectures": {"resnet18": {
            "forward": latency, "handler": latency, "endpoint": latency,
            "lambda_end_to_end": latency, "lambda_cold_init_ms": 300.0,
            "lambda_max_memory_used_mb": 80, "lambda_package_bytes": 4000}}},
        "endpoint_throughput": {"arch": "resnet18", "image_size": 224, "instances": 1,
                                "seconds_per_level": 6, "p99_bound_ms": 500,
                                "safety_factor": 0.5, "levels": LEVELS,
                                **capacity_from_levels(LEVELS, 500)},
        "speedups": {"error": "RuntimeError: boom"},
        "training": {"dataset": "digits", "tuning": None, "runs": [
            {"arch": "resnet18", "processes": 1, "threads_per_process": 2,
             "images_per_second": 300.0, "wall_s": 20.0}]},
    }


def test_write_report_has_figures_and_the_terraform_value(tmp_path):
    results = results_fixture()
    plots = write_plots(results, tmp_path, "2026-01-01")
    assert set(plots) == {"throughput", "latency", "training"}
    for path in plots.values():
        assert path.read_bytes()[:4] == b"\x89PNG"
    summary = write_markdown(results, plots, tmp_path / "2026-01-01.json",
                             tmp_path / "BENCHMARKS.md").read_text()
    assert "target_invocations_per_instance = 360" in summary
    assert "12.0 x 0.5 x 60 = **360**" in summary
    # A failed section is reported as such; a missing one as not measured.
    assert "Not available: RuntimeError: boom" in summary
    assert "Not available: not measured" in summary
    assert "load average up to 7.5 on 2 cores" in summary
    assert "| resnet18 | lambda_end_to_end | 40.0 | - | 60.0 |" in summary
    assert "| resnet18 | lambda_max_memory_used_mb | 80 |" in summary


@pytest.mark.parametrize("arch", ["resnet18"])
def test_compare_variants_agree_with_eager_within_tolerance(arch):
    from breedops.bench.speedups import compare_variants

    result = compare_variants(arch, image_size=32, num_classes=5, repeats=1)
    variants = result["variants"]
    assert variants["eager"]["speedup"] == 1.0 and not variants["eager"]["adopt"]
    for name, figures in variants.items():
        assert figures["equal_within_tolerance"], name
        assert figures["ms_per_image"] > 0


def test_bench_report_command_rewrites_summary(tmp_path, capsys):
    from breedops.cli import main

    results = tmp_path / "results" / "2026-01-01.json"
    results.parent.mkdir()
    results.write_text(json.dumps(results_fixture()))
    assert main(["bench", "report", str(results)]) == 0
    assert "target_invocations_per_instance = 360" in (tmp_path / "BENCHMARKS.md").read_text()
    assert (tmp_path / "results" / "2026-01-01-throughput.png").is_file()
    capsys.readouterr()
    assert main(["bench", "report", str(tmp_path / "missing.json")]) == 2
    assert "cannot read benchmark results" in capsys.readouterr().err


def test_best_window_prefers_within_bound_then_fastest():
    from breedops.bench.endpoint import best_window

    windows = [level(4, 30.0, 900), level(4, 12.0, 300), level(4, 11.0, 200)]
    best = best_window(windows, p99_bound_ms=500)
    assert best["achieved_rps"] == 12.0 and best["window_rps"] == [30.0, 12.0, 11.0]
    # None within the bound: the fastest window stands, and fails the bound later.
    assert best_window(windows, p99_bound_ms=100)["achieved_rps"] == 30.0
