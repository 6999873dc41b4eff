"""torchvision ResNets with a new classification head for the dataset's classes."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where a model is built: the names alone stay cheap
    import torch
    from torch import nn

ARCHITECTURES = ("resnet18", "resnet34", "resnet50")


class ModelingError(ValueError):
    """A model cannot be built as asked (unknown architecture, weights unreachable)."""


def build_model(arch: str, num_classes: int, pretrained: bool = False) -> nn.Module:
    """Build `arch` with a fresh `num_classes`-way head.

    With `pretrained`, the ImageNet weights come through torchvision's weights API (downloaded
    once into the torch hub cache); only the head is new.
    """
    if arch not in ARCHITECTURES:
        raise ModelingError(
            f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}"
        )
    if num_classes < 2:
        raise ModelingError(f"a classifier needs at least 2 classes, got {num_classes}")
    from torch import nn
    from torchvision import models

    weights = models.get_model_weights(arch).DEFAULT if pretrained else None
    try:
        model = models.get_model(arch, weights=weights)
    except (OSError, RuntimeError) as e:  # URLError is an OSError; hub checks raise RuntimeError
        raise ModelingError(
            f"could not fetch pretrained {arch} weights ({e}); the machine may be offline: "
            "pre-populate the torch hub cache ($TORCH_HOME) or train with --pretrained false"
        ) from e
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


def count_parameters(model: nn.Module) -> int:
    """The number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def load_model(checkpoint: dict, device: torch.device | str = "cpu") -> nn.Module:
    """Rebuild the model saved in a `model.pth` dict and put it in eval mode on `device`."""
    model = build_model(checkpoint["arch"], int(checkpoint["num_classes"]), pretrained=False)
    model.load_state_dict(checkpoint["state_dict"])
    return model.to(device).eval()
