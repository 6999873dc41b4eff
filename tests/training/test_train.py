"""The training entry point on tiny data on the CPU, run as the job backends run it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
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


def _train(args: list[str], env: dict[str, str] | None = None,
           **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "breedops.training.train", *args],
                          env=_env(**(env or {})), capture_output=True, text=True, timeout=300,
                          check=False, **kwargs)


def _train_ok(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`_train` that must succeed; its output is the failure message otherwise."""
    result = _train(args, env)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def _train_until_sigterm(args: list[str], env: dict[str, str] | None = None,
                         after: str = "epoch=1;") -> tuple[int, str]:
    """Train, SIGTERM the script once it logs `after`; (exit status, the rest of its log)."""
    proc = subprocess.Popen([sys.executable, "-m", "breedops.training.train", *args],
                            env=_env(**(env or {})), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    for line in proc.stdout:
        if after in line:
            proc.send_signal(signal.SIGTERM)
            break
    rest = proc.stdout.read()
    return proc.wait(timeout=120), rest


def _checkpoint(path: Path) -> dict:
    """A checkpoint as the script loads it: tensors and plain data only."""
    return torch.load(path, map_location="cpu", weights_only=True)


def _epochs(log: str) -> list[int]:
    return [int(epoch) for epoch in re.findall(r"epoch=(\d+);", log)]


def _tiny(data: Path, model: Path, *extra: str) -> list[str]:
    """Flags for a few-second run on the tiny digits (5 batches an epoch)."""
    return ["--data-dir", str(data), "--model-dir", str(model), "--batch-size", "16", *FAST,
            *extra]


@pytest.mark.slow
def test_train_digits_loss_falls_and_beats_chance(digits_dir: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    result = _train_ok(["--data-dir", str(digits_dir), "--model-dir", str(model_dir),
                        "--output-data-dir", str(tmp_path / "output"), "--epochs", "2", *FAST])
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
def test_train_sigterm_then_resume_continues_from_its_own_checkpoint(
    tiny_digits_dir: Path, tmp_path: Path
) -> None:
    # As SageMaker and the local emulator run it: the job name from TRAINING_JOB_NAME.
    env = {"TRAINING_JOB_NAME": "train-spot"}
    args = _tiny(tiny_digits_dir, tmp_path / "model", "--checkpoint-dir", str(tmp_path / "ckpt"),
                 "--epochs", "3")
    status, rest = _train_until_sigterm(args, env)  # mid-way into epoch 2 (or 3, if slow)
    assert status == EXIT_STOPPED, rest
    assert "epoch=3;" not in rest
    path = tmp_path / "ckpt" / "train-spot" / CHECKPOINT_FILE
    done = _checkpoint(path)["epoch"]
    assert done in (1, 2)
    assert not (tmp_path / "model" / "model.pth").exists()
    assert not (tmp_path / "ckpt" / CHECKPOINT_FILE).exists()

    # The interval is how the job runs, not what it trains: a resumption may change it.
    resumed = _train_ok([*args, "--checkpoint-interval", "0"], env)
    assert f"resuming from checkpoint {path} at epoch {done + 1}" in resumed.stdout
    assert _epochs(resumed.stdout) == list(range(done + 1, 4))
    saved = _checkpoint(path)
    assert (saved["epoch"], saved["job_name"]) == (3, "train-spot")
    assert [record["epoch"] for record in saved["history"]] == [1, 2, 3]
    # The fused optimizer, and it resumes fused (its state dict carries the setting).
    assert saved["optimizer"]["param_groups"][0]["fused"] is True
    assert torch.load(tmp_path / "model" / "model.pth",
                      weights_only=True)["model_version"] == "train-spot"


@pytest.mark.slow
def test_a_finished_run_writes_no_checkpoint_that_was_not_due(tiny_digits_dir: Path,
                                                              tmp_path: Path) -> None:
    # Seconds of training, the default interval: the model is the run's only output, so a later
    # trial downloading the tuning job's checkpoint prefix finds nothing of this one's.
    result = _train_ok(_tiny(tiny_digits_dir, tmp_path / "model", "--epochs", "2",
                             "--checkpoint-dir", str(tmp_path / "ckpt"), "--job-name", "trial-9"))
    assert _epochs(result.stdout) == [1, 2]
    assert (tmp_path / "model" / "model.pth").is_file()
    assert not (tmp_path / "ckpt" / "trial-9" / CHECKPOINT_FILE).exists()


@pytest.mark.slow
def test_jobs_sharing_a_checkpoint_dir_never_resume_each_other(
    tiny_digits_dir: Path, tmp_path: Path
) -> None:
    # Two trials of a tuning job whose CheckpointConfig shares one prefix.
    shared = ["--checkpoint-dir", str(tmp_path / "ckpt"), "--epochs", "1",
              "--checkpoint-interval", "0"]
    _train_ok(_tiny(tiny_digits_dir, tmp_path / "a", *shared, "--job-name", "trial-a"))
    second = _train_ok(_tiny(tiny_digits_dir, tmp_path / "b", *shared, "--job-name", "trial-b"))
    assert "resuming" not in (second.stdout + second.stderr).lower()
    assert _epochs(second.stdout) == [1]  # trained, not taken over from trial-a
    for job in ("trial-a", "trial-b"):
        saved = _checkpoint(tmp_path / "ckpt" / job / CHECKPOINT_FILE)
        assert (saved["job_name"], saved["epoch"]) == (job, 1)
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["trial-a", "trial-b"]


@pytest.mark.slow
def test_checkpoint_with_other_hyperparameters_is_refused_unless_restart(
    tiny_digits_dir: Path, tmp_path: Path
) -> None:
    job = ["--checkpoint-dir", str(tmp_path / "ckpt"), "--job-name", "trial-7",
           "--checkpoint-interval", "0"]
    _train_ok(_tiny(tiny_digits_dir, tmp_path / "model", *job, "--epochs", "1"))
    path = tmp_path / "ckpt" / "trial-7" / CHECKPOINT_FILE
    before = path.read_bytes()

    other = _tiny(tiny_digits_dir, tmp_path / "model", *job, "--epochs", "2", "--lr", "0.01",
                  "--hflip", "true")
    refused = _train(other)
    assert refused.returncode == EXIT_USAGE, refused.stdout + refused.stderr
    for difference in ("lr: checkpoint 0.003, requested 0.01", "epochs: checkpoint 1, requested 2",
                       "hflip: checkpoint False, requested True"):
        assert difference in refused.stdout
    assert "batch_size" not in refused.stdout and "seed:" not in refused.stdout
    assert "--on-checkpoint-mismatch restart" in refused.stdout
    assert "resuming" not in refused.stdout.lower() and _epochs(refused.stdout) == []
    assert path.read_bytes() == before

    restarted = _train_ok([*other, "--on-checkpoint-mismatch", "restart"])
    assert "WARNING" in restarted.stdout and "starting fresh" in restarted.stdout
    assert "resuming" not in restarted.stdout.lower()
    assert _epochs(restarted.stdout) == [1, 2]
    saved = _checkpoint(path)
    assert saved["epoch"] == 2
    assert (saved["hyperparameters"]["lr"], saved["hyperparameters"]["epochs"]) == (0.01, 2)


@pytest.mark.parametrize(("state", "reason"), [
    ({"epoch": 1, "model": {}, "history": []}, "records no job name or hyperparameters"),
    ({"epoch": 1, "rng": [{"numpy": np.random.get_state()}]}, "cannot be loaded"),
], ids=["no-record", "not-weights-only"])
def test_older_checkpoint_counts_as_a_mismatch(tiny_digits_dir: Path, tmp_path: Path,
                                               state: dict, reason: str) -> None:
    path = tmp_path / "ckpt" / "trial-1" / CHECKPOINT_FILE
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    result = _train(_tiny(tiny_digits_dir, tmp_path / "m", "--epochs", "1", "--checkpoint-dir",
                          str(tmp_path / "ckpt"), "--job-name", "trial-1"))
    assert result.returncode == EXIT_USAGE, result.stdout + result.stderr
    assert reason in result.stdout
    assert "resuming" not in result.stdout.lower()
    assert not (tmp_path / "m").exists()


class _RunsOnUnpickle:
    """Unpickling this calls `os.mkdir(path)`: a directory that appears proves code ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return os.mkdir, (str(self.path),)


def test_checkpoint_with_a_malicious_pickle_is_refused_and_never_runs(tiny_digits_dir: Path,
                                                                      tmp_path: Path) -> None:
    # A checkpoint dir is shared storage (an S3 prefix): whoever can write it must not get code
    # run by the next job that resumes from it.
    proof = tmp_path / "code-ran"
    path = tmp_path / "ckpt" / "trial-1" / CHECKPOINT_FILE
    path.parent.mkdir(parents=True)
    torch.save({"epoch": 1, "job_name": "trial-1", "payload": _RunsOnUnpickle(proof)}, path)
    result = _train(_tiny(tiny_digits_dir, tmp_path / "m", "--epochs", "1", "--checkpoint-dir",
                          str(tmp_path / "ckpt"), "--job-name", "trial-1"))
    assert result.returncode == EXIT_USAGE, result.stdout + result.stderr
    assert "cannot be loaded as tensors and plain data" in result.stdout
    assert "resuming" not in result.stdout.lower() and not (tmp_path / "m").exists()
    assert not proof.exists(), "loading the checkpoint ran the code in its pickle"
    # The control: a full unpickle of the same file does run it.
    torch.load(path, map_location="cpu", weights_only=False)
    assert proof.is_dir()


@pytest.mark.slow
def test_sagemaker_default_checkpoint_dir_is_under_sagemaker_base_dir(
    tiny_digits_dir: Path, tmp_path: Path
) -> None:
    env = {"SM_MODEL_DIR": str(tmp_path / "model"), "SAGEMAKER_BASE_DIR": str(tmp_path),
           "TRAINING_JOB_NAME": "train-42"}
    _train_ok(["--data-dir", str(tiny_digits_dir), "--batch-size", "16", "--epochs", "1",
               "--checkpoint-interval", "0", *FAST], env)
    assert _checkpoint(tmp_path / "checkpoints" / "train-42" / CHECKPOINT_FILE)["epoch"] == 1
    assert list((tmp_path / "checkpoints").iterdir()) == [tmp_path / "checkpoints" / "train-42"]
    assert (tmp_path / "model" / "model.pth").is_file()


@pytest.mark.slow
def test_ddp_two_gloo_processes_see_disjoint_halves_with_identical_weights(
    digits_dir: Path, tmp_path: Path
) -> None:
    from breedops.local.services import free_port

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
    (["--job-name", "../other"], "(a folder name)"),
    (["--on-checkpoint-mismatch", "ignore"], "invalid choice: 'ignore'"),
    (["--checkpoint-interval", "-1"], "checkpoint_interval must be at least 0, got -1.0"),
    (["--checkpoint-interval", "nan"], "checkpoint_interval must be at least 0, got nan"),
    (["--checkpoint-interval", "soon"], "could not convert string to float: 'soon'"),
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


def test_a_checkpoint_being_written_is_invisible_to_the_checkpoint_sync(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """While torch.save writes, the only files the sync would upload are complete checkpoints
    (a partial one uploaded under its own name would be a wasted 100+ MB upload, and restored)."""
    from breedops.local.sagemaker_jobs.transfer import CheckpointSync
    from breedops.training import train

    folder = tmp_path / "checkpoints" / "job-1"
    uploaded: list[str] = []
    sync = CheckpointSync(None, "s3://bucket/checkpoints/job-1/", folder)
    monkeypatch.setattr("breedops.local.sagemaker_jobs.transfer.upload",
                        lambda s3, path, bucket, key: uploaded.append(path.name))
    real_save = torch.save

    def save_then_sync(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)  # written, not yet renamed into place
        sync.sync()

    monkeypatch.setattr(torch, "save", save_then_sync)
    train.save_checkpoint(folder / CHECKPOINT_FILE, epoch=1)
    sync.sync()
    assert uploaded == [CHECKPOINT_FILE]
    assert sorted(p.name for p in folder.iterdir()) == [CHECKPOINT_FILE]


class _Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _epoch_state(model: torch.nn.Module, epoch: int) -> dict:
    return {"epoch": epoch, "model": model.state_dict(), "history": [{"epoch": epoch}]}


def test_epoch_checkpoints_are_written_once_per_interval_the_last_one_too(
        tmp_path: Path) -> None:
    from breedops.training.train import EpochCheckpoints

    path, clock, model = tmp_path / "job" / CHECKPOINT_FILE, _Clock(), torch.nn.Linear(2, 2)
    checkpoints = EpochCheckpoints(path, 60, clock=clock)
    clock.now += 20
    assert not checkpoints.epoch_done(_epoch_state(model, 1))
    assert not path.exists()  # 20 s of work: kept in memory only
    clock.now += 45
    assert checkpoints.epoch_done(_epoch_state(model, 2))  # 65 s since the start
    assert _checkpoint(path)["epoch"] == 2
    clock.now += 10
    assert not checkpoints.epoch_done(_epoch_state(model, 3))
    assert _checkpoint(path)["epoch"] == 2
    clock.now += 1
    # The last epoch is no exception: a finished job's model is in model.tar.gz (a SIGTERM
    # after the last epoch only marks the stop; packaging goes on). Kept, it is still flushable.
    assert not checkpoints.epoch_done(_epoch_state(model, 4))
    assert _checkpoint(path)["epoch"] == 2
    assert checkpoints.flush() and _checkpoint(path)["epoch"] == 4
    assert not checkpoints.flush()  # nothing left unwritten
    # A run's final epoch is neither written (not due) nor copied: nothing could flush it.
    clock.now += 1
    assert not checkpoints.epoch_done(_epoch_state(model, 5), final=True)
    assert not checkpoints.flush() and _checkpoint(path)["epoch"] == 4


def test_epoch_checkpoint_kept_in_memory_is_what_a_stop_writes(tmp_path: Path) -> None:
    """The kept state is a copy: training on after the epoch does not change what is written."""
    from breedops.training.train import EpochCheckpoints

    path, model = tmp_path / "job" / CHECKPOINT_FILE, torch.nn.Linear(2, 2)
    checkpoints = EpochCheckpoints(path, 60, clock=_Clock())
    at_epoch_end = {k: v.clone() for k, v in model.state_dict().items()}
    assert not checkpoints.epoch_done(_epoch_state(model, 1))
    with torch.no_grad():
        model.weight.add_(1.0)  # the next epoch's first steps, then SIGTERM
    assert checkpoints.flush()
    saved = _checkpoint(path)
    assert saved["epoch"] == 1
    assert torch.equal(saved["model"]["weight"], at_epoch_end["weight"])
    assert not checkpoints.flush()


def test_checkpoint_interval_zero_writes_every_epoch(tmp_path: Path) -> None:
    from breedops.training.train import EpochCheckpoints

    path, model = tmp_path / "job" / CHECKPOINT_FILE, torch.nn.Linear(2, 2)
    checkpoints = EpochCheckpoints(path, 0, clock=_Clock())
    for epoch in (1, 2):
        assert checkpoints.epoch_done(_epoch_state(model, epoch))
        assert _checkpoint(path)["epoch"] == epoch
