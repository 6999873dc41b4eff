"""The training entry point on tiny data on the CPU, run as the job backends run it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from breedops.jobs.metrics import parse_metrics
from breedops.training.train import CHECKPOINT_FILE, EXIT_STOPPED, EXIT_USAGE

SRC = Path(__file__).resolve().parents[2] / "src"
FAST = ["--image-size", "16", "--threads", "1", "--seed", "0"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    return {**env, **extra}


def _train(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "breedops.training.train", *args],
                          env=_env(), capture_output=True, text=True, timeout=300, check=False,
                          **kwargs)


@pytest.mark.slow
def test_train_digits_loss_falls_and_beats_chance(digits_dir: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    result = _train(["--data-dir", str(digits_dir), "--model-dir", str(model_dir),
                     "--output-data-dir", str(tmp_path / "output"), "--epochs", "2", *FAST])
    assert result.returncode == 0, result.stdout + result.stderr
    metrics = parse_metrics(result.stdout)
    assert len(metrics["train_loss"]) == 2
    assert metrics["train_loss"][1] < metrics["train_loss"][0]
    assert metrics["test_accuracy"][-1] > 0.3  # 10 classes: chance is 0.1
    # The serving layout (contract 3) and the outputs beside the model.
    saved = torch.load(model_dir / "model.pth", weights_only=True)
    assert (saved["arch"], saved["num_classes"], saved["image_size"]) == ("resnet18", 10, 16)
    assert json.loads((model_dir / "labels.json").read_text()) == [str(i) for i in range(10)]
    assert (model_dir / "code" / "inference.py").is_file()
    assert (model_dir / "code" / "breedops" / "modeling" / "transforms.py").is_file()
    outputs = json.loads((tmp_path / "output" / "metrics.json").read_text())
    assert outputs["test"]["test_accuracy"] == pytest.approx(metrics["test_accuracy"][-1],
                                                             abs=1e-4)
    assert (tmp_path / "output" / "training_curves.png").stat().st_size > 0
    assert (tmp_path / "output" / "confusion_matrix.png").stat().st_size > 0


@pytest.mark.slow
def test_train_sigterm_then_resume_continues_from_checkpoint_epoch(
    digits_dir: Path, tmp_path: Path
) -> None:
    args = ["--data-dir", str(digits_dir), "--model-dir", str(tmp_path / "model"),
            "--checkpoint-dir", str(tmp_path / "ckpt"), "--epochs", "2", "--batch-size", "32",
            *FAST]
    proc = subprocess.Popen([sys.executable, "-m", "breedops.training.train", *args],
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    for line in proc.stdout:
        if "epoch=1;" in line:
            proc.send_signal(signal.SIGTERM)  # mid-way into epoch 2
            break
    rest = proc.stdout.read()
    assert proc.wait(timeout=120) == EXIT_STOPPED, rest
    assert "epoch=2;" not in rest
    checkpoint = torch.load(tmp_path / "ckpt" / CHECKPOINT_FILE, weights_only=False)
    assert checkpoint["epoch"] == 1
    assert not (tmp_path / "model" / "model.pth").exists()

    resumed = _train(args)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming from" in resumed.stdout and "at epoch 2" in resumed.stdout
    epochs = [int(v) for v in parse_metrics_epochs(resumed.stdout)]
    assert epochs == [2]
    assert torch.load(tmp_path / "ckpt" / CHECKPOINT_FILE, weights_only=False)["epoch"] == 2


def parse_metrics_epochs(log: str) -> list[str]:
    import re

    return re.findall(r"epoch=(\d+);", log)


@pytest.mark.slow
def test_ddp_two_gloo_processes_see_disjoint_halves_with_identical_weights(
    digits_dir: Path, tmp_path: Path
) -> None:
    from breedops.jobs.local_backend import free_port

    port = str(free_port())
    worker = Path(__file__).with_name("ddp_worker.py")
    procs = [subprocess.Popen(
        [sys.executable, str(worker), str(digits_dir / "train"), str(tmp_path)],
        env=_env(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                 MASTER_PORT=port, OMP_NUM_THREADS="1"),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for rank in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    first, second = (set(r["indices"]) for r in ranks)
    assert not first & second
    assert len(first) == len(second) == 1437 // 2
    for name, value in ranks[0]["parameters"].items():
        assert torch.equal(value, ranks[1]["parameters"][name]), name


@pytest.mark.parametrize(("extra", "message"), [
    (["--arch", "vgg11"], "invalid choice: 'vgg11'"),
    (["--lr", "0"], "must be positive"),
    (["--lr", "-0.1"], "must be positive"),
    (["--pretrained", "maybe"], "expected a boolean"),
])
def test_train_rejects_bad_hyperparameters(digits_dir: Path, tmp_path: Path, extra: list[str],
                                           message: str, capsys: pytest.CaptureFixture) -> None:
    from breedops.training.train import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--data-dir", str(digits_dir), "--model-dir", str(tmp_path / "m"), *extra])
    assert exit_info.value.code == EXIT_USAGE
    assert message in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_train_missing_channel_is_a_clear_error(digits_dir: Path, tmp_path: Path) -> None:
    result = _train(["--train", str(digits_dir / "train"), "--valid", str(tmp_path / "nope"),
                     "--test", str(digits_dir / "test"), "--model-dir", str(tmp_path / "m")])
    assert result.returncode == EXIT_USAGE
    assert "dataset split not found" in result.stdout
    assert not (tmp_path / "m").exists()


def test_train_without_data_flags_or_channels_is_a_usage_error(tmp_path: Path) -> None:
    result = _train(["--model-dir", str(tmp_path / "m")])
    assert result.returncode == EXIT_USAGE
    assert "no train data" in result.stderr
