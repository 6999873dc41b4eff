"""The training entry point: one script for SageMaker, EC2 and local jobs.

Hyperparameters are flags; paths default from the SageMaker training container's `SM_*`
variables and fall back to flags. Run it as `python -m breedops.training.train --data-dir D
--model-dir M ...`, under torchrun for several processes, or as a SageMaker entry point.
Checkpoints go to `<checkpoint-dir>/<job-name>/` at the end of an epoch (at most one per
`--checkpoint-interval` and, on SIGTERM, the newest epoch's): a restart of the same job with the
same hyperparameters resumes, another job sharing the folder (a tuning trial) never does.
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import pickle
import random
import re
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from breedops.hyperparameters import DIGITS, PRESETS, SCHEMA, add_arguments, boolean, preset

LOG = logging.getLogger("breedops.training")

CHECKPOINT_FILE = "checkpoint.pt"
# SIGTERM's conventional exit status: the job was stopped, not finished or failed.
EXIT_STOPPED = 128 + signal.SIGTERM
EXIT_USAGE = 2
# The arguments that define a training run (not paths, threads, workers or the checkpoint
# interval): a checkpoint records them and resumes only a run with the same values.
HYPERPARAMETERS = tuple(hp.name for hp in SCHEMA if hp.defines_run)
ON_MISMATCH = ("fail", "restart")
# A folder name: SageMaker's training job names, and local names like `local-20250101-120000`.
JOB_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def job_name(value: str) -> str:
    """An argparse type for a job name, which names the job's checkpoint folder."""
    if not JOB_NAME_PATTERN.fullmatch(value):
        raise argparse.ArgumentTypeError(
            f"expected letters, digits, '.', '_' or '-' (a folder name), got {value!r}")
    return value


def _env_path(name: str, fallback: str | None = None) -> str | None:
    return os.environ.get(name, fallback)


def sagemaker_base_dir() -> Path:
    """The training container's root: `$SAGEMAKER_BASE_DIR` (the local emulator's job folder)."""
    return Path(os.environ.get("SAGEMAKER_BASE_DIR") or "/opt/ml")


def chosen_preset(argv: Sequence[str] | None) -> str:
    """The `--preset` among the arguments: it sets the other flags' defaults, so it comes first."""
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("--preset", choices=PRESETS, default=DIGITS)
    return first.parse_known_args(argv)[0].preset


def build_parser(preset_name: str = DIGITS) -> argparse.ArgumentParser:
    """Every flag has a default and help (SageMaker passes hyperparameters as flags); the
    hyperparameters' defaults are `--preset`'s."""
    p = argparse.ArgumentParser(description="Train an image classifier on class folders.")
    p.add_argument("--preset", choices=PRESETS, default=preset_name,
                   help=f"the dataset's hyperparameter defaults (default: {DIGITS})")
    hp = p.add_argument_group("hyperparameters")
    add_arguments(hp, preset(preset_name).default_values())
    hp.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    hp.add_argument("--threads", type=int, default=0,
                    help="torch CPU threads per process (0: torch's default)")
    paths = p.add_argument_group("paths (default from SM_* variables)")
    paths.add_argument("--data-dir", default=None,
                       help="a folder with train/ valid/ test/ (when channels are not set)")
    for split in ("train", "valid", "test"):
        paths.add_argument(f"--{split}", default=_env_path(f"SM_CHANNEL_{split.upper()}"),
                           help=f"the {split} class folders (default: $SM_CHANNEL_{split.upper()})")
    paths.add_argument("--weights", default=_env_path("SM_CHANNEL_WEIGHTS"),
                       help="pretrained weights: a torchvision state_dict file (or a folder "
                            "holding one) used instead of downloading them, with --pretrained "
                            "true (default: $SM_CHANNEL_WEIGHTS)")
    paths.add_argument("--model-dir", default=_env_path("SM_MODEL_DIR"),
                       help="where model.pth, labels.json and code/ go (default: $SM_MODEL_DIR)")
    paths.add_argument("--output-data-dir", default=_env_path("SM_OUTPUT_DATA_DIR"),
                       help="metrics.json and plots (default: $SM_OUTPUT_DATA_DIR)")
    paths.add_argument("--checkpoint-dir", default=None,
                       help="end-of-epoch checkpoints in <dir>/<job-name>/, resumed from when "
                            "present (default: $SAGEMAKER_BASE_DIR/checkpoints on SageMaker, "
                            "i.e. /opt/ml/checkpoints, else none)")
    job = p.add_argument_group("job")
    job.add_argument("--job-name", type=job_name,
                     default=os.environ.get("TRAINING_JOB_NAME") or time.strftime(
                         "local-%Y%m%d-%H%M%S"),
                     help="names this job's checkpoint folder: a restart of the same job "
                          "resumes, another job (a sibling tuning trial) never does "
                          "(default: $TRAINING_JOB_NAME, else local-<time>)")
    job.add_argument("--on-checkpoint-mismatch", choices=ON_MISMATCH, default="fail",
                     help="a checkpoint made by another job or with other hyperparameters: "
                          "fail (exit 2) or restart (start fresh, replacing it)")
    job.add_argument("--model-version", default=None,
                     help="the version the endpoint reports (default: the job name)")
    job.add_argument("--onnx", type=boolean, default=True,
                     help="package model.onnx (gated against eager) and the ONNX Runtime wheels "
                          "the endpoint serves it with; false: an eager-only model (quicker, for "
                          "experiments whose model is compared, not served)")
    return p


@dataclass
class Config:
    """Parsed and resolved arguments."""

    args: argparse.Namespace
    train_dir: Path
    valid_dir: Path
    test_dir: Path
    model_dir: Path
    output_dir: Path
    checkpoint_dir: Path | None

    @property
    def checkpoint_path(self) -> Path | None:
        """This job's checkpoint, `<checkpoint-dir>/<job-name>/checkpoint.pt`, if any."""
        if self.checkpoint_dir is None:
            return None
        return self.checkpoint_dir / self.args.job_name / CHECKPOINT_FILE


def resolve_paths(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Config:
    """Channels from flags or SM_* variables, else `--data-dir/<split>`; a clear usage error."""
    dirs = {}
    for split in ("train", "valid", "test"):
        value = getattr(args, split) or (args.data_dir and str(Path(args.data_dir) / split))
        if not value:
            parser.error(f"no {split} data: pass --{split}, --data-dir or set "
                         f"SM_CHANNEL_{split.upper()}")
        dirs[split] = Path(value)
    if not args.model_dir:
        parser.error("no model directory: pass --model-dir or set SM_MODEL_DIR")
    checkpoint = args.checkpoint_dir
    if checkpoint is None and "SM_MODEL_DIR" in os.environ and sagemaker_base_dir().is_dir():
        checkpoint = str(sagemaker_base_dir() / "checkpoints")
    args.model_version = args.model_version or args.job_name
    model_dir = Path(args.model_dir)
    return Config(
        args=args, train_dir=dirs["train"], valid_dir=dirs["valid"], test_dir=dirs["test"],
        model_dir=model_dir,
        output_dir=(Path(args.output_data_dir) if args.output_data_dir
                    else model_dir.with_name(model_dir.name + "-output")),
        checkpoint_dir=Path(checkpoint) if checkpoint else None,
    )


class StopRequest:
    """Remembers a SIGTERM (spot interruption, StopTrainingJob) so training stops cleanly."""

    def __init__(self) -> None:
        self.requested = False

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        self.requested = True


@dataclass
class History:
    """Per-epoch metrics, for the curves and metrics.json."""

    epochs: list[dict[str, float]] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Every RNG this script uses, for the checkpoint, as plain data (loadable weights_only)."""
    import numpy as np
    import torch

    _, key, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    state = {"python": random.getstate(),
             "numpy": {"key": key.tolist(), "pos": int(pos), "has_gauss": int(has_gauss),
                       "gauss": float(gauss)},
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    import numpy as np
    import torch

    random.setstate(state["python"])
    numpy_state = state["numpy"]
    np.random.set_state(("MT19937", np.array(numpy_state["key"], dtype=np.uint32),
                         numpy_state["pos"], numpy_state["has_gauss"], numpy_state["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def detached_copy(value):
    """`value` with every tensor copied to the CPU: a snapshot that training cannot change."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: detached_copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(detached_copy(v) for v in value)
    return copy.deepcopy(value)


class EpochCheckpoints:
    """Which end-of-epoch states are written to `path`: one when `interval` seconds
    (`--checkpoint-interval`) have passed since the last write; the newest unwritten one is kept
    in memory until `flush` (at a stop) writes it.

    A checkpoint is the weights and the optimizer's state (134 MB for resnet18, 285 MB for
    resnet50). Written after every few-second epoch, it costs more disk and S3 traffic than the
    work it protects. Nor is the last epoch's written unless due: a finished job's model is in
    its model.tar.gz, and a tuning job's trials share one checkpoint prefix, which SageMaker
    downloads whole into every trial it starts (each finished trial's checkpoint would be read
    by every later one).

    The write at a stop needs a process tree that lets the script finish (a direct run,
    torchrun, the EC2 instance). Under the SageMaker SDK's script driver it does not: the
    driver exits at SIGTERM and the container ends with it, so a stopped or spot-interrupted
    SageMaker job loses up to the interval's work plus the epoch in progress (epochs longer than
    the interval are all written)."""

    def __init__(self, path: Path, interval: float, clock=time.monotonic) -> None:
        self.path, self.interval, self.clock = path, interval, clock
        self.written_at = clock()
        self.pending: dict | None = None

    def epoch_done(self, state: dict, *, final: bool = False) -> bool:
        """Write `state` if it is due (True), else keep a snapshot of it for `flush`; not of the
        final epoch's: no training follows that a stop could interrupt."""
        if self.clock() - self.written_at >= self.interval:
            self._write(state)
            return True
        self.pending = None if final else detached_copy(state)
        return False

    def flush(self) -> bool:
        """Write the kept state, if any (True when one was written)."""
        if self.pending is None:
            return False
        self._write(self.pending)
        return True

    def _write(self, state: dict) -> None:
        save_checkpoint(self.path, **state)
        self.pending, self.written_at = None, self.clock()


def save_checkpoint(path: Path, **state) -> None:
    """Write atomically: a stop during the write leaves the previous checkpoint intact. The
    partial file is a dot file, which the emulator's checkpoint sync skips and resume never
    reads."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict | None:
    """The checkpoint at `path`, or None; only tensors and plain data are unpickled."""
    import torch

    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


class CheckpointMismatch(Exception):
    """The checkpoint found belongs to another job or to other hyperparameters."""


def run_record(args: argparse.Namespace) -> dict:
    """What a checkpoint records of the run that made it: the job and its hyperparameters."""
    return {"job_name": args.job_name,
            "hyperparameters": {name: getattr(args, name) for name in HYPERPARAMETERS}}


def checkpoint_differences(state: dict, args: argparse.Namespace) -> list[str]:
    """`name: checkpoint X, requested Y` for each way `state` is not this run's; [] if it is."""
    if "job_name" not in state and "hyperparameters" not in state:
        return ["it records no job name or hyperparameters (an older checkpoint)"]
    record = run_record(args)
    recorded = {"job_name": state.get("job_name"), **state.get("hyperparameters", {})}
    requested = {"job_name": record["job_name"], **record["hyperparameters"]}
    differences = []
    for name, value in requested.items():
        if name not in recorded or recorded[name] is None:
            differences.append(f"{name}: checkpoint (not recorded), requested {value!r}")
        elif recorded[name] != value:
            differences.append(f"{name}: checkpoint {recorded[name]!r}, requested {value!r}")
    return differences


def resume_state(path: Path, args: argparse.Namespace, is_main: bool) -> dict | None:
    """This run's checkpoint at `path` to resume from, or None to start fresh.

    Another job's checkpoint, or one with other hyperparameters, raises `CheckpointMismatch`;
    with `--on-checkpoint-mismatch restart` it is removed (the main process) and None returned.
    """
    try:
        state = load_checkpoint(path)
    except pickle.UnpicklingError:
        differences = ["it cannot be loaded as tensors and plain data (weights_only), so it "
                       + "is an older checkpoint or not this script's"]
    except (RuntimeError, EOFError) as e:
        differences = [f"it cannot be read ({str(e).splitlines()[0] if str(e) else e!r})"]
    else:
        if state is None:
            return None
        differences = (checkpoint_differences(state, args) if isinstance(state, dict)
                       else [f"it holds a {type(state).__name__}, not a checkpoint"])
    if not differences:
        return state
    found = f"checkpoint {path} was made by another job or with other hyperparameters"
    if args.on_checkpoint_mismatch == "fail":
        raise CheckpointMismatch(
            f"{found}: {'; '.join(differences)}. Use the same job name and hyperparameters to "
            "resume it, another --job-name or --checkpoint-dir, or --on-checkpoint-mismatch "
            "restart to start fresh and replace it")
    LOG.warning("%s: %s; starting fresh and replacing it (--on-checkpoint-mismatch restart)",
                found, "; ".join(differences))
    if is_main:
        path.unlink(missing_ok=True)
    return None


def train_one_epoch(model, loader, optimizer, scheduler, ctx, stop: StopRequest,
                    amp: bool, epoch: int) -> tuple[float, bool]:
    """One pass; returns (mean loss over all processes, whether a stop was requested)."""
    import torch
    from tqdm import tqdm

    from breedops.training import distributed

    model.train()
    total, count, stopped = 0.0, 0, False
    bar = tqdm(loader, desc=f"epoch {epoch}", file=sys.stderr, disable=not ctx.is_main,
               mininterval=1 if sys.stderr.isatty() else 30, leave=False)
    for images, labels in bar:
        # Every process must agree to stop, or the others would block in the next all-reduce.
        if distributed.broadcast_flag(stop.requested, ctx):
            stopped = True
            break
        images = images.to(ctx.device, non_blocking=True)
        labels = labels.to(ctx.device, non_blocking=True)
        if ctx.device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=amp):
            loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total += loss.item() * len(labels)
        count += len(labels)
        bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
    total, count = distributed.all_reduce([total, float(count)], ctx)
    return total / max(count, 1), stopped


def evaluate(model, loader, ctx, amp: bool, num_classes: int):
    """(loss, accuracy, confusion matrix) over every process's slice of the split."""
    import torch

    from breedops.training import distributed

    model.eval()
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    total = 0.0
    with torch.inference_mode():
        for images, labels in loader:
            images = images.to(ctx.device, non_blocking=True)
            labels = labels.to(ctx.device, non_blocking=True)
            if ctx.device.type == "cuda":
                images = images.contiguous(memory_format=torch.channels_last)
            with torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=amp):
                logits = model(images)
            total += torch.nn.functional.cross_entropy(
                logits.float(), labels, reduction="sum").item()
            predicted = logits.argmax(dim=1)
            confusion.index_put_((labels.cpu(), predicted.cpu()),
                                 torch.ones_like(labels.cpu()), accumulate=True)
    flat = distributed.all_reduce([total, *confusion.flatten().double().tolist()], ctx)
    confusion = torch.tensor(flat[1:]).reshape(num_classes, num_classes).long()
    count = int(confusion.sum())
    accuracy = float(confusion.diag().sum()) / max(count, 1)
    return flat[0] / max(count, 1), accuracy, confusion


def metrics_line(**metrics: float) -> str:
    """The contract-5 line, e.g. `epoch=3; train_loss=0.1234; ...;`."""
    parts = [f"{k}={v}" if isinstance(v, int) else f"{k}={v:.4f}" for k, v in metrics.items()]
    return "; ".join(parts) + ";"


def run(cfg: Config) -> int:
    """Train, evaluate, write the model directory and outputs; return the exit status."""
    import torch
    from torch.utils.data import DataLoader

    from breedops.data.layout import DatasetError, scan_split
    from breedops.modeling.architectures import ModelingError, build_model, weights_file
    from breedops.modeling.transforms import build_eval_transform, build_train_transform
    from breedops.training import distributed, outputs, packaging
    from breedops.training.data import (
        EpochShuffleSampler,
        ImageSamples,
        channel_is_sharded,
        rank_slice,
    )

    args = cfg.args
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    ctx = distributed.setup()
    stop = StopRequest()
    stop.install()
    seed_everything(args.seed + ctx.rank)
    checkpoint_path = cfg.checkpoint_path
    try:  # before the data: another run's checkpoint is a usage error, found early
        state = resume_state(checkpoint_path, args, ctx.is_main) if checkpoint_path else None
    except CheckpointMismatch as e:
        LOG.error("%s", e)
        distributed.teardown()
        return EXIT_USAGE
    try:
        valid = scan_split(cfg.valid_dir)
        classes = valid.classes
        test = scan_split(cfg.test_dir, classes=classes)
        sharded = ctx.distributed and channel_is_sharded("train", dict(os.environ))
        train = scan_split(cfg.train_dir, classes=classes)
        if not sharded and train.classes != classes:
            missing = sorted(set(classes) - set(train.classes))
            raise DatasetError(f"class lists differ between splits: train lacks {missing}")
        model = build_model(args.arch, len(classes), pretrained=args.pretrained,
                            weights_file=weights_file(args.weights))
    except (DatasetError, ModelingError) as e:
        LOG.error("%s", e)
        distributed.teardown()
        return EXIT_USAGE
    LOG.info("%d classes; train %d%s, valid %d, test %d images; %s on %s, %d process(es)",
             len(classes), len(train.samples), " (this host's shard)" if sharded else "",
             len(valid.samples), len(test.samples), args.arch, ctx.device, ctx.world_size)

    amp = ctx.device.type == "cuda"
    model = model.to(ctx.device)
    if amp:
        model = model.to(memory_format=torch.channels_last)
    ddp_model = (torch.nn.parallel.DistributedDataParallel(model) if ctx.distributed else model)

    train_set = ImageSamples(train.samples, build_train_transform(args.image_size, args.hflip))
    eval_transform = build_eval_transform(args.image_size)
    num_samples = None
    if sharded:  # hosts hold different shard sizes: all take the smallest, to stay in step
        num_samples = int(distributed.all_reduce([len(train_set)], ctx, op="min")[0])
    sampler = EpochShuffleSampler(len(train_set), rank=ctx.rank, world_size=ctx.world_size,
                                  seed=args.seed, shard=not sharded, num_samples=num_samples)
    if len(sampler) < args.batch_size:
        LOG.error("batch size %d exceeds the %d training images per process",
                  args.batch_size, len(sampler))
        distributed.teardown()
        return EXIT_USAGE
    loader_opts = {"num_workers": args.workers, "pin_memory": amp,
                   "persistent_workers": args.workers > 0}
    # drop_last: equal batch counts on every rank, and no 1-image batch for BatchNorm.
    train_loader = DataLoader(train_set, batch_size=args.batch_size, sampler=sampler,
                              drop_last=True, **loader_opts)

    def eval_loader(split):
        dataset = torch.utils.data.Subset(
            ImageSamples(split.samples, eval_transform),
            rank_slice(len(split.samples), ctx.rank, ctx.world_size))
        return DataLoader(dataset, batch_size=args.batch_size * 2, **loader_opts)

    valid_loader, test_loader = eval_loader(valid), eval_loader(test)
    # Fused: one kernel updates every parameter. On a CPU the default per-tensor loop costs a
    # resnet18 ~100 ms a step (a third of a 64-image step on one thread), the fused one ~10 ms.
    optimizer = torch.optim.AdamW(ddp_model.parameters(), lr=args.lr,
                                  weight_decay=args.weight_decay,
                                  fused=ctx.device.type in ("cpu", "cuda"))
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.lr, epochs=args.epochs, steps_per_epoch=len(train_loader))

    start_epoch, history = 0, History()
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"][ctx.rank] if ctx.rank < len(state["rng"]) else state["rng"][0])
        start_epoch, history.epochs = state["epoch"], state["history"]
        LOG.info("resuming from checkpoint %s at epoch %d", checkpoint_path, start_epoch + 1)
        del state
    elif checkpoint_path:
        LOG.info("job %s: no checkpoint at %s, starting fresh", args.job_name, checkpoint_path)

    checkpoints = (EpochCheckpoints(checkpoint_path, args.checkpoint_interval)
                   if checkpoint_path else None)
    started = time.monotonic()
    for epoch in range(start_epoch, args.epochs):
        sampler.set_epoch(epoch)
        train_loss, stopped = train_one_epoch(ddp_model, train_loader, optimizer, scheduler,
                                              ctx, stop, amp, epoch + 1)
        if stopped:
            if checkpoints is not None and ctx.is_main:
                checkpoints.flush()
            LOG.warning("SIGTERM: stopping; the checkpoint resumes at epoch %d", epoch + 1)
            distributed.teardown()
            return EXIT_STOPPED
        valid_loss, valid_accuracy, _ = evaluate(model, valid_loader, ctx, amp, len(classes))
        record = {"epoch": epoch + 1, "train_loss": train_loss, "valid_loss": valid_loss,
                  "valid_accuracy": valid_accuracy}
        history.epochs.append(record)
        if ctx.is_main:
            LOG.info(metrics_line(**record))
        if checkpoints is not None:
            rngs = [rng_state()]
            if ctx.distributed:
                rngs = [None] * ctx.world_size
                torch.distributed.all_gather_object(rngs, rng_state())
            if ctx.is_main:
                checkpoints.epoch_done(
                    {"epoch": epoch + 1, "model": model.state_dict(),
                     "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                     "rng": rngs, "history": history.epochs, "arch": args.arch,
                     **run_record(args)},
                    final=epoch + 1 == args.epochs)
    elapsed = time.monotonic() - started
    test_loss, test_accuracy, confusion = evaluate(model, test_loader, ctx, amp, len(classes))
    if ctx.is_main:
        LOG.info(metrics_line(test_loss=test_loss, test_accuracy=test_accuracy))
        trained = (args.epochs - start_epoch) * len(train_loader) * args.batch_size
        throughput = trained * ctx.world_size / elapsed if elapsed > 0 else 0.0
        LOG.info("trained %d epoch(s) in %.1fs: %.1f images/s", args.epochs - start_epoch,
                 elapsed, throughput)
        # The ONNX gate sees the whole test split (this rank's loader holds only a slice).
        gate_loader = DataLoader(ImageSamples(test.samples, eval_transform),
                                 batch_size=args.batch_size * 2, num_workers=args.workers)
        try:
            packaging.write_model_dir(cfg.model_dir, model, arch=args.arch, classes=classes,
                                      image_size=args.image_size,
                                      model_version=args.model_version,
                                      gate_batches=packaging.image_batches(gate_loader),
                                      onnx=args.onnx)
        except packaging.PackagingError as e:
            LOG.error("%s", e)
            distributed.teardown()
            return 1
        outputs.write_outputs(
            cfg.output_dir, history=history.epochs, confusion=confusion.tolist(),
            classes=classes, test={"test_loss": test_loss, "test_accuracy": test_accuracy},
            hyperparameters=run_record(args)["hyperparameters"],
            throughput=throughput, world_size=ctx.world_size)
    distributed.teardown()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse flags (ignoring unknown ones, as SageMaker may add some) and train."""
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = build_parser(chosen_preset(argv))
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        LOG.warning("ignoring unknown arguments: %s", " ".join(unknown))
    return run(resolve_paths(args, parser))


if __name__ == "__main__":
    sys.exit(main())
