"""Datasets and samplers: each process sees 1/N of every epoch."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler


class ImageSamples(Dataset):
    """`(path, class_index)` samples read with PIL and passed through `transform`."""

    def __init__(self, samples: list[tuple[Path, int]], transform: Callable) -> None:
        self.samples = samples
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[i]
        with Image.open(path) as image:
            return self.transform(image), label


class EpochShuffleSampler(Sampler[int]):
    """A seeded shuffle per epoch, then this rank's share of it.

    With `shard=True` the indices are split by rank (the data is replicated on every host,
    like `DistributedSampler` but without padding); with `shard=False` every rank shuffles its
    own (already sharded) data. Either way every rank yields exactly `num_samples` indices, so
    DDP's collective calls stay in step.
    """

    def __init__(self, size: int, *, rank: int, world_size: int, seed: int, shard: bool,
                 num_samples: int | None = None) -> None:
        self.size, self.rank, self.world_size = size, rank, world_size
        self.seed, self.shard, self.epoch = seed, shard, 0
        default = size // world_size if shard else size
        self.num_samples = default if num_samples is None else min(num_samples, default)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator()
        # The same permutation on every rank when sharding; a per-rank one for local shards.
        generator.manual_seed(self.seed + self.epoch + (0 if self.shard else 1000 * self.rank))
        order = torch.randperm(self.size, generator=generator).tolist()
        if self.shard:
            order = order[self.rank::self.world_size]
        return iter(order[: self.num_samples])

    def __len__(self) -> int:
        return self.num_samples


def rank_slice(size: int, rank: int, world_size: int) -> list[int]:
    """Evaluation indices of one rank: a strided slice with no padding (sums stay exact)."""
    return list(range(rank, size, world_size))


def channel_is_sharded(channel: str, env: dict[str, str]) -> bool:
    """Whether SageMaker sharded the channel by S3 key across hosts (SM_INPUT_DATA_CONFIG)."""
    config = json.loads(env.get("SM_INPUT_DATA_CONFIG", "{}") or "{}")
    return config.get(channel, {}).get("S3DistributionType") == "ShardedByS3Key"


def batches_per_epoch(num_samples: int, batch_size: int) -> int:
    """Batches a loader yields per epoch (drop_last=False)."""
    return math.ceil(num_samples / batch_size)
