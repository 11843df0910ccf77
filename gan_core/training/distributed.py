"""Process groups for one training job across several devices (torch.distributed, data parallel).

One process per device ("rank"); every rank runs the same Trainer on its share of each global
minibatch (gan_core.training.sharded). CUDA ranks talk over NCCL, CPU ranks over gloo: the CPU
path is how the tests check the multi-GPU code on a machine without GPUs.

Gradients are all-reduced by hand (flatten, one all_reduce, divide by the world size), as NVlabs'
stylegan2-ada-pytorch does, rather than by wrapping the networks in DistributedDataParallel: R1 and
DigGAN take a double backward through D, which DDP's bucketed hooks handle badly.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in its job: rank in [0, world), and the rendezvous it joined."""

    rank: int = 0
    world: int = 1
    backend: str = ""  # "" = no process group (one process)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        """True when collectives go to other processes."""
        return self.world > 1


SINGLE = DistInfo()

# How long a collective may wait: rank 0 alone writes checkpoints and grids and computes snapshot metrics
# (FID/KID over thousands of images) while the others wait at a barrier.
COLLECTIVE_TIMEOUT = timedelta(hours=2)


def backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def rank_device(device: str | torch.device, rank: int) -> torch.device:
    """The device rank `rank` trains on: cuda:rank for a CUDA job, the CPU otherwise."""
    d = torch.device(device)
    if d.type == "cuda":
        if rank >= torch.cuda.device_count():
            raise ValueError(f"rank {rank} needs cuda:{rank} but this machine has {torch.cuda.device_count()} GPUs")
        return torch.device("cuda", rank)
    return d


def init_process_group(rank: int, world: int, init_method: str, device: torch.device) -> DistInfo:
    """Join the job's process group (file:// or tcp:// rendezvous). world 1 needs no group."""
    if world == 1:
        return SINGLE
    backend = backend_for(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=world, timeout=COLLECTIVE_TIMEOUT)
    return DistInfo(rank, world, backend)


def shutdown(info: DistInfo) -> None:
    if info.active and dist.is_initialized():
        # Free what reference cycles still hold (a finished Trainer, a caught exception's frames) while the
        # group is alive: left to interpreter exit, gloo aborted the process ("terminate called without an
        # active exception", exit -6) in 3 of 37 runs of test_two_ranks_roll_back_...; 0 of 50 with this.
        gc.collect()
        dist.destroy_process_group()


def cpu_threads_per_rank(device: torch.device, world: int) -> int | None:
    """Intra-op threads for one of `world` CPU ranks on this machine (they share its cores), or None to leave
    torch's count alone (a CUDA rank, or OMP_NUM_THREADS set by the user)."""
    if device.type != "cpu" or world < 2 or "OMP_NUM_THREADS" in os.environ:
        return None
    return max(1, (os.cpu_count() or 1) // world)


def _entry(rank: int, world: int, init_method: str, device: str, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    """A helper rank's body (gan_core.training.ranks): join the group, run `fn(info, device, *args)`, leave."""
    dev = rank_device(device, rank)
    threads = cpu_threads_per_rank(dev, world)
    if threads is not None:
        torch.set_num_threads(threads)
    info = init_process_group(rank, world, init_method, dev)
    try:
        fn(info, dev, *args)
    finally:
        shutdown(info)


# ------------------------------------------------------------------ collectives


def all_reduce_grads(params: Iterable[nn.Parameter], info: DistInfo) -> None:
    """Average the gradients of `params` over the ranks: one flat all_reduce (NVlabs training_loop.py).

    Parameters without a gradient are skipped; every rank has the same set (same code, same freeze)."""
    if not info.active:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.flatten() for g in grads])
    dist.all_reduce(flat)
    flat.div_(info.world)
    torch._foreach_copy_(grads, [f.view_as(g) for f, g in zip(flat.split([g.numel() for g in grads]), grads)])


def broadcast_module(module: nn.Module, info: DistInfo, src: int = 0) -> None:
    """Every rank takes rank `src`'s parameters and buffers."""
    if not info.active:
        return
    with torch.no_grad():
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t.data, src)


def average_(tensors: list[Tensor], info: DistInfo) -> None:
    """In place: each tensor becomes its mean over the ranks."""
    if not info.active or not tensors:
        return
    flat = torch.cat([t.detach().reshape(-1).float() for t in tensors])
    dist.all_reduce(flat)
    flat.div_(info.world)
    for t, f in zip(tensors, flat.split([t.numel() for t in tensors])):
        t.data.copy_(f.view_as(t))


def all_reduce_sum(t: Tensor, info: DistInfo) -> Tensor:
    """The sum over the ranks (a new tensor; `t` itself when there is one rank)."""
    if not info.active:
        return t
    out = t.clone()
    dist.all_reduce(out)
    return out


def all_gather_stack(t: Tensor, info: DistInfo) -> Tensor:
    """[world, *t.shape]: every rank's `t` (same shape on all ranks), in rank order."""
    if not info.active:
        return t.unsqueeze(0)
    out = [torch.empty_like(t) for _ in range(info.world)]
    dist.all_gather(out, t.contiguous())
    return torch.stack(out)


def agree(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """Rank 0's decision, on every rank (e.g. a stop request only rank 0 can see)."""
    if not info.active:
        return flag
    t = torch.tensor([1 if flag else 0], device=device)
    dist.broadcast(t, 0)
    return bool(t.item())


def barrier(info: DistInfo) -> None:
    if info.active:
        dist.barrier()
