"""PNG plots and the BENCHMARKS.md summary of one results file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# The (scale-in, scale-out) cooldowns whose rows the summary shows; the JSON has every one.
SHOWN_COOLDOWNS = (300, 60)
REPRODUCE = "make bench            # or: python -m breedops bench run [--quick]"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_plots(results: dict[str, Any], out: Path, stamp: str) -> dict[str, Path]:
    """One PNG per measured section that has figures; returns them by name."""
    plt = _pyplot()
    plots: dict[str, Path] = {}
    throughput = results.get("endpoint_throughput", {})
    if throughput.get("levels"):
        levels = throughput["levels"]
        clients = [level["concurrency"] for level in levels]
        fig, rps_ax = plt.subplots(figsize=(7, 4))
        rps_ax.plot(clients, [level["achieved_rps"] for level in levels], "o-", color="tab:blue")
        rps_ax.set_xscale("log", base=2)
        rps_ax.set_xlabel("concurrent clients")
        rps_ax.set_ylabel("requests / s", color="tab:blue")
        p99_ax = rps_ax.twinx()
        p99_ax.plot(clients, [level["latency_ms"]["p99"] for level in levels], "s--",
                    color="tab:red")
        p99_ax.axhline(throughput["p99_bound_ms"], color="tab:red", alpha=0.3)
        p99_ax.set_ylabel("p99 latency (ms)", color="tab:red")
        rps_ax.set_title(f"one endpoint instance, {throughput['arch']} at "
                         f"{throughput['image_size']} px")
        plots["throughput"] = _save(fig, out / f"{stamp}-throughput.png", plt)
    serving = results.get("serving", {}).get("architectures", {})
    if serving:
        fig, ax = plt.subplots(figsize=(8, 4))
        width = 0.8 / len(serving)
        paths: list[str] = []
        for i, (arch, figures) in enumerate(serving.items()):
            latencies = _latencies(figures)
            paths = paths or list(latencies)
            ax.bar([x + i * width for x in range(len(paths))],
                   [latencies.get(path, {}).get("p50_ms", 0) for path in paths], width,
                   label=arch)
        ax.set_xticks([x + width * (len(serving) - 1) / 2 for x in range(len(paths))],
                      [path.replace("_", "\n") for path in paths])
        ax.set_ylabel("p50 latency (ms)")
        ax.legend()
        plots["latency"] = _save(fig, out / f"{stamp}-latency.png", plt)
    runs = results.get("training", {}).get("runs") or []
    if runs:
        fig, ax = plt.subplots(figsize=(7, 4))
        labels = [f"{r['arch']}\n{r['processes']} proc" for r in runs]
        ax.bar(labels, [r["images_per_second"] for r in runs], color="tab:green")
        ax.set_ylabel("training images / s")
        plots["training"] = _save(fig, out / f"{stamp}-training.png", plt)
    return plots


def _save(fig, path: Path, plt) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _error(section: dict[str, Any] | None) -> str | None:
    if section is None:
        return "not measured"
    return section.get("error")


def write_markdown(results: dict[str, Any], plots: dict[str, Path], results_path: Path,
                   target: Path) -> Path:
    """The human summary: machine, versions, figures, and how to reproduce them."""
    lines = ["# Benchmarks", "",
             (f"Measured {results['date']} ({results['plan']} plan, "
             f"{results.get('total_seconds', 0):.0f} s). Raw figures: "
             f"[`{results_path.name}`](results/{results_path.name}). Reproduce with:"), "",
             "```", REPRODUCE, "```", "", "## Machine", ""]
    lines += [f"- {key}: {value}" for key, value in results["machine"].items()]
    lines += _busy_warning(results["machine"])
    lines += _serving_lines(results.get("serving"))
    lines += _throughput_lines(results.get("endpoint_throughput"))
    lines += _speedup_lines(results.get("speedups"))
    lines += _training_lines(results.get("training"))
    lines += _autoscaling_lines(results.get("autoscaling"))
    if plots:
        lines += ["", "## Plots", ""]
        lines += [f"![{name}](results/{path.name})" for name, path in plots.items()]
    target.write_text("\n".join(lines) + "\n")
    return target


def _busy_warning(machine: dict[str, Any]) -> list[str]:
    """Say so when other work shared the cores: every figure is then pessimistic and noisy."""
    cores = machine.get("cpu_count") or 1
    load = max(machine.get("load_average_1m_at_start") or 0,
               machine.get("load_average_1m_at_end") or 0)
    if load <= cores:
        return []
    return ["", (f"**Warning:** the machine was busy with other work (1-minute load average up "
            f"to {load} on {cores} cores), so these figures are pessimistic and noisy. Re-run "
            "`make bench` on an idle machine before acting on them.")]


def _latencies(figures: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The serving benchmark's latency entries: every figure with a p50."""
    return {name: value for name, value in figures.items()
            if isinstance(value, dict) and "p50_ms" in value}


def _serving_lines(section: dict[str, Any] | None) -> list[str]:
    lines = ["", "## Inference latency (one request at a time)", ""]
    if error := _error(section):
        return [*lines, f"Not available: {error}"]
    lines += [f"Image {section['image_size']} px JPEG, {section['requests']} requests per path.",
              "", "| arch | path | p50 ms | p90 ms | p99 ms |", "|---|---|---:|---:|---:|"]
    for arch, figures in section["architectures"].items():
        for path, latency in _latencies(figures).items():
            lines.append(f"| {arch} | {path} | {latency['p50_ms']} | "
                         f"{latency.get('p90_ms', '-')} | {latency['p99_ms']} |")
    lines += ["", "| arch | figure | value |", "|---|---|---:|"]
    for arch, figures in section["architectures"].items():
        lines += [f"| {arch} | {name} | {value} |" for name, value in figures.items()
                  if not isinstance(value, dict)]
    return lines


def _throughput_lines(section: dict[str, Any] | None) -> list[str]:
    lines = ["", "## Endpoint throughput against concurrency (one instance)", ""]
    if error := _error(section):
        return [*lines, f"Not available: {error}"]
    lines += [(f"{section['arch']} at {section['image_size']} px, closed loop, "
              f"best of {section.get('windows_per_level', 1)} windows of "
              f"{section['seconds_per_level']:g} s per level; bound: zero errors and p99 <= "
              f"{section['p99_bound_ms']:g} ms."), "",
              "| clients | req/s | p50 ms | p90 ms | p99 ms | errors |",
              "|---:|---:|---:|---:|---:|---:|"]
    for level in section["levels"]:
        latency = level["latency_ms"]
        lines.append(f"| {level['concurrency']} | {level['achieved_rps']} | {latency['p50']} | "
                     f"{latency['p90']} | {latency['p99']} | {level['errors']} |")
    if section.get("max_rps"):
        lines += ["", (f"Max sustained: **{section['max_rps']} req/s** at "
                  f"{section['at_concurrency']} clients. Recommended "
                  f"`SageMakerVariantInvocationsPerInstance` target = {section['max_rps']} x "
                  f"{section['safety_factor']} x 60 = **{section['recommended_target']}**:"),
                  "", "```hcl",
                  ("endpoint_autoscaling = { target_invocations_per_instance = "
                  f"{section['recommended_target']} }}"), "```"]
    else:
        lines += ["", ("No level met the bound: no target can be recommended from this run "
                  f"(best throughput at any latency: {section.get('max_rps_any_latency')} "
                  "req/s).")]
    return lines


def _speedup_lines(section: dict[str, Any] | None) -> list[str]:
    lines = ["", "## Serving speed-ups against eager", ""]
    if error := _error(section):
        return [*lines, f"Not available: {error}"]
    lines += [("| arch | variant | ms / image | p90 ms / call | speed-up | max prob. diff | "
              "same top-1 | adopt |"), "|---|---|---:|---:|---:|---:|---|---|"]
    for arch, figures in section.items():
        for name, v in figures["variants"].items():
            lines.append(f"| {arch} | {name} | {v['ms_per_image']} | "
                         f"{v.get('p90_ms_per_call', '-')} | {v['speedup']} | "
                         f"{v['max_probability_diff']:.1e} | {v['same_top1']} | "
                         f"{'yes' if v['adopt'] else 'no'} |")
    notes = {name: v["note"] for figures in section.values()
             for name, v in figures["variants"].items() if v.get("note")}
    if notes:
        lines += ["", *(f"- {name}: {note}." for name, note in notes.items())]
    first = next(iter(section.values()))
    lines += ["", (f"Adopt = equal within {first['tolerance']:g} (probabilities) with the same "
              f"top-1, and at least {first['adopt_margin']:.0%} less time per image.")]
    return lines


def _training_lines(section: dict[str, Any] | None) -> list[str]:
    lines = ["", "## Training throughput", ""]
    if error := _error(section):
        return [*lines, f"Not available: {error}"]
    lines += ["| arch | processes | threads each | images/s | wall s |",
              "|---|---:|---:|---:|---:|"]
    for run in section["runs"]:
        lines.append(f"| {run['arch']} | {run['processes']} | {run['threads_per_process']} | "
                     f"{run['images_per_second']} | {run['wall_s']} |")
    if tuning := section.get("tuning"):
        lines += ["", (f"Tuning job: {tuning['max_jobs']} trials, {tuning['max_parallel_jobs']} "
                  f"in parallel, {tuning['epochs']} epoch each: **{tuning['wall_s']} s** wall "
                  f"time (best valid_loss {tuning['best_valid_loss']}).")]
    return lines


def _autoscaling_lines(section: dict[str, Any] | None) -> list[str]:
    lines = ["", "## Autoscaling policy on the shipped traffic curves", ""]
    if error := _error(section):
        return [*lines, f"Not available: {error}"]
    lines += [(f"Capacity {section['capacity_rps']} req/s per instance, new instances serve "
              f"after {section['provisioning_minutes']} min, at most "
              f"{section['max_capacity']} instances; cooldowns in {SHOWN_COOLDOWNS[0]} s / out "
              f"{SHOWN_COOLDOWNS[1]} s (the module's defaults); "
              "`breedops autoscale sweep` prints every combination."), "",
              "| curve | target | instance-h | ideal h | above capacity | peak instances |",
              "|---|---:|---:|---:|---:|---:|"]
    for row in section["rows"]:
        if (row["scale_in_cooldown_s"], row["scale_out_cooldown_s"]) != SHOWN_COOLDOWNS:
            continue
        lines.append(f"| {row['curve']} | {row['target']:g} | {row['instance_hours']:.1f} | "
                     f"{row['ideal_instance_hours']:.1f} | {row['share_above_capacity']:.2%} | "
                     f"{row['peak_instances']} |")
    return lines
