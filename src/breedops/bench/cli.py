"""`breedops bench run`, and the `autoscale` and `load` groups (this module registers all three).

Heavy imports (torch, boto3, matplotlib) happen inside the commands, so `breedops --help` is fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from breedops.autoscale.cli import register as register_autoscale
from breedops.bench.results import SECTIONS, latest_results, measured_capacity_rps
from breedops.load.cli import register as register_load


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bench", help="measure serving, Lambda and training speed")
    commands = parser.add_subparsers(dest="bench_command", required=True)
    run = commands.add_parser("run", help="run every benchmark; write benchmarks/results/")
    run.add_argument("--quick", action="store_true",
                     help="a short smoke run (a minute or two) instead of the full measurement")
    run.add_argument("--output-dir", default=None,
                     help="where results go (default: benchmarks/results)")
    run.add_argument("--p99-bound-ms", type=float, default=None,
                     help="the p99 latency an instance must keep to count its throughput "
                          "(default: 500)")
    run.add_argument("--sections", default=None,
                     help="comma-separated subset to measure (a run of its own; the others "
                          "are reported as not measured): " + ", ".join(SECTIONS))
    run.add_argument("--allow-nesting-violations", action="store_true",
                     help="publish even when a path measured faster than one it contains")
    run.set_defaults(func=run_command)
    report = commands.add_parser(
        "report", help="generate BENCHMARKS.md, AUTOSCALING.md's and the endpoint module "
                       "README's figures and the plots from one run's results file")
    report.add_argument("results", nargs="+", help="one benchmarks/results/<run-id>.json")
    report.add_argument("--allow-nesting-violations", action="store_true",
                        help="publish even when a path measured faster than one it contains")
    report.set_defaults(func=report_command)
    register_autoscale(subparsers, _measured_capacity_rps)
    register_load(subparsers)


def _measured_capacity_rps() -> float | None:
    """The autoscale commands' default capacity: the latest full run's, if any."""
    return measured_capacity_rps(latest_results())


def run_command(args: argparse.Namespace) -> int:
    from breedops.bench.endpoint import P99_BOUND_MS
    from breedops.bench.runner import run_benchmarks

    sections = tuple(s.strip() for s in args.sections.split(",")) if args.sections else SECTIONS
    run_benchmarks(quick=args.quick, output_dir=args.output_dir,
                   p99_bound_ms=args.p99_bound_ms or P99_BOUND_MS, sections=sections,
                   allow_nesting_violations=args.allow_nesting_violations)
    return 0


def report_command(args: argparse.Namespace) -> int:
    from breedops.bench.report import publish
    from breedops.bench.results import MixedRunsError

    if len(args.results) > 1:
        raise MixedRunsError(f"one run per report: got {len(args.results)} results files "
                             f"({', '.join(args.results)}); the docs are generated from "
                             "exactly one")
    for written in publish(Path(args.results[0]),
                           allow_nesting_violations=args.allow_nesting_violations):
        print(written)
    return 0
