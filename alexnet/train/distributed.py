"""Data-parallel training (DDP) started by ``torchrun --nproc_per_node=N -m alexnet train ...``; the
global batch is split across the processes. A gloo group carries control messages, never waiting for a GPU."""

import contextlib
import ctypes
import os
import signal
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist

from alexnet.devices import pick_device
from alexnet.errors import UserError


@dataclass
class Context:
    """Where this process sits: its rank among ``world`` processes and its device."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0  # rank among the processes on this machine
    device: torch.device = torch.device("cpu")
    control: object = None  # gloo process group for stop requests (None when alone)

    @property
    def main(self) -> bool:  # the one process that prints, logs and writes checkpoints
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


@contextlib.contextmanager
def session(device_name: str | None, model_parallel: bool = False):
    """The block in torchrun's process group, else alone; with ``model_parallel``, local rank r owns cuda:2r, 2r+1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = pick_device(device_name)
    if world == 1:
        yield Context(device=device)
        return
    if sys.platform.startswith("linux"):  # SIGKILL when torchrun dies: its processes are in their own sessions
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG (issue 23)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank * (2 if model_parallel else 1))
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    control = dist.new_group(backend="gloo") if backend != "gloo" else dist.group.WORLD
    try:
        yield Context(rank=rank, world=world, local_rank=local_rank, device=device, control=control)
    finally:
        dist.destroy_process_group()


def all_sum(ctx: Context, tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise sum over all processes (the tensor itself when alone)."""
    if ctx.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def max_over_ranks(ctx: Context, *values: int) -> list[int]:
    """The element-wise maximum of small integers over all processes, so that all decide alike."""
    if not ctx.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.int64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=ctx.control)
    return t.tolist()


def gather_to_main(ctx: Context, value) -> list | None:
    """``value`` of every process, in rank order, on the main process (None elsewhere); for small state."""
    values = [None] * ctx.world if ctx.main else None
    dist.gather_object(value, values, dst=0, group=ctx.control)
    return values


@contextlib.contextmanager
def local_leader_first(ctx: Context):
    """Run the block on each machine's first process before the others, which find its result (a download)."""
    if ctx.distributed and ctx.local_rank != 0:
        dist.barrier(group=ctx.control)
    yield
    if ctx.distributed and ctx.local_rank == 0:
        dist.barrier(group=ctx.control)


def model_parallel_devices(ctx: Context) -> tuple[torch.device, torch.device]:
    """The two devices of this process's towers: its GPU and the next one (on the CPU: the CPU twice)."""
    if ctx.device.type != "cuda":
        return ctx.device, ctx.device
    first = ctx.device.index or 0
    if torch.cuda.device_count() < first + 2:
        raise UserError(f"--model-parallel needs two GPUs per process: cuda:{first} and cuda:{first + 1}, "
                        f"but {torch.cuda.device_count()} are visible")
    return torch.device("cuda", first), torch.device("cuda", first + 1)
