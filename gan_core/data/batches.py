"""Deterministic, resumable minibatches of real images for training.

Every epoch is a fresh permutation drawn from one torch.Generator; batches are
always full (an epoch's tail is topped up from the next epoch's start). The
sampler's whole state (epoch, position, current permutation, generator state)
fits in a checkpoint, so a resumed run sees exactly the batches it would have.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch


def to_float(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1]."""
    return images_uint8.to(torch.float32) / 127.5 - 1.0


class BatchSampler:
    """Infinite iterator of (indices int64 [B], flips bool [B])."""

    def __init__(self, num_images: int, batch_size: int, generator: torch.Generator | None = None,
                 mirror: bool = False, seed: int = 0) -> None:
        if num_images < 1 or batch_size < 1:
            raise ValueError(f"need num_images >= 1 and batch_size >= 1, got {num_images}, {batch_size}")
        self.num_images, self.batch_size, self.mirror = num_images, batch_size, mirror
        self.generator = generator if generator is not None else torch.Generator().manual_seed(seed)
        self.epoch = -1  # becomes 0 when the first permutation is drawn
        self.position = 0
        self._perm = torch.empty(0, dtype=torch.int64)

    def __iter__(self) -> BatchSampler:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        parts: list[torch.Tensor] = []
        need = self.batch_size
        while need:
            if self.position >= self._perm.numel():
                self._perm = torch.randperm(self.num_images, generator=self.generator)
                self.epoch += 1
                self.position = 0
            take = min(need, self._perm.numel() - self.position)
            parts.append(self._perm[self.position : self.position + take])
            self.position += take
            need -= take
        if self.mirror:
            flips = torch.rand(self.batch_size, generator=self.generator) < 0.5
        else:
            flips = torch.zeros(self.batch_size, dtype=torch.bool)
        return torch.cat(parts), flips

    def state_dict(self) -> dict[str, Any]:
        """Tensors, ints and bools only: loads with torch.load(weights_only=True)."""
        return {
            "num_images": self.num_images,
            "batch_size": self.batch_size,
            "mirror": self.mirror,
            "epoch": self.epoch,
            "position": self.position,
            "perm": self._perm.clone(),
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("num_images", "batch_size", "mirror"):
            if state[key] != getattr(self, key):
                raise ValueError(f"sampler state is for {key}={state[key]!r}, this sampler has {getattr(self, key)!r}")
        perm = state["perm"].to(torch.int64)
        if perm.numel() not in (0, self.num_images) or not 0 <= int(state["position"]) <= perm.numel():
            raise ValueError("sampler state is inconsistent (permutation/position)")
        self.epoch, self.position, self._perm = int(state["epoch"]), int(state["position"]), perm.clone()
        self.generator.set_state(state["generator"])


def iterate_batches(
    images_uint8: torch.Tensor,
    batch_size: int,
    generator: torch.Generator | None = None,
    mirror: bool = False,
    *,
    sampler: BatchSampler | None = None,
    device: torch.device | str | None = None,
) -> Iterator[torch.Tensor]:
    """Endless float [-1, 1] batches [B, 3, R, R], shuffled each epoch, x-flipped at random if `mirror`.

    Pass your own `sampler` to checkpoint it (`sampler.state_dict()`); otherwise one is
    built from `generator`. Indexing happens where the images live, then moves to `device`.
    """
    if sampler is None:
        if generator is None:
            raise ValueError("give a torch.Generator (or a BatchSampler) so batches are reproducible")
        sampler = BatchSampler(images_uint8.shape[0], batch_size, generator, mirror)
    elif sampler.num_images != images_uint8.shape[0] or sampler.batch_size != batch_size:
        raise ValueError("sampler does not match the images / batch size")
    for idx, flips in sampler:
        x = images_uint8[idx.to(images_uint8.device)]
        x = to_float(x if device is None else x.to(device))
        if flips.any():
            x = torch.where(flips.to(x.device).view(-1, 1, 1, 1), x.flip(-1), x)
        yield x
