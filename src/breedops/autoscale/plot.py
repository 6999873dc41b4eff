"""The PNG of a simulation: demand against capacity, and instances over time."""

from __future__ import annotations

from pathlib import Path

from breedops.autoscale.simulator import Simulation


def plot_simulation(run: Simulation, path: Path, title: str) -> Path:
    """Two panels sharing the time axis; written with the non-interactive backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = range(len(run.demand_rpm))
    capacity = [n * run.fleet.capacity_rpm for n in run.in_service]
    fig, (load_ax, count_ax) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    load_ax.plot(minutes, run.demand_rpm, label="requests / minute", color="tab:blue")
    load_ax.step(minutes, capacity, where="post", label="in-service capacity",
                 color="tab:green")
    load_ax.fill_between(minutes, capacity, run.demand_rpm, step="post", color="tab:red",
                         alpha=0.3, where=[d > c for d, c in zip(run.demand_rpm, capacity)],
                         label="above capacity")
    load_ax.set_ylabel("requests per minute")
    load_ax.legend(loc="upper left")
    load_ax.set_title(title)
    count_ax.step(minutes, run.billed, where="post", label="billed (incl. provisioning)",
                  color="tab:orange")
    count_ax.step(minutes, run.in_service, where="post", label="in service", color="tab:green")
    count_ax.set_ylabel("instances")
    count_ax.set_xlabel("minute")
    count_ax.legend(loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
