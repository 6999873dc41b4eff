"""`breedops bench run`: every measurement, bounded in time, into one results file per run.

Sections (each one's failure is recorded and the others still run), in this order, one at a
time: serving latency from the network alone to the Lambda, per runtime (eager, ONNX Runtime);
endpoint throughput per runtime; endpoint throughput against concurrency and the autoscaling
target it implies; eager PyTorch variants; training throughput per architecture and 1 against
2 DDP processes, a small tuning job's wall time; and the autoscaling policy replayed on the
shipped traffic curves with the capacity this run measured. The docs are then generated from
that file alone (`breedops.bench.report.publish`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from breedops.bench.results import (
    SECTIONS,
    benchmarks_dir,
    new_run_id,
    results_dir,
    run_file,
    stamp_sections,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchPlan:
    """How much to measure: `full` for `make bench`, `quick` for a smoke run."""

    name: str
    architectures: tuple[str, ...]
    latency_requests: int
    concurrency_levels: tuple[int, ...]
    seconds_per_level: float
    windows_per_level: int
    runtime_clients: int
    speedup_repeats: int
    training_epochs: int
    tuning_jobs: int


FULL = BenchPlan("full", ("resnet18", "resnet50"), 40, (1, 2, 4, 8, 16, 32), 5.0, 3, 4, 20, 1,
                 2)
QUICK = BenchPlan("quick", ("resnet18",), 8, (1, 4), 2.0, 1, 4, 5, 1, 0)
# The autoscaling policy compared on the shipped curves (targets as multiples of the
# recommended one; the cooldowns in seconds).
TARGET_MULTIPLES = (0.5, 0.75, 1.0, 1.25, 1.5)
COOLDOWNS_S = (30, 60, 300, 600)


def machine() -> dict[str, Any]:
    """Where the figures were taken: they mean little without it."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(), "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available(),
        # Other work on the machine skews every figure: the load says how much there was.
        "load_average_1m_at_start": round(os.getloadavg()[0], 2),
        # A negative niceness gave the bench the cores before other work on a shared machine
        # (with autogroup scheduling, the session's autogroup niceness is what counts).
        "nice": os.nice(0),
        "autogroup_nice": _autogroup_nice(),
    }
    for package in ("torch", "torchvision", "boto3", "moto", "sagemaker"):
        try:
            info[package] = version(package)
        except PackageNotFoundError:
            info[package] = None
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    try:
        import psutil

        info["memory_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    return info


def _autogroup_nice() -> int | None:
    try:  # "/autogroup-25 nice 0" where the kernel schedules by session
        return int(Path("/proc/self/autogroup").read_text().split()[-1])
    except (OSError, ValueError, IndexError):
        return None


def _section(results: dict[str, Any], name: str, measure: Callable[[], Any]) -> None:
    """Run one section; a failure is recorded as an error and does not stop the others."""
    started = time.perf_counter()
    logger.info("bench: %s ...", name)
    try:
        results[name] = measure()
    except Exception as e:  # a benchmark run reports what failed instead of losing the rest
        logger.exception("bench: %s failed", name)
        results[name] = {"error": f"{type(e).__name__}: {e}"}
    results["section_seconds"][name] = round(time.perf_counter() - started, 1)


def _training(plan: BenchPlan) -> dict[str, Any]:
    from breedops.bench import training

    with tempfile.TemporaryDirectory(prefix="breedops-bench-train-") as tmp:
        data_dir = training.prepare_digits(Path(tmp) / "digits")
        runs = [training.run_training(data_dir, Path(tmp), arch, epochs=plan.training_epochs)
                for arch in plan.architectures]
        cores = os.cpu_count() or 1
        if cores >= 2:  # two processes sharing the same cores as the single one had
            runs.append(training.run_training(data_dir, Path(tmp), plan.architectures[0],
                                              processes=2, epochs=plan.training_epochs))
        tuning = (training.tuning_wall_time(data_dir, max_jobs=plan.tuning_jobs,
                                            max_parallel_jobs=min(2, plan.tuning_jobs))
                  if plan.tuning_jobs else None)
    return {"dataset": "digits", "runs": runs, "tuning": tuning}


def _runtimes(plan: BenchPlan) -> dict[str, Any]:
    """The forward pass alone on eager, ONNX Runtime and OpenVINO, at the endpoint worker's
    thread count (every core)."""
    from breedops.bench.runtimes import as_dicts, measure_runtimes

    threads = os.cpu_count() or 1
    return {"threads": threads, "repeats": plan.speedup_repeats,
            "results": as_dicts(measure_runtimes(plan.architectures, threads=threads,
                                                 repeats=plan.speedup_repeats))}


def _autoscaling(capacity_rps: float | None) -> dict[str, Any]:
    """The shipped curves replayed with the measured capacity over a grid of policies."""
    from breedops.autoscale.simulator import Fleet, Policy, recommended_target, sweep
    from breedops.autoscale.traffic import read_traffic

    if not capacity_rps:
        return {"error": "no measured capacity (the endpoint throughput section failed)"}
    curves = {path.stem: read_traffic(path)
              for path in sorted((benchmarks_dir() / "traffic").glob("*.csv"))}
    recommended = recommended_target(capacity_rps)
    targets = [round(recommended * m) for m in TARGET_MULTIPLES]
    fleet = Fleet(capacity_rpm=capacity_rps * 60)
    rows = sweep(curves, fleet, targets, COOLDOWNS_S, Policy(target=1, max_capacity=8))
    return {"capacity_rps": capacity_rps, "recommended_target": round(recommended),
            "provisioning_minutes": fleet.provisioning_minutes, "max_capacity": 8,
            "rows": rows}




def run_benchmarks(quick: bool = False, output_dir: str | Path | None = None,
                   p99_bound_ms: float = 500.0, sections: tuple[str, ...] = SECTIONS,
                   allow_nesting_violations: bool = False) -> Path:
    """Measure the sections the plan asks for into a new results file; publish from it.

    A subset of `SECTIONS` is a run of its own (the rest is "not measured"): figures of two
    runs never share a file. Returns the results file; raises `NestingViolationError` after
    writing it when a path measured faster than one it contains.
    """
    from breedops.bench import endpoint, speedups
    from breedops.bench.report import publish
    from breedops.bench.serving import run_serving_benchmark
    from breedops.errors import ConfigurationError

    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        raise ConfigurationError(f"unknown section(s) {', '.join(unknown)}; choose from "
                                 f"{', '.join(SECTIONS)}")
    plan = QUICK if quick else FULL
    out = Path(output_dir) if output_dir else results_dir()
    out.mkdir(parents=True, exist_ok=True)
    run_id = new_run_id()
    path = run_file(out, run_id, quick)
    measured = [name for name in SECTIONS if name in sections]
    results: dict[str, Any] = {
        "run_id": run_id, "plan": plan.name, "quick": quick,
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "sections": measured, "machine": machine(), "section_seconds": {}}
    measures: dict[str, Callable[[], Any]] = {
        "serving": lambda: run_serving_benchmark(
            requests=plan.latency_requests, architectures=plan.architectures,
            models_dir=models_dir),
        "runtimes": lambda: _runtimes(plan),
        "runtime_throughput": lambda: endpoint.runtime_throughput(
            plan.architectures, plan.runtime_clients, plan.seconds_per_level,
            plan.windows_per_level, p99_bound_ms, models_dir=models_dir),
        "endpoint_throughput": lambda: endpoint.endpoint_throughput(
            plan.architectures[0], plan.concurrency_levels, plan.seconds_per_level,
            p99_bound_ms, plan.windows_per_level, models_dir=models_dir),
        "speedups": lambda: {arch: speedups.compare_variants(arch, repeats=plan.speedup_repeats)
                             for arch in plan.architectures},
        "training": lambda: _training(plan),
        "autoscaling": lambda: _autoscaling(
            results.get("endpoint_throughput", {}).get("max_rps")),
    }
    started = time.perf_counter()
    # Every section serves the same packaged artifacts (packaging exports and gates the ONNX
    # model once per architecture).
    with tempfile.TemporaryDirectory(prefix="breedops-bench-models-") as models:
        models_dir = Path(models)
        for name in measured:  # in order, one at a time: autoscaling needs this run's capacity
            _section(results, name, measures[name])
    results["total_seconds"] = round(time.perf_counter() - started, 1)
    results["machine"]["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    stamp_sections(results, measured)
    path.write_text(json.dumps(results, indent=2) + "\n")
    logger.info("bench: results %s (%.0f s)", path, results["total_seconds"])
    print(f"results: {path}")
    throughput = results.get("endpoint_throughput", {})
    if throughput.get("recommended_target"):
        print(f"endpoint_autoscaling = {{ target_invocations_per_instance = "
              f"{throughput['recommended_target']} }}  # max {throughput['max_rps']} req/s x "
              f"{endpoint.SAFETY_FACTOR} x 60")
    for written in publish(path, allow_nesting_violations=allow_nesting_violations):
        print(f"generated: {written}")
    return path
