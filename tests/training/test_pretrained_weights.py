"""Pretrained weights: from a file (--weights, or a job's weights channel) or torchvision's
download, with one clear line when the download cannot happen."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torchvision import models

from breedops.modeling.architectures import ModelingError, build_model, weights_file
from breedops.training.train import EXIT_USAGE

SRC = Path(__file__).resolve().parents[2] / "src"
FAST = ["--image-size", "16", "--threads", "1", "--epochs", "1", "--batch-size", "16",
        "--onnx", "false"]


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ImageNet-shaped resnet18 state_dict, saved as torchvision's weights files are."""
    torch.manual_seed(1234)
    path = tmp_path_factory.mktemp("weights") / "resnet18-imagenet.pth"
    torch.save(models.resnet18(num_classes=1000).state_dict(), path)
    return path


def _train(args: list[str], **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
    environment["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(SRC), environment.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "breedops.training.train", *args],
                          env={**environment, **env}, capture_output=True, text=True,
                          timeout=300, check=False)


def test_build_model_starts_from_the_files_weights_with_a_new_head(resnet18_file: Path) -> None:
    saved = torch.load(resnet18_file, weights_only=True)

    model = build_model("resnet18", 3, pretrained=True, weights_file=resnet18_file)

    assert torch.equal(model.conv1.weight, saved["conv1.weight"])
    assert torch.equal(model.layer4[1].bn2.running_var, saved["layer4.1.bn2.running_var"])
    assert model.fc.out_features == 3
    fresh = build_model("resnet18", 3)
    assert not torch.equal(fresh.conv1.weight, saved["conv1.weight"])


def test_weights_of_another_architecture_are_a_clear_error(resnet18_file: Path) -> None:
    with pytest.raises(ModelingError, match="do not fit resnet34"):
        build_model("resnet34", 3, pretrained=True, weights_file=resnet18_file)


def test_a_weights_file_without_pretrained_is_refused(resnet18_file: Path) -> None:
    with pytest.raises(ModelingError, match="--pretrained true"):
        build_model("resnet18", 3, pretrained=False, weights_file=resnet18_file)


def test_a_weights_folder_must_hold_one_file(resnet18_file: Path, tmp_path: Path) -> None:
    assert weights_file(str(resnet18_file.parent)) == resnet18_file
    (tmp_path / "a.pth").write_bytes(b"")
    (tmp_path / "b.pth").write_bytes(b"")
    with pytest.raises(ModelingError, match="holds 2 files"):
        weights_file(str(tmp_path))
    with pytest.raises(ModelingError, match="does not exist"):
        weights_file(str(tmp_path / "missing.pth"))


@pytest.mark.slow
def test_entry_point_trains_from_the_weights_channel(resnet18_file: Path, tiny_digits_dir: Path,
                                                     tmp_path: Path) -> None:
    """SageMaker mounts the weights channel as a folder and names it in SM_CHANNEL_WEIGHTS; a
    vanishing learning rate leaves the loaded weights in the packaged model."""
    result = _train(["--data-dir", str(tiny_digits_dir), "--model-dir", str(tmp_path / "model"),
                     "--pretrained", "true", "--lr", "1e-9", "--weight-decay", "0", *FAST],
                    SM_CHANNEL_WEIGHTS=str(resnet18_file.parent))

    assert result.returncode == 0, result.stdout + result.stderr
    packaged = torch.load(tmp_path / "model" / "model.pth", weights_only=True)["state_dict"]
    saved = torch.load(resnet18_file, weights_only=True)
    assert torch.allclose(packaged["conv1.weight"], saved["conv1.weight"], atol=1e-6)
    assert packaged["fc.weight"].shape[0] == 10  # the digits' head, not ImageNet's


@pytest.mark.slow
def test_offline_download_is_one_line_that_names_the_weights_flag(tiny_digits_dir: Path,
                                                                  tmp_path: Path) -> None:
    """An empty hub cache and no reachable network (a proxy that refuses connections)."""
    result = _train(["--data-dir", str(tiny_digits_dir), "--model-dir", str(tmp_path / "model"),
                     "--pretrained", "true", *FAST],
                    TORCH_HOME=str(tmp_path / "hub"), HTTPS_PROXY="http://127.0.0.1:9",
                    https_proxy="http://127.0.0.1:9")

    assert result.returncode == EXIT_USAGE, result.stdout + result.stderr
    errors = [line for line in result.stdout.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "Traceback" not in result.stdout + result.stderr
    assert "cannot download the pretrained resnet18 weights" in errors[0]
    assert "--weights FILE" in errors[0] and "resnet18-" in errors[0]  # the URL's file
