"""One rank of the two-process DDP test: one epoch of the real training loop, then report.

Run with torchrun's variables (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) set; writes the
indices this rank trained on and its final parameters to `<out>/rank<N>.pt`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from breedops.data.layout import scan_split
from breedops.modeling.architectures import build_model
from breedops.modeling.transforms import build_eval_transform
from breedops.training import distributed
from breedops.training.data import EpochShuffleSampler, ImageSamples
from breedops.training.train import StopRequest, train_one_epoch


def main(train_dir: Path, out: Path) -> None:
    torch.set_num_threads(1)
    ctx = distributed.setup()
    torch.manual_seed(ctx.rank)  # different initial weights: DDP must make them equal
    split = scan_split(train_dir)
    dataset = ImageSamples(split.samples, build_eval_transform(16))
    sampler = EpochShuffleSampler(len(dataset), rank=ctx.rank, world_size=ctx.world_size,
                                  seed=0, shard=True)
    loader = DataLoader(dataset, batch_size=32, sampler=sampler, drop_last=True)
    model = build_model("resnet18", len(split.classes))
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.05)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    sampler.set_epoch(0)
    train_one_epoch(ddp, loader, optimizer, scheduler, ctx, StopRequest(), False, 1)
    torch.save({"indices": list(sampler),
                "parameters": {k: v.detach() for k, v in model.named_parameters()}},
               out / f"rank{ctx.rank}.pt")
    distributed.teardown()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
