"""The capacity rule, one run per results file, the nesting check, and what is generated
from one run."""

from __future__ import annotations

import json

import pytest

from breedops.bench.endpoint import capacity_from_levels
from breedops.bench.nesting import check_nesting, margin_ms
from breedops.bench.report import (
    BEGIN,
    END,
    MODULE_README,
    NestingViolationError,
    generated_block,
    publish,
    render_for_check,
)
from breedops.bench.results import (
    MixedRunsError,
    latest_results,
    load_run,
    measured_capacity_rps,
)
from breedops.errors import ConfigurationError


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


RUN_ID = "20260101T000000Z"


def test_latest_results_takes_newest_full_run(tmp_path):
    for run_id, rps in (("20260101T000000Z", 9.5), ("20251231T000000Z", 3.0)):
        (tmp_path / f"{run_id}.json").write_text(json.dumps(
            {"run_id": run_id, "sections": ["endpoint_throughput"],
             "endpoint_throughput": {"max_rps": rps, "run_id": run_id}}))
    (tmp_path / "20260102T000000Z-quick.json").write_text(json.dumps(
        {"run_id": "20260102T000000Z", "endpoint_throughput": {"max_rps": 1.0}}))
    assert measured_capacity_rps(latest_results(tmp_path)) == 9.5
    assert latest_results(tmp_path / "empty") is None and measured_capacity_rps(None) is None


def serving_fixture(forward_p50: float = 20.0, handler_p50: float = 25.0) -> dict:
    def latency(p50: float) -> dict:
        return {"p50_ms": p50, "p90_ms": p50 + 2, "p99_ms": p50 + 5, "min_ms": p50 - 1}

    figures = {"runtime": "eager", "threads": 2, "forward": latency(forward_p50),
               "handler": latency(handler_p50), "endpoint": latency(30.0),
               "lambda_end_to_end": latency(40.0), "lambda_report_duration": latency(39.0),
               "lambda_cold_init_ms": 300.0, "lambda_max_memory_used_mb": 80,
               "lambda_package_bytes": 4000}
    architectures = {"resnet18": {"eager": figures}}
    return {"image_size": 224, "image_bytes": 12345, "requests": 40, "warmup": 3, "threads": 2,
            "architectures": architectures, "nesting": check_nesting(architectures)}


def results_fixture(run_id: str = RUN_ID, **serving: float) -> dict:
    results = {
        "run_id": run_id, "plan": "full", "quick": False, "total_seconds": 600,
        "started": "2026-01-01T00:00:00+00:00",
        "sections": ["serving", "runtimes", "endpoint_throughput", "speedups", "training"],
        "machine": {"cpu_count": 2, "torch": "2.14.1", "load_average_1m_at_start": 0.5,
                    "load_average_1m_at_end": 7.5}, "section_seconds": {},
        "serving": serving_fixture(**serving),
        "endpoint_throughput": {"arch": "resnet18", "runtime": "onnxruntime",
                                "served_by": {"model_version": "bench-resnet18"},
                                "image_size": 224, "instances": 1,
                                "seconds_per_level": 6, "p99_bound_ms": 500,
                                "client_niceness": 10, "safety_factor": 0.5, "levels": LEVELS,
                                **capacity_from_levels(LEVELS, 500)},
        "runtimes": {"threads": 2, "repeats": 30, "results": [
            {"arch": "resnet18", "runtime": "onnxruntime", "available": True, "p50_ms": 10.0,
             "p90_ms": 11.0, "min_ms": 9.5, "speedup": 1.8, "max_probability_delta": 3e-7,
             "same_top1": True, "passes_gate": True, "version": "onnxruntime 1.32.0"},
            {"arch": "resnet18", "runtime": "openvino", "available": False,
             "reason": "openvino does not import: no module"}]},
        "speedups": {"error": "RuntimeError: boom"},
        "training": {"dataset": "digits", "tuning": None, "runs": [
            {"arch": "resnet18", "processes": 1, "threads_per_process": 2,
             "images_per_second": 300.0, "wall_s": 20.0}]},
    }
    for name in results["sections"]:
        results[name]["run_id"] = run_id
    return results


def write_results(directory, results: dict):
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{results['run_id']}.json"
    path.write_text(json.dumps(results))
    return path


def test_publish_writes_one_run_with_figures_and_the_terraform_value(tmp_path):
    path = write_results(tmp_path / "benchmarks" / "results", results_fixture())
    written = publish(path)
    summary = (tmp_path / "benchmarks" / "BENCHMARKS.md").read_text()
    assert f"Run **{RUN_ID}**" in summary and f"(results/{RUN_ID}.json)" in summary
    assert "target_invocations_per_instance = 360" in summary
    assert "12.0 x 0.5 x 60 = **360**" in summary
    # A failed section is reported as such; a section this run did not measure as not measured.
    assert "Not available: RuntimeError: boom" in summary
    assert "Not available: not measured in this run" in summary
    assert "load average up to 7.5 on 2 cores" in summary
    assert "| resnet18 | eager | lambda_end_to_end | 40.0 | 42.0 | 45.0 | 39.0 |" in summary
    assert "| resnet18 | eager | lambda_max_memory_used_mb | 80 |" in summary
    assert "3 of 3 pairs pass" in summary
    assert "closed loop (client threads at nice +10: on AWS they run on other machines" in summary
    assert ("| resnet18 | onnxruntime | 10.0 | 11.0 | 9.5 | 1.8 | 3.0e-07 | True | True | "
            "onnxruntime 1.32.0 |") in summary
    assert "not available: openvino does not import: no module |" in summary
    for name in ("throughput", "latency", "training"):
        png = tmp_path / "benchmarks" / "results" / f"{RUN_ID}-{name}.png"
        assert png in written and png.read_bytes()[:4] == b"\x89PNG"


def test_publish_replaces_generated_blocks_and_prunes_other_runs(tmp_path):
    results_dir = tmp_path / "benchmarks" / "results"
    path = write_results(results_dir, results_fixture())
    (results_dir / "2026-11-21.json").write_text("{}")  # an older run's files
    (results_dir / "2026-11-21-latency.png").write_bytes(b"png")
    autoscaling = tmp_path / "benchmarks" / "AUTOSCALING.md"
    autoscaling.write_text(f"# Notes\n\nprose\n{BEGIN}\nold figures 31.6\n{END}\nmore prose\n")
    readme = tmp_path / MODULE_README
    readme.parent.mkdir(parents=True)
    readme.write_text(f"# endpoint\n{BEGIN}\n- 948 to 1463\n{END}\n")
    publish(path)
    text = autoscaling.read_text()
    assert text.startswith("# Notes\n\nprose\n") and text.endswith(f"{END}\nmore prose\n")
    assert "31.6" not in text and "**12.0 req/s**" in text and f"(results/{RUN_ID}.json)" in text
    assert "1463" not in readme.read_text()
    assert f"(../../../benchmarks/results/{RUN_ID}.json)" in readme.read_text()
    expected = render_for_check(path)
    assert generated_block(text) == expected["AUTOSCALING.md"]
    assert generated_block(readme.read_text()) == expected[str(MODULE_README)]
    assert sorted(p.name for p in results_dir.iterdir()) == sorted(
        [f"{RUN_ID}.json", f"{RUN_ID}-latency.png", f"{RUN_ID}-throughput.png",
         f"{RUN_ID}-training.png"])


def test_publish_rejects_a_document_without_its_generated_block(tmp_path):
    path = write_results(tmp_path / "benchmarks" / "results", results_fixture())
    (tmp_path / "benchmarks" / "AUTOSCALING.md").write_text("# Notes, no markers\n")
    with pytest.raises(ConfigurationError, match="needs exactly one generated-figures block"):
        publish(path)


def test_load_run_rejects_a_section_from_another_run(tmp_path):
    results = results_fixture()
    results["training"] = results_fixture("20251121T132214Z")["training"]
    path = write_results(tmp_path, results)
    with pytest.raises(MixedRunsError, match=r"mixes runs: .* training \(run 20251121T132214Z\)"):
        load_run(path)
    del results["serving"]["run_id"]
    with pytest.raises(MixedRunsError, match=r"serving \(run unknown\)"):
        load_run(write_results(tmp_path, results))


def test_load_run_rejects_results_without_a_run_id(tmp_path):
    old = tmp_path / "2026-11-21.json"
    old.write_text(json.dumps({"date": "2026-11-21T13:22:14+00:00", "serving": {}}))
    with pytest.raises(MixedRunsError, match="has no run id"):
        load_run(old)


def test_check_nesting_flags_a_path_faster_than_the_one_it_contains():
    # The old run: handler 15.0 ms p50 against the forward pass it contains at 18.6 ms.
    nesting = serving_fixture(forward_p50=18.6, handler_p50=15.0)["nesting"]
    assert [(v["inner"], v["outer"]) for v in nesting["violations"]] == [("forward", "handler")]
    assert nesting["violations"][0]["margin_ms"] == 0.93  # 5 % of 18.6 ms
    # Within the noise margin: max(0.5 ms, 5 %) below the inner p50 still passes.
    assert serving_fixture(forward_p50=18.6, handler_p50=17.7)["nesting"]["violations"] == []
    assert serving_fixture(forward_p50=4.0, handler_p50=3.6)["nesting"]["violations"] == []
    assert margin_ms(4.0) == 0.5


def test_publish_refuses_a_nesting_violation_unless_overridden(tmp_path):
    path = write_results(tmp_path / "benchmarks" / "results",
                         results_fixture(forward_p50=18.6, handler_p50=15.0))
    with pytest.raises(NestingViolationError,
                       match=r"resnet18 \(eager\): handler p50 15.0 ms < forward p50 18.6 ms"):
        publish(path)
    assert not (tmp_path / "benchmarks" / "BENCHMARKS.md").exists()
    publish(path, allow_nesting_violations=True)
    assert "**violation**: resnet18 (eager): handler p50 15.0 ms" in (
        tmp_path / "benchmarks" / "BENCHMARKS.md").read_text()


def test_measure_in_sequence_times_each_path_alone_in_rounds_after_its_warmup(monkeypatch):
    from breedops.bench import serving

    monkeypatch.setattr(serving, "SETTLE_SECONDS", 0)
    monkeypatch.setattr(serving, "wait_until_quiet", lambda: None)
    monkeypatch.setattr(serving, "WARMUP_ROUND_CALLS", 1)
    calls = []

    def path(name):
        def call():
            calls.append(name)
            return f"{name}-{len(calls)}"
        return call

    returned = {}
    samples = serving.measure_in_sequence({name: path(name) for name in ("forward", "handler")},
                                          requests=5, warmup=2, rounds=2, returned=returned)
    # An untimed round, then never interleaved call by call: blocks of warm-up then timed
    # calls, the paths taking turns.
    assert calls == (["forward", "handler"] + ["forward"] * 5 + ["handler"] * 5
                     + ["forward"] * 4 + ["handler"] * 4)
    assert {name: len(values) for name, values in samples.items()} == {"forward": 5,
                                                                       "handler": 5}
    # Only the timed calls' values: the 5th-7th and 15th-16th calls of forward, say.
    assert returned["forward"] == ["forward-5", "forward-6", "forward-7", "forward-15",
                                   "forward-16"]


def test_wait_until_quiet_waits_while_the_cores_are_busy(monkeypatch):
    import psutil

    from breedops.bench import serving

    busy = iter([60.0, 35.0, 5.0, 80.0])  # percent busy, one per window
    monkeypatch.setattr(psutil, "cpu_percent", lambda interval: next(busy))
    serving.wait_until_quiet(window_s=0.01, max_wait_s=5)
    assert next(busy) == 80.0  # stopped at the first window at least 90% idle


@pytest.mark.parametrize("arch", ["resnet18"])
def test_compare_variants_agree_with_eager_within_tolerance(arch):
    from breedops.bench.speedups import compare_variants

    result = compare_variants(arch, image_size=32, num_classes=5, repeats=1)
    variants = result["variants"]
    assert variants["eager"]["speedup"] == 1.0 and not variants["eager"]["adopt"]
    for name, figures in variants.items():
        assert figures["equal_within_tolerance"], name
        assert figures["ms_per_image"] > 0


def test_bench_report_command_publishes_one_run_and_refuses_several(tmp_path, capsys):
    from breedops.cli import main

    results_dir = tmp_path / "benchmarks" / "results"
    path = write_results(results_dir, results_fixture())
    other = write_results(results_dir, results_fixture("20260102T000000Z"))
    assert main(["bench", "report", str(path), str(other)]) == 2
    assert "one run per report: got 2 results files" in capsys.readouterr().err
    assert main(["bench", "report", str(path)]) == 0
    assert "target_invocations_per_instance = 360" in (
        tmp_path / "benchmarks" / "BENCHMARKS.md").read_text()
    assert (results_dir / f"{RUN_ID}-throughput.png").is_file()
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
