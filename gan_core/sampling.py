"""Sampling from a trained generator: seeds, truncation, grids, interpolations.

A seed maps to a latent exactly as in NVlabs' generate.py
(`np.random.RandomState(seed).randn(1, z_dim)`), so seeds mean the same image
here as there for an imported generator.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from .config import TrainConfig, config_from_dict
from .networks import Generator
from .training.checkpoint import load_checkpoint


def parse_seeds(spec: str) -> list[int]:
    """'0-3,7,10-11' -> [0, 1, 2, 3, 7, 10, 11]."""
    seeds: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            lo, hi = part.split("-", 1)
            a, b = int(lo), int(hi)
            if b < a:
                raise ValueError(f"seed range {part!r} runs backwards")
            seeds.extend(range(a, b + 1))
        else:
            seeds.append(int(part))
    if not seeds:
        raise ValueError(f"no seeds in {spec!r}; use e.g. 0-15 or 1,5,9")
    return seeds


def load_generator(ckpt_path: Path | str, device: str | torch.device = "cpu") -> tuple[Generator, TrainConfig]:
    """The EMA generator of a checkpoint, in eval mode, and the checkpoint's config."""
    ckpt = load_checkpoint(Path(ckpt_path))
    return generator_from_payload(ckpt, device)


def generator_from_payload(ckpt: dict, device: str | torch.device = "cpu") -> tuple[Generator, TrainConfig]:
    cfg = config_from_dict(ckpt["config"])
    G = Generator(cfg.network)
    G.load_state_dict(ckpt["G_ema"])
    return G.to(device).eval().requires_grad_(False), cfg


def seed_latents(seeds: Sequence[int], z_dim: int) -> Tensor:
    return torch.from_numpy(
        np.stack([np.random.RandomState(int(s) % (2**32)).randn(z_dim) for s in seeds])
    ).float()


def to_uint8(images: Tensor) -> Tensor:
    """[-1, 1] float NCHW -> uint8 NCHW (NVlabs' conversion; any float dtype)."""
    return (images.detach().float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)


@torch.inference_mode()
def generate_images(
    G: nn.Module,
    seeds: Sequence[int],
    psi: float = 0.7,
    batch_size: int = 16,
    device: str | torch.device | None = None,
    noise_mode: str = "const",
) -> Tensor:
    """uint8 images [N, 3, R, R] for the given seeds, generated in batches."""
    device = device or next(G.parameters()).device
    z_all = seed_latents(seeds, G.z_dim)
    out = []
    for i in range(0, len(seeds), batch_size):
        z = z_all[i : i + batch_size].to(device)
        out.append(to_uint8(G(z, truncation_psi=psi, noise_mode=noise_mode)).cpu())
    return torch.cat(out) if out else torch.empty(0, 3, G.img_resolution, G.img_resolution, dtype=torch.uint8)


def make_grid(images: Tensor, nrow: int | None = None, padding: int = 2) -> Image.Image:
    """Tile uint8 images [N, 3, H, W] into one PIL image (nrow defaults to a near-square grid)."""
    n, c, h, w = images.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    ncol = math.ceil(n / nrow)
    grid = torch.full((c, ncol * (h + padding) + padding, nrow * (w + padding) + padding), 255, dtype=torch.uint8)
    for idx in range(n):
        r, col = divmod(idx, nrow)
        y, x = padding + r * (h + padding), padding + col * (w + padding)
        grid[:, y : y + h, x : x + w] = images[idx]
    return Image.fromarray(grid.permute(1, 2, 0).numpy())


def to_pil_list(images: Tensor) -> list[Image.Image]:
    return [Image.fromarray(img.permute(1, 2, 0).numpy()) for img in images]


@torch.inference_mode()
def interpolation_frames(
    G: nn.Module, seed_a: int, seed_b: int, steps: int = 16, psi: float = 0.7, device: str | torch.device | None = None
) -> list[Image.Image]:
    """Frames walking linearly in W space from seed_a to seed_b (inclusive)."""
    device = device or next(G.parameters()).device
    z = seed_latents([seed_a, seed_b], G.z_dim).to(device)
    ws = G.mapping(z, truncation_psi=psi)
    t = torch.linspace(0, 1, steps, device=device).view(-1, 1, 1)
    frames = G.synthesis(ws[0:1].lerp(ws[1:2], t), noise_mode="const")
    return to_pil_list(to_uint8(frames).cpu())


def save_gif(frames: list[Image.Image], path: Path, duration_ms: int = 80) -> None:
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=duration_ms, loop=0)
