"""Multi-host set-up: torchrun's variables or SageMaker's `SM_HOSTS`, DDP over nccl or gloo."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

LOG = logging.getLogger(__name__)
# SageMaker's convention for the rendezvous port when it launches one process per host.
DEFAULT_MASTER_PORT = "7777"


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job: rank, world size and device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _from_environment(env: dict[str, str]) -> tuple[int, int, int, str | None, str | None]:
    """(rank, world_size, local_rank, master_addr, master_port) from torchrun or SM_HOSTS."""
    if "WORLD_SIZE" in env and "RANK" in env:
        return (int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", "0")),
                env.get("MASTER_ADDR"), env.get("MASTER_PORT"))
    hosts = json.loads(env.get("SM_HOSTS", "[]"))
    if len(hosts) > 1:
        current = env["SM_CURRENT_HOST"]
        return (hosts.index(current), len(hosts), 0, env.get("MASTER_ADDR", hosts[0]),
                env.get("MASTER_PORT", DEFAULT_MASTER_PORT))
    return 0, 1, 0, None, None


def setup(env: dict[str, str] | None = None) -> DistContext:
    """Join the process group when the job has more than one process, pick the device."""
    env = dict(os.environ if env is None else env)
    rank, world_size, local_rank, addr, port = _from_environment(env)
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = str(addr), str(port)
        dist.init_process_group(backend, rank=rank, world_size=world_size)
        LOG.info("joined %s process group: rank %d of %d via %s:%s", backend, rank,
                 world_size, addr, port)
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def teardown() -> None:
    """Leave the process group, if any."""
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce(values: list[float], ctx: DistContext, op: str = "sum") -> list[float]:
    """Sum (or min) `values` over all processes; a no-op for a single process."""
    if not ctx.distributed:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=ctx.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MIN if op == "min" else dist.ReduceOp.SUM)
    return tensor.tolist()


def broadcast_flag(flag: bool, ctx: DistContext) -> bool:
    """True on every process when any process has `flag` set (a stop request)."""
    return bool(all_reduce([float(flag)], ctx)[0]) if ctx.distributed else flag
