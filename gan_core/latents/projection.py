"""Projection (GAN inversion): find the W (or W+) latent whose image is closest to a real image.

Our own implementation of NVlabs stylegan2-ada-pytorch `projector.py` (Karras et al. 2020, "Analyzing
and Improving the Image Quality of StyleGAN", Sec. 5): start from the mean W, optimise it with Adam
under a learning-rate ramp-up/ramp-down, add Gaussian noise to the latent that fades out over the
first 3/4 of the steps, and optimise the per-layer noise maps too, with a multi-scale
autocorrelation penalty that keeps them noise-like (renormalised after every step).
Differences from NVlabs, each deliberate:

- the perceptual distance is offline (see `perceptual.py`; NVlabs downloads VGG16 LPIPS);
- `w_plus=True` optimises one w per synthesis layer (Abdal et al. 2019, Image2StyleGAN's W+);
- the result image is rendered from the final latent with the generator's own constant noise,
  as NVlabs' projector.py renders proj.png (its optimised noise maps are discarded there too), so the
  saved latent alone reproduces the reconstruction in sampling, style mixing and SeFa edits;
- a progress callback and a `should_stop` hook, for the service's background jobs.

    result = project(G, target_uint8, ProjectionConfig(steps=500), progress=lambda s, n, d: ...)
    save_w("w.npy", result.w)                         # [1, w_dim] or [1, num_ws, w_dim]
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from ..sampling import to_uint8
from .perceptual import DEFAULT_DISTANCE, DISTANCES, make_distance
from .w import LatentError, device_of, require_stylegan2, to_ws

ProgressFn = Callable[[int, int, float], None]  # (step, total, distance)
StopFn = Callable[[], bool]


@dataclass
class ProjectionConfig:
    steps: int = 1000  # NVlabs projector.py num_steps
    w_plus: bool = False  # False: one w for all layers (NVlabs); True: one per layer (W+)
    distance: str = DEFAULT_DISTANCE  # "inception+pixel" (measured best) | "inception" | "discriminator" | "pixel"
    initial_learning_rate: float = 0.1  # NVlabs
    initial_noise_factor: float = 0.05  # NVlabs: latent noise = w_std * this at step 0
    lr_rampdown_length: float = 0.25  # NVlabs: cosine ramp-down over the last quarter
    lr_rampup_length: float = 0.05  # NVlabs: linear ramp-up over the first 5%
    noise_ramp_length: float = 0.75  # NVlabs: latent noise fades (quadratically) over the first 75%
    regularize_noise_weight: float = 1e5  # NVlabs
    optimize_noise: bool = True  # NVlabs optimises the noise maps (with the regulariser above)
    w_avg_samples: int = 10000  # NVlabs: z samples for the W mean and spread
    num_frames: int = 24  # frames kept for the progress GIF (NVlabs writes every step to an mp4)
    seed: int = 303  # NVlabs projector.py --seed default

    def validate(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.distance not in DISTANCES:
            raise ValueError(f"unknown distance {self.distance!r}; choose one of {', '.join(DISTANCES)}")
        if self.w_avg_samples < 2:
            raise ValueError("w_avg_samples must be >= 2")


@dataclass
class ProjectionResult:
    w: Tensor  # [1, w_dim] (W) or [1, num_ws, w_dim] (W+), on the CPU
    image: Tensor  # uint8 [3, R, R]: the reconstruction, rendered from `w` with G's constant noise
    target: Tensor  # uint8 [3, R, R]
    distance: float  # the chosen distance between `image` and `target`
    distances: list[float]  # the distance at every step (with that step's latent and noise perturbations)
    frames: list[Image.Image]  # target | current image side by side at num_frames steps, then the result
    steps: int  # steps run (fewer than asked when should_stop() ended it)
    stopped: bool
    config: ProjectionConfig
    noise: dict[str, Tensor] = field(default_factory=dict)  # the optimised noise maps (not used by `image`)

    def pixel_mse(self) -> float:
        """Mean squared error of image and target in [0, 1] units."""
        return float(((self.image.float() - self.target.float()) / 255).square().mean())

    def summary(self) -> dict:
        return {"distance": self.distance, "distance_name": self.config.distance, "pixel_mse": self.pixel_mse(),
                "steps": self.steps, "stopped": self.stopped, "w_plus": self.config.w_plus,
                "latent_shape": list(self.w.shape), "initial_distance": self.distances[0] if self.distances else None}


def load_target(path: Path | str | BinaryIO, resolution: int) -> Tensor:
    """An image file (a path or an open binary file) as uint8 [3, R, R]: centre crop to a square, LANCZOS
    resize (NVlabs projector.py)."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        s = min(w, h)
        im = im.crop(((w - s) // 2, (h - s) // 2, (w + s) // 2, (h + s) // 2))
        im = im.resize((resolution, resolution), Image.LANCZOS)
        return torch.from_numpy(np.array(im, dtype=np.uint8)).permute(2, 0, 1).contiguous()


@torch.no_grad()
def w_stats(G: nn.Module, num_samples: int = 10000, seed: int = 123, batch_size: int = 1000) -> tuple[Tensor, float]:
    """Mean W [w_dim] and its spread (root mean squared distance to the mean) from `num_samples` z
    drawn with numpy RandomState(123), as NVlabs' projector computes them."""
    z = torch.from_numpy(np.random.RandomState(seed).randn(num_samples, G.z_dim)).float()
    ws = torch.cat([G.mapping(z[i : i + batch_size].to(device_of(G)))[:, 0].float()
                    for i in range(0, num_samples, batch_size)])
    mean = ws.mean(dim=0)
    std = float(((ws - mean).square().sum() / num_samples).sqrt())
    return mean, std


def lr_at(cfg: ProjectionConfig, t: float) -> float:
    """NVlabs' schedule at progress t in [0, 1): linear ramp-up, cosine ramp-down."""
    ramp = min(1.0, (1.0 - t) / cfg.lr_rampdown_length)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    ramp = ramp * min(1.0, t / cfg.lr_rampup_length)
    return cfg.initial_learning_rate * ramp


def noise_regularization(bufs: list[Tensor]) -> Tensor:
    """Squared autocorrelation (1-pixel shifts in x and y) of each noise map, at every octave down to 8x8."""
    loss = torch.zeros([], device=bufs[0].device) if bufs else torch.zeros([])
    for v in bufs:
        noise = v[None, None]
        while True:
            loss = loss + (noise * torch.roll(noise, shifts=1, dims=3)).mean() ** 2
            loss = loss + (noise * torch.roll(noise, shifts=1, dims=2)).mean() ** 2
            if noise.shape[2] <= 8:
                break
            noise = F.avg_pool2d(noise, kernel_size=2)
    return loss


def _frame(target: Tensor, image: Tensor) -> Image.Image:
    return Image.fromarray(torch.cat([target, image], dim=2).permute(1, 2, 0).numpy())


def project(
    G: nn.Module,
    target: Tensor,
    config: ProjectionConfig | None = None,
    *,
    D: nn.Module | None = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> ProjectionResult:
    """Project `target` (uint8 [3, R, R] at G's resolution) into G's W (or W+) space.

    Runs on G's device and leaves G untouched (a private copy's noise maps are optimised).
    `D` is needed only for `distance="discriminator"`. `progress(step, total, distance)` is called
    after every step; `should_stop()` is checked before every step and ends the run early (the
    result then holds the latent reached so far, `stopped=True`). Deterministic for a fixed
    `config.seed`, device and thread count."""
    require_stylegan2(G)
    cfg = config or ProjectionConfig()
    cfg.validate()
    res = G.img_resolution
    if target.dtype != torch.uint8 or tuple(target.shape) != (G.img_channels, res, res):
        raise LatentError(f"target must be uint8 [{G.img_channels}, {res}, {res}] (load_target resizes a file), "
                          f"got {target.dtype} {list(target.shape)}")
    device = device_of(G)
    G = copy.deepcopy(G).eval().requires_grad_(False)
    gen = torch.Generator().manual_seed(cfg.seed)  # on the CPU: the same draws on any device

    def randn_like(t: Tensor) -> Tensor:
        return torch.randn(t.shape, generator=gen).to(t.device)

    w_mean, w_std = w_stats(G, cfg.w_avg_samples)
    dist_fn = make_distance(cfg.distance, target, D=D, device=device)
    noise_bufs = {name: buf for name, buf in G.synthesis.named_buffers() if name.endswith("noise_const")}
    original_noise = {name: buf.detach().clone() for name, buf in noise_bufs.items()}

    w_opt = w_mean.to(device)[None, None].repeat(1, G.num_ws if cfg.w_plus else 1, 1).requires_grad_(True)
    params = [w_opt]
    if cfg.optimize_noise:
        for buf in noise_bufs.values():
            buf.copy_(randn_like(buf))
            buf.requires_grad_(True)
            params.append(buf)
    optimizer = torch.optim.Adam(params, betas=(0.9, 0.999), lr=cfg.initial_learning_rate)

    target_cpu = target.cpu()
    frame_steps = set(np.linspace(0, cfg.steps - 1, max(1, min(cfg.num_frames, cfg.steps))).round().astype(int).tolist())
    frames: list[Image.Image] = []
    distances: list[float] = []
    stopped = False
    step = 0
    for step in range(cfg.steps):
        if should_stop is not None and should_stop():
            stopped = True
            break
        t = step / cfg.steps
        w_noise_scale = w_std * cfg.initial_noise_factor * max(0.0, 1.0 - t / cfg.noise_ramp_length) ** 2
        for group in optimizer.param_groups:
            group["lr"] = lr_at(cfg, t)

        ws = (w_opt + randn_like(w_opt) * w_noise_scale).expand(-1, G.num_ws, -1)
        images = G.synthesis(ws, noise_mode="const")
        dist = dist_fn(images).sum()
        loss = dist
        if cfg.optimize_noise:
            loss = loss + noise_regularization(list(noise_bufs.values())) * cfg.regularize_noise_weight

        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if cfg.optimize_noise:
            with torch.no_grad():  # NVlabs: renormalise each noise map to zero mean, unit variance
                for buf in noise_bufs.values():
                    buf -= buf.mean()
                    buf *= buf.square().mean().rsqrt()

        distances.append(float(dist.detach()))
        if step in frame_steps:
            frames.append(_frame(target_cpu, to_uint8(images[0]).cpu()))
        if progress is not None:
            progress(step + 1, cfg.steps, distances[-1])
    steps_run = step if stopped else cfg.steps

    noise = {name: buf.detach().cpu().clone() for name, buf in noise_bufs.items()} if cfg.optimize_noise else {}
    w = w_opt.detach()
    w_out = w[:, 0].cpu() if not cfg.w_plus else w.cpu()  # [1, w_dim] or [1, num_ws, w_dim]
    # The reconstruction with the generator's own noise (the original G's buffers), from the latent alone.
    with torch.no_grad():
        for name, buf in noise_bufs.items():
            buf.requires_grad_(False)
            buf.copy_(original_noise[name])
        final = G.synthesis(to_ws(G, w_out), noise_mode="const")
        final_dist = float(dist_fn(final)[0])
    image = to_uint8(final[0]).cpu()
    frames.append(_frame(target_cpu, image))  # the GIF ends on the result
    return ProjectionResult(w=w_out, image=image, target=target_cpu, distance=final_dist, distances=distances,
                            frames=frames, steps=steps_run, stopped=stopped, config=cfg, noise=noise)
