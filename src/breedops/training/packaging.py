"""Write a model directory in the PyTorch serving container's layout (contract 3 of
docs/ARCHITECTURE.md).

`model.pth`, `labels.json`, `model.onnx` (the variant the endpoint serves, gated against the
eager model) and `code/`: the handler, `breedops.modeling`, and the serving runtime's wheels with
the `requirements.txt` that installs them offline. Everything is built in a staging folder and
moved in only once the gate has passed, so a failure leaves no half-written model.

Without the ONNX variant (`onnx=False`: an experiment whose model is compared, not served)
the directory is `model.pth`, `labels.json` and the handler's code, and serves eager.
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from torch import nn

from breedops.training import onnx_export, serving_runtime
from breedops.training.onnx_export import GateReport

LOG = logging.getLogger(__name__)

PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # .../breedops
INFERENCE_SOURCE = PACKAGE_ROOT / "serving" / "inference.py"
MODELING_SOURCE = PACKAGE_ROOT / "modeling"
# The model's code/ gets its own minimal package marker, not the repo's (which may grow imports).
CODE_PACKAGE_INIT = '"""The subset of breedops that the inference handler needs."""\n'
# Without a test split (a model made outside training), the gate runs on seeded noise images.
SYNTHETIC_GATE_BATCHES = 4
SYNTHETIC_GATE_BATCH_SIZE = 8


class PackagingError(RuntimeError):
    """The model directory could not be written; nothing was left in it."""


def write_model_dir(model_dir: Path, model: nn.Module, *, arch: str, classes: list[str],
                    image_size: int, model_version: str,
                    gate_batches: Iterable[torch.Tensor] | None = None,
                    tolerance: float = onnx_export.MAX_PROBABILITY_DELTA,
                    serving_python: str = serving_runtime.ENDPOINT_PYTHON,
                    onnx: bool = True) -> GateReport | None:
    """Write the model directory; return the ONNX gate's figures (None with `onnx=False`).

    `gate_batches` are image tensors (N, 3, image_size, image_size) in the evaluation
    transform's form: the test split. Raises `PackagingError` with the figures when the ONNX
    export answers differently from the eager model, or when a step fails.
    """
    model = copy.deepcopy(model).float().cpu().eval()  # the trained model stays as it was
    if onnx and gate_batches is None:
        LOG.warning("no test split given: the ONNX gate runs on %d synthetic images",
                    SYNTHETIC_GATE_BATCHES * SYNTHETIC_GATE_BATCH_SIZE)
        gate_batches = synthetic_batches(image_size)
    with tempfile.TemporaryDirectory(prefix="breedops-model-") as staging_name:
        staging = Path(staging_name)
        report = None
        try:
            if onnx:
                report = onnx_export.export_gated(model, staging / onnx_export.ONNX_FILE,
                                                  image_size, gate_batches, tolerance=tolerance)
            write_code_dir(staging / "code", serving_python=serving_python,
                           vendor=onnx)
        except onnx_export.OnnxExportError as e:
            raise PackagingError(f"packaging {arch} failed: {e}") from e
        state_dict = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        torch.save(
            {"arch": arch, "num_classes": len(classes), "image_size": int(image_size),
             "model_version": str(model_version), "state_dict": state_dict},
            staging / "model.pth",
        )
        (staging / "labels.json").write_text(json.dumps(classes))
        model_dir.mkdir(parents=True, exist_ok=True)
        for entry in sorted(staging.iterdir()):
            target = model_dir / entry.name
            if target.is_dir():
                shutil.rmtree(target)
            shutil.move(str(entry), target)
    return report


def write_code_dir(code_dir: Path, *, serving_python: str = serving_runtime.ENDPOINT_PYTHON,
                   vendor: bool = True) -> None:
    """Copy the serving handler and the modeling package into `code/`, and with `vendor` the
    serving runtime's wheels."""
    if not INFERENCE_SOURCE.is_file():
        raise FileNotFoundError(f"the serving handler is missing: {INFERENCE_SOURCE}")
    modeling_target = code_dir / "breedops" / "modeling"
    modeling_target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(INFERENCE_SOURCE, code_dir / "inference.py")
    (code_dir / "breedops" / "__init__.py").write_text(CODE_PACKAGE_INIT)
    for source in sorted(MODELING_SOURCE.glob("*.py")):
        shutil.copy2(source, modeling_target / source.name)
    if not vendor:
        return
    try:
        serving_runtime.vendor_runtime(code_dir, python_version=serving_python)
    except serving_runtime.VendoringError as e:
        # A trained model is never lost over a speed-up: without the wheels (a training
        # instance with no package index) the artifact ships without them, and the endpoint's
        # handler, finding no onnxruntime, serves model.pth eager and says so.
        shutil.rmtree(code_dir / serving_runtime.LIB_DIR, ignore_errors=True)
        (code_dir / serving_runtime.REQUIREMENTS_FILE).unlink(missing_ok=True)
        LOG.warning("the serving runtime is not vendored, so endpoints with network isolation "
                    "will serve model.pth eager: %s", e)


def synthetic_batches(image_size: int) -> Iterator[torch.Tensor]:
    """Seeded normal noise, the scale of normalised images."""
    generator = torch.Generator().manual_seed(0)
    for _ in range(SYNTHETIC_GATE_BATCHES):
        yield torch.randn(SYNTHETIC_GATE_BATCH_SIZE, 3, image_size, image_size,
                          generator=generator)


def image_batches(loader: Iterable) -> Iterator[torch.Tensor]:
    """The images of an (images, labels) loader, as the gate takes them."""
    for images, _labels in loader:
        yield images
