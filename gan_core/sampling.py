"""Sampling from a trained generator: seeds, truncation, grids, interpolations.

A seed maps to a latent exactly as in NVlabs' generate.py
(`np.random.RandomState(seed).randn(1, z_dim)`), so seeds mean the same image
here as there for an imported generator.

Works for every `network.arch`. A class-conditional generator (BigGAN) takes
`class_index` (one class for all seeds, or one per seed); without it each seed's
class comes from its latent (see `gan_core.networks.resnet32.classes_from_z`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from .config import TrainConfig, config_from_dict
from .networks import build_generator
from .networks.resnet32 import classes_from_z
from .specs import parse_seeds  # noqa: F401  (re-exported: the CLI and service import it from here)
from .training.checkpoint import load_checkpoint


def load_generator(ckpt_path: Path | str, device: str | torch.device = "cpu") -> tuple[nn.Module, TrainConfig]:
    """The EMA generator of a checkpoint, in eval mode, and the checkpoint's config."""
    ckpt = load_checkpoint(Path(ckpt_path))
    return generator_from_payload(ckpt, device)


def generator_from_payload(ckpt: dict, device: str | torch.device = "cpu") -> tuple[nn.Module, TrainConfig]:
    cfg = config_from_dict(ckpt["config"])
    G = build_generator(cfg.network)
    G.load_state_dict(ckpt["G_ema"])
    return G.to(device).eval().requires_grad_(False), cfg


def seed_latents(seeds: Sequence[int], z_dim: int) -> Tensor:
    return torch.from_numpy(
        np.stack([np.random.RandomState(int(s) % (2**32)).randn(z_dim) for s in seeds])
    ).float()


def to_uint8(images: Tensor) -> Tensor:
    """[-1, 1] float NCHW -> uint8 NCHW (NVlabs' conversion; any float dtype)."""
    return (images.detach().float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)


ClassIndex = int | Sequence[int] | None


def num_classes_of(G: nn.Module) -> int:
    """Classes a generator is conditioned on (0 = unconditional)."""
    return int(getattr(G, "c_dim", 0) or 0)


def class_labels(G: nn.Module, class_index: ClassIndex, n: int) -> Tensor | None:
    """Class indices [n] for `class_index` (one int for all, or one per sample), checked against G."""
    if class_index is None:
        return None
    k = num_classes_of(G)
    if k == 0:
        raise ValueError("this generator is unconditional; it takes no class (omit the class)")
    labels = [int(class_index)] * n if isinstance(class_index, int) else [int(c) for c in class_index]
    if len(labels) != n:
        raise ValueError(f"got {len(labels)} classes for {n} seeds; give one class, or one per seed")
    bad = [c for c in labels if not 0 <= c < k]
    if bad:
        raise ValueError(f"class {bad[0]} is out of range: this generator has {k} classes (0..{k - 1})")
    return torch.tensor(labels, dtype=torch.long)


@torch.inference_mode()
def generate_images(
    G: nn.Module,
    seeds: Sequence[int],
    psi: float = 0.7,
    batch_size: int = 16,
    device: str | torch.device | None = None,
    noise_mode: str = "const",
    class_index: ClassIndex = None,
) -> Tensor:
    """uint8 images [N, 3, R, R] for the given seeds, generated in batches.

    class_index: for a conditional G, one class for every seed or one per seed (None: from each seed's latent).
    """
    device = device or next(G.parameters()).device
    z_all = seed_latents(seeds, G.z_dim)
    c_all = class_labels(G, class_index, len(seeds))
    out = []
    for i in range(0, len(seeds), batch_size):
        z = z_all[i : i + batch_size].to(device)
        if c_all is None:
            img = G(z, truncation_psi=psi, noise_mode=noise_mode)
        else:
            img = G(z, c_all[i : i + batch_size].to(device), truncation_psi=psi, noise_mode=noise_mode)
        out.append(to_uint8(img).cpu())
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
    G: nn.Module, seed_a: int, seed_b: int, steps: int = 16, psi: float = 0.7, device: str | torch.device | None = None,
    class_index: int | None = None,
) -> list[Image.Image]:
    """Frames walking linearly from seed_a to seed_b (inclusive): in W space for StyleGAN2, else in z
    with one class throughout (`class_index`, default seed_a's class) for a conditional G."""
    device = device or next(G.parameters()).device
    z = seed_latents([seed_a, seed_b], G.z_dim).to(device)
    if not hasattr(G, "mapping"):  # SNGAN/BigGAN: no W space
        t = torch.linspace(0, 1, steps, device=device).view(-1, 1)
        zs = z[0:1].lerp(z[1:2], t)
        c = class_labels(G, class_index, steps) if class_index is not None else None
        if c is None and num_classes_of(G):  # keep seed_a's own class along the walk
            c = classes_from_z(z[0:1], num_classes_of(G)).expand(steps)
        frames = G(zs, truncation_psi=psi) if c is None else G(zs, c.to(device), truncation_psi=psi)
        return to_pil_list(to_uint8(frames).cpu())
    ws = G.mapping(z, truncation_psi=psi)
    t = torch.linspace(0, 1, steps, device=device).view(-1, 1, 1)
    frames = G.synthesis(ws[0:1].lerp(ws[1:2], t), noise_mode="const")
    return to_pil_list(to_uint8(frames).cpu())


def save_gif(frames: list[Image.Image], path: Path, duration_ms: int = 80) -> None:
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=duration_ms, loop=0)
