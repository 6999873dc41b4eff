"""The model's ONNX variant: exported with torch's dynamo exporter and gated against eager.

The endpoint serves `model.onnx` through ONNX Runtime when the artifact has one, so the export
ships only if it answers as the eager model does on every image of the gate set (the test
split): the same top-1 class, and no class probability off by more than `MAX_PROBABILITY_DELTA`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

LOG = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
INPUT_NAME = "image"
OUTPUT_NAME = "logits"
# Measured on resnet18/50 at 224 px: max |logit delta| 3e-5; 1e-4 in probability leaves room.
MAX_PROBABILITY_DELTA = 1e-4
# The opset the exporter's ONNX Runtime 1.2x/1.3x targets all run.
OPSET_VERSION = 18
NOISY_LOGGERS = ("onnxscript", "onnx_ir")


class OnnxExportError(RuntimeError):
    """The model could not be exported, or its export answers differently from eager."""


@dataclass(frozen=True)
class GateReport:
    """How the ONNX Runtime answers compared with eager over the gate images."""

    images: int
    top1_mismatches: int
    max_probability_delta: float
    max_logit_delta: float
    tolerance: float

    @property
    def passed(self) -> bool:
        return (self.images > 0 and self.top1_mismatches == 0
                and self.max_probability_delta <= self.tolerance)

    def describe(self) -> str:
        return (f"{self.images} images: top-1 differs on {self.top1_mismatches}, "
                f"max |delta probability| {self.max_probability_delta:.3g} "
                f"(limit {self.tolerance:.3g}), max |delta logit| {self.max_logit_delta:.3g}")


def export_onnx(model: nn.Module, path: Path, image_size: int) -> None:
    """Write `model` as ONNX to `path`: one float32 NCHW input, the batch axis dynamic."""
    try:
        import onnxscript  # noqa: F401  (the dynamo exporter's dependency: a clear error first)
    except ImportError as e:
        raise OnnxExportError(
            "the ONNX export needs the onnx and onnxscript packages (see requirements.lock)"
        ) from e
    for chatty in NOISY_LOGGERS:  # one INFO line per optimizer pass is noise in a job's log
        logging.getLogger(chatty).setLevel(logging.WARNING)
    model = model.eval()
    example = torch.zeros(2, 3, image_size, image_size)
    batch = torch.export.Dim("batch", min=1, max=1024)
    try:
        program = torch.onnx.export(
            model, (example,), dynamo=True, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            opset_version=OPSET_VERSION, dynamic_shapes=({0: batch},), verbose=False)
        program.save(str(path), external_data=False)  # one self-contained file
    except Exception as e:  # the exporter raises many types; the cause stays chained
        raise OnnxExportError(f"torch.onnx.export (dynamo) failed: {e}") from e


def runtime_session(path: Path, threads: int):
    """An ONNX Runtime CPU session with `threads` intra-op threads, as the handler opens it."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as inference.py
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def compare(model: nn.Module, path: Path, batches: Iterable[torch.Tensor], *,
            tolerance: float = MAX_PROBABILITY_DELTA, threads: int | None = None) -> GateReport:
    """Run every batch through eager and through ONNX Runtime; measure how they differ."""
    session = runtime_session(path, threads or torch.get_num_threads())
    model = model.eval()
    images = mismatches = 0
    max_probability = max_logit = 0.0
    with torch.inference_mode():
        for batch in batches:
            batch = batch.float().cpu().contiguous()
            eager = model(batch)
            runtime = torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: batch.numpy()})[0])
            images += len(batch)
            mismatches += int((eager.argmax(dim=1) != runtime.argmax(dim=1)).sum())
            max_logit = max(max_logit, float((eager - runtime).abs().max()))
            max_probability = max(max_probability, float(
                (torch.softmax(eager, dim=1) - torch.softmax(runtime, dim=1)).abs().max()))
    return GateReport(images=images, top1_mismatches=mismatches,
                      max_probability_delta=max_probability, max_logit_delta=max_logit,
                      tolerance=tolerance)


def export_gated(model: nn.Module, path: Path, image_size: int,
                 batches: Iterable[torch.Tensor], *,
                 tolerance: float = MAX_PROBABILITY_DELTA) -> GateReport:
    """Export to `path` and keep it only if it passes the gate; else raise with the figures."""
    export_onnx(model, path, image_size)
    report = compare(model, path, batches, tolerance=tolerance)
    if not report.passed:
        path.unlink(missing_ok=True)
        raise OnnxExportError(f"the ONNX export answers differently from the eager model on "
                              f"the gate set ({report.describe()}); not packaging it")
    LOG.info("ONNX gate passed: %s", report.describe())
    return report
