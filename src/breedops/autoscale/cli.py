"""`breedops autoscale simulate|sweep|traffic`: the target-tracking policy simulator."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

from breedops.errors import ConfigurationError

DEFAULT_TARGETS = "150,300,450,600,750"
DEFAULT_COOLDOWNS = "30,60,300,600"


def register(subparsers: argparse._SubParsersAction,
             measured_capacity_rps: Callable[[], float | None]) -> None:
    """Add the `autoscale` group; `measured_capacity_rps` gives the default capacity (the
    benchmarks measure it, and they sit above this package: see `breedops`' layers)."""
    parser = subparsers.add_parser("autoscale", help="simulate the endpoint's autoscaling policy")
    parser.set_defaults(measured_capacity_rps=measured_capacity_rps)
    commands = parser.add_subparsers(dest="autoscale_command", required=True)

    simulate = commands.add_parser("simulate", help="replay a traffic curve against a policy")
    simulate.add_argument("--traffic", type=Path, required=True,
                          help="CSV with minute,requests_per_minute (benchmarks/traffic/)")
    _policy_arguments(simulate)
    simulate.add_argument("--target", type=float, default=None,
                          help="InvocationsPerInstance target (default: the measured capacity "
                               "x 0.5 x 60)")
    simulate.add_argument("--scale-in-cooldown", type=int, default=300, help="seconds")
    simulate.add_argument("--scale-out-cooldown", type=int, default=300, help="seconds")
    simulate.add_argument("--plot", type=Path, default=None,
                          help="PNG to write (default: beside the CSV, <name>.png)")
    simulate.add_argument("--json", action="store_true", help="print the result as JSON")
    simulate.set_defaults(func=simulate_command)

    sweep = commands.add_parser("sweep", help="compare targets and cooldowns over curves")
    sweep.add_argument("--traffic", type=Path, nargs="+", required=True, help="CSV curves")
    _policy_arguments(sweep)
    sweep.add_argument("--targets", default=DEFAULT_TARGETS,
                       help=f"comma-separated targets (default: {DEFAULT_TARGETS})")
    sweep.add_argument("--cooldowns", default=DEFAULT_COOLDOWNS,
                       help=f"comma-separated cooldowns in seconds (default: {DEFAULT_COOLDOWNS})")
    sweep.add_argument("--output", type=Path, default=None, help="write the rows as JSON here")
    sweep.set_defaults(func=sweep_command)

    traffic = commands.add_parser("traffic", help="write the example curves (steady, daily, spike)")
    traffic.add_argument("--out", type=Path, default=Path("benchmarks/traffic"),
                         help="directory (default: benchmarks/traffic)")
    traffic.set_defaults(func=traffic_command)


def _policy_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--capacity-rps", type=float, default=None,
                        help="requests/s one instance sustains (default: the latest bench result)")
    parser.add_argument("--min-capacity", type=int, default=1, help="instances (default: 1)")
    parser.add_argument("--max-capacity", type=int, default=4, help="instances (default: 4)")
    parser.add_argument("--provisioning-minutes", type=int, default=5,
                        help="minutes until a new instance serves (default: 5)")


def _fleet(args: argparse.Namespace):
    from breedops.autoscale.simulator import Fleet

    capacity = args.capacity_rps or args.measured_capacity_rps()
    if capacity is None:
        raise ConfigurationError("no measured capacity: pass --capacity-rps or run "
                                 "`breedops bench run` first")
    return Fleet(capacity_rpm=capacity * 60, provisioning_minutes=args.provisioning_minutes)


def _numbers(text: str, kind: type, flag: str) -> list:
    try:
        return [kind(v) for v in text.split(",") if v.strip()]
    except ValueError as e:
        raise ConfigurationError(f"{flag} must be comma-separated numbers, got {text!r}") from e


def simulate_command(args: argparse.Namespace) -> int:
    from breedops.autoscale.plot import plot_simulation
    from breedops.autoscale.simulator import Policy, recommended_target, simulate
    from breedops.autoscale.traffic import read_traffic

    demand = read_traffic(args.traffic)
    fleet = _fleet(args)
    target = args.target or recommended_target(fleet.capacity_rpm / 60)
    policy = Policy(target=target, scale_in_cooldown_s=args.scale_in_cooldown,
                    scale_out_cooldown_s=args.scale_out_cooldown,
                    min_capacity=args.min_capacity, max_capacity=args.max_capacity)
    run = simulate(demand, policy, fleet)
    plot = plot_simulation(run, args.plot or args.traffic.with_suffix(".png"),
                           f"{args.traffic.stem}: target {target:g}, cooldowns "
                           f"in {policy.scale_in_cooldown_s}s / out {policy.scale_out_cooldown_s}s")
    result = {**run.to_dict(), "traffic": str(args.traffic), "plot": str(plot)}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    summary = result["summary"]
    print(f"traffic {args.traffic}: {summary['minutes']} min, {summary['requests']} requests; "
          f"capacity {fleet.capacity_rpm:g} req/min/instance; target {target:g}")
    for event in run.events:
        print(f"  minute {event.minute:5d}: {event.action:9s} {event.from_instances} -> "
              f"{event.to_instances}")
    print(f"instance-hours {summary['instance_hours']:.2f} (ideal "
          f"{summary['ideal_instance_hours']:.2f}), peak {summary['peak_instances']} instances, "
          f"above capacity {summary['share_above_capacity']:.2%} of requests")
    print(f"plot: {plot}")
    return 0


def sweep_command(args: argparse.Namespace) -> int:
    from breedops.autoscale.simulator import Policy, sweep
    from breedops.autoscale.traffic import read_traffic

    curves = {path.stem: read_traffic(path) for path in args.traffic}
    targets = _numbers(args.targets, float, "--targets")
    cooldowns = _numbers(args.cooldowns, int, "--cooldowns")
    if not targets or not cooldowns:
        raise ConfigurationError("--targets and --cooldowns need at least one value each")
    base = Policy(target=1, min_capacity=args.min_capacity, max_capacity=args.max_capacity)
    rows = sweep(curves, _fleet(args), targets, cooldowns, base)
    print(f"{'curve':12s} {'target':>7s} {'in_s':>5s} {'out_s':>5s} {'inst-h':>7s} "
          f"{'ideal':>6s} {'above':>7s} {'outs':>4s} {'ins':>4s}")
    for row in rows:
        print(f"{row['curve']:12s} {row['target']:7g} {row['scale_in_cooldown_s']:5d} "
              f"{row['scale_out_cooldown_s']:5d} {row['instance_hours']:7.2f} "
              f"{row['ideal_instance_hours']:6.2f} {row['share_above_capacity']:7.2%} "
              f"{row['scale_outs']:4d} {row['scale_ins']:4d}")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(rows, indent=2))
    return 0


def traffic_command(args: argparse.Namespace) -> int:
    from breedops.autoscale.traffic import write_example_curves

    for path in write_example_curves(args.out):
        print(path)
    return 0
