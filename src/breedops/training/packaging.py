"""Write a model directory in the PyTorch serving container's layout (DESIGN contract 3)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from torch import nn

PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # .../breedops
INFERENCE_SOURCE = PACKAGE_ROOT / "serving" / "inference.py"
MODELING_SOURCE = PACKAGE_ROOT / "modeling"
# The model's code/ gets its own minimal package marker, not the repo's (which may grow imports).
CODE_PACKAGE_INIT = '"""The subset of breedops that the inference handler needs."""\n'


def write_model_dir(model_dir: Path, model: nn.Module, *, arch: str, classes: list[str],
                    image_size: int, model_version: str) -> None:
    """Write `model.pth`, `labels.json` and `code/` (handler plus `breedops.modeling`)."""
    model_dir.mkdir(parents=True, exist_ok=True)
    state_dict = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    torch.save(
        {"arch": arch, "num_classes": len(classes), "image_size": int(image_size),
         "model_version": str(model_version), "state_dict": state_dict},
        model_dir / "model.pth",
    )
    (model_dir / "labels.json").write_text(json.dumps(classes))
    write_code_dir(model_dir / "code")


def write_code_dir(code_dir: Path) -> None:
    """Copy the serving handler and the modeling package into `code/`."""
    if not INFERENCE_SOURCE.is_file():
        raise FileNotFoundError(f"the serving handler is missing: {INFERENCE_SOURCE}")
    modeling_target = code_dir / "breedops" / "modeling"
    modeling_target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(INFERENCE_SOURCE, code_dir / "inference.py")
    (code_dir / "breedops" / "__init__.py").write_text(CODE_PACKAGE_INIT)
    for source in sorted(MODELING_SOURCE.glob("*.py")):
        shutil.copy2(source, modeling_target / source.name)
