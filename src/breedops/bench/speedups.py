"""Serving speed-ups measured against the plain eager model, with predictions compared.

Each variant runs the same network on the same inputs; a variant counts only when its class
probabilities stay within `TOLERANCE` of eager's and its top-1 classes are identical. A variant
is worth adopting when it is at least `ADOPT_MARGIN` faster per image.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

TOLERANCE = 1e-4  # max absolute difference of a softmax probability
ADOPT_MARGIN = 0.20  # at least 20 % less time per image
BATCH_SIZE = 8
# What the speed-up alone does not say.
NOTES = {"torchscript_frozen": "TorchScript is deprecated in torch 2.x (FutureWarning); its "
                               "successors are torch.export and torch.compile"}


def _interleaved_samples_ms(calls: dict[str, Callable[[], Any]], repeats: int,
                            warmup: int = 2) -> dict[str, list[float]]:
    """Time every variant once per round, round after round, so that whatever else runs on
    the machine meanwhile slows them all alike instead of whichever came first."""
    for call in calls.values():
        for _ in range(warmup):
            call()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            started = time.perf_counter()
            call()
            samples[name].append((time.perf_counter() - started) * 1000)
    return samples


def _nearest_rank(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1))]


def compare_variants(arch: str = "resnet18", image_size: int = 224, num_classes: int = 133,
                     repeats: int = 20) -> dict[str, Any]:
    """Per-image time and agreement with eager for each variant on this machine's device."""
    import torch

    from breedops.modeling.architectures import build_model

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    eager = build_model(arch, num_classes).eval().to(device)
    inputs = torch.randn(BATCH_SIZE, 3, image_size, image_size, device=device)
    one = inputs[:1]
    with torch.inference_mode(), warnings.catch_warnings():
        # TorchScript is deprecated in torch 2.x; it is measured as the baseline's alternative.
        warnings.simplefilter("ignore", FutureWarning)
        reference = torch.softmax(eager(inputs), dim=1)
        scripted = torch.jit.optimize_for_inference(torch.jit.freeze(
            torch.jit.trace(eager, one)))
    channels_last = build_model(arch, num_classes).eval().to(device)
    channels_last.load_state_dict(eager.state_dict())
    channels_last = channels_last.to(memory_format=torch.channels_last)

    def per_image(model: Callable, batch: torch.Tensor, threads: int = 0) -> Callable[[], Any]:
        def call() -> None:
            default = torch.get_num_threads()
            if threads:
                torch.set_num_threads(threads)
            try:
                with torch.inference_mode():
                    model(batch)
                    if device.type == "cuda":
                        torch.cuda.synchronize()
            finally:
                torch.set_num_threads(default)
        return call

    # name: (model, timed batch, checked batch, intra-op threads, 0 = torch's default)
    variants = {
        "eager": (eager, one, inputs, 0),
        # One thread per worker (and one worker per core) keeps its speed when the cores are
        # shared; several threads per worker stall on one another then.
        "eager_1_thread": (eager, one, inputs, 1),
        "channels_last": (channels_last, one.contiguous(memory_format=torch.channels_last),
                          inputs.contiguous(memory_format=torch.channels_last), 0),
        "torchscript_frozen": (scripted, one, inputs, 0),
        f"eager_batch{BATCH_SIZE}": (eager, inputs, inputs, 0),
    }
    calls = {name: per_image(model, timed, threads)
             for name, (model, timed, _, threads) in variants.items()}
    samples = _interleaved_samples_ms(calls, repeats)
    results: dict[str, Any] = {}
    for name, (model, timed, checked, _) in variants.items():
        with torch.inference_mode():
            probabilities = torch.softmax(model(checked), dim=1)
        difference = float((probabilities - reference).abs().max())
        same_top1 = bool((probabilities.argmax(1) == reference.argmax(1)).all())
        results[name] = {
            "ms_per_image": round(statistics.median(samples[name]) / len(timed), 2),
            "p90_ms_per_call": round(_nearest_rank(samples[name], 0.9), 2),
            "max_probability_diff": difference, "same_top1": same_top1,
            "equal_within_tolerance": same_top1 and difference <= TOLERANCE}
    baseline = results["eager"]["ms_per_image"]
    for name, figures in results.items():
        figures["speedup"] = round(baseline / figures["ms_per_image"], 2)
        figures["adopt"] = (name != "eager" and figures["equal_within_tolerance"]
                            and figures["ms_per_image"] <= baseline * (1 - ADOPT_MARGIN))
    logger.info("%s speed-ups: %s", arch,
                {k: v["speedup"] for k, v in results.items()})
    for name, note in NOTES.items():
        results[name]["note"] = note
    return {"arch": arch, "image_size": image_size, "device": device.type,
            "tolerance": TOLERANCE, "adopt_margin": ADOPT_MARGIN, "variants": results}
