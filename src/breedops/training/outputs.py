"""Outputs beside the model: metrics.json, training curves and a confusion matrix as PNG."""

from __future__ import annotations

import json
import logging
from pathlib import Path

LOG = logging.getLogger(__name__)
METRICS_FILE = "metrics.json"


def write_outputs(output_dir: Path, *, history: list[dict], confusion: list[list[int]],
                  classes: list[str], test: dict[str, float], hyperparameters: dict,
                  throughput: float, world_size: int) -> None:
    """Write metrics.json always, and the PNGs when matplotlib is installed."""
    output_dir.mkdir(parents=True, exist_ok=True)
    metrics = {"epochs": history, "test": test, "hyperparameters": hyperparameters,
               "images_per_second": throughput, "world_size": world_size,
               "classes": classes, "confusion_matrix": confusion}
    (output_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2))
    try:
        import matplotlib
    except ImportError:  # a slim training image: the metrics still carry everything
        LOG.warning("matplotlib is not installed; skipping the PNG plots")
        return
    matplotlib.use("Agg")
    _plot_curves(output_dir / "training_curves.png", history)
    _plot_confusion(output_dir / "confusion_matrix.png", confusion, classes)


def _plot_curves(path: Path, history: list[dict]) -> None:
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4))
    loss_ax.plot(epochs, [h["train_loss"] for h in history], marker="o", label="train")
    loss_ax.plot(epochs, [h["valid_loss"] for h in history], marker="o", label="valid")
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy loss", title="Loss")
    loss_ax.legend()
    acc_ax.plot(epochs, [h["valid_accuracy"] for h in history], marker="o", color="tab:green")
    acc_ax.set(xlabel="epoch", ylabel="accuracy", title="Validation accuracy", ylim=(0, 1))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_confusion(path: Path, confusion: list[list[int]], classes: list[str]) -> None:
    import matplotlib.pyplot as plt

    size = max(5, min(0.12 * len(classes), 30))
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(confusion, cmap="Blues")
    # Tick labels only while they stay legible (133 breeds would be a black smear).
    if len(classes) <= 30:
        ax.set_xticks(range(len(classes)), classes, rotation=90)
        ax.set_yticks(range(len(classes)), classes)
    ax.set(xlabel="predicted", ylabel="true", title="Confusion matrix (test)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
