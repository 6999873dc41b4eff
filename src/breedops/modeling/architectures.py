"""torchvision ResNets with a new classification head for the dataset's classes."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where a model is built: the names alone stay cheap
    import torch
    from torch import nn

ARCHITECTURES = ("resnet18", "resnet34", "resnet50")


class ModelingError(ValueError):
    """A model cannot be built as asked (unknown architecture, weights unreachable)."""


def build_model(arch: str, num_classes: int, pretrained: bool = False,
                weights_file: Path | None = None) -> nn.Module:
    """Build `arch` with a fresh `num_classes`-way head.

    With `pretrained`, the body starts from ImageNet weights: those of `weights_file` (a
    torchvision state_dict saved with `torch.save`) when given, else torchvision's best for the
    architecture (`ResNet50_Weights.IMAGENET1K_V2` for resnet50), downloaded once into the
    torch hub cache. Only the head is new.
    """
    if arch not in ARCHITECTURES:
        raise ModelingError(
            f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}"
        )
    if num_classes < 2:
        raise ModelingError(f"a classifier needs at least 2 classes, got {num_classes}")
    if weights_file is not None and not pretrained:
        raise ModelingError(f"a weights file ({weights_file}) is given but pretrained is false: "
                            "pass --pretrained true to start from it")
    from torch import nn
    from torchvision import models

    model = models.get_model(arch, weights=None)
    if pretrained:
        state = (_read_weights(weights_file) if weights_file is not None
                 else _download_weights(arch))
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            raise ModelingError(f"the pretrained weights do not fit {arch}: "
                                f"{str(e).splitlines()[0]}") from e
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


def weights_file(path: str | None) -> Path | None:
    """The weights file `path` names: a file, or the one file in a folder (a job's channel)."""
    if not path:
        return None
    location = Path(path)
    if location.is_dir():
        files = sorted(f for f in location.iterdir() if f.is_file())
        if len(files) != 1:
            raise ModelingError(f"the weights folder {location} holds {len(files)} files, "
                                "not one weights file")
        return files[0]
    if not location.is_file():
        raise ModelingError(f"the weights file {location} does not exist")
    return location


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    import torch

    try:  # tensors and plain data only: a weights file runs no code
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as e:
        raise ModelingError(f"cannot read the weights file {path} as a state_dict "
                            f"({str(e).splitlines()[0] if str(e) else e!r})") from e


def _download_weights(arch: str) -> dict[str, torch.Tensor]:
    from torchvision import models

    weights = models.get_model_weights(arch).DEFAULT
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except (OSError, RuntimeError) as e:  # URLError is an OSError; hash checks raise RuntimeError
        raise ModelingError(
            f"cannot download the pretrained {arch} weights {weights} ({e}); the machine may be "
            f"offline: download {weights.url} elsewhere and pass the file with --weights FILE "
            "(make apply: WEIGHTS=FILE)") from e


def count_parameters(model: nn.Module) -> int:
    """The number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def load_model(checkpoint: dict, device: torch.device | str = "cpu") -> nn.Module:
    """Rebuild the model saved in a `model.pth` dict and put it in eval mode on `device`."""
    model = build_model(checkpoint["arch"], int(checkpoint["num_classes"]), pretrained=False)
    model.load_state_dict(checkpoint["state_dict"])
    return model.to(device).eval()
