"""W-space utilities for StyleGAN2 generators: latents from seeds, truncation, rendering, interpolation,
and `.npy` files.

Shapes: a W latent is `[w_dim]` (one vector for every layer) or W+ `[num_ws, w_dim]` (one per layer);
batches add a leading N. `to_ws` turns any of them into what `G.synthesis` takes, `[N, num_ws, w_dim]`.
Seeds map to z exactly as `gan_core.sampling` (NVlabs' generate.py), so seed 7 here is seed 7 there,
and `render(G, w_from_seeds(G, [7], psi))` is bit-for-bit `generate_images(G, [7], psi)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from ..sampling import seed_latents, to_pil_list, to_uint8


class LatentError(ValueError):
    """The generator or the latent does not fit the operation (the message says why)."""


def require_stylegan2(G: nn.Module) -> None:
    """W-space tools need StyleGAN2's mapping/synthesis split; SNGAN/BigGAN have no W space."""
    if not (hasattr(G, "mapping") and hasattr(G, "synthesis") and hasattr(G, "num_ws")):
        arch = getattr(getattr(G, "cfg", None), "arch", type(G).__name__)
        raise LatentError(f"this needs a StyleGAN2 generator (W space: mapping + synthesis); this one is {arch!r}, "
                          "which has none - projection, style mixing and SeFa work on stylegan2 checkpoints only")


def device_of(G: nn.Module) -> torch.device:
    return next(G.parameters()).device


def w_avg(G: nn.Module) -> Tensor:
    """The running mean of W tracked during training (what truncation pulls towards), [w_dim]."""
    require_stylegan2(G)
    return G.mapping.w_avg.detach().clone()


def truncate(G: nn.Module, w: Tensor, psi: float = 1.0) -> Tensor:
    """w_avg + psi * (w - w_avg), the truncation trick, for any latent shape ([..., w_dim])."""
    if psi == 1:
        return w
    return G.mapping.w_avg.to(w.device).lerp(w, psi)  # the same op as MappingNetwork.forward's truncation


@torch.no_grad()
def w_from_z(G: nn.Module, z: Tensor, psi: float = 1.0) -> Tensor:
    """W latents [N, w_dim] of z [N, z_dim], truncated toward w_avg by psi."""
    require_stylegan2(G)
    ws = G.mapping(z.to(device_of(G)), truncation_psi=psi)
    return ws[:, 0]


def w_from_seeds(G: nn.Module, seeds: Sequence[int], psi: float = 1.0) -> Tensor:
    """W latents [N, w_dim] of seeds (NVlabs' seed -> z), truncated toward w_avg by psi."""
    require_stylegan2(G)
    return w_from_z(G, seed_latents(seeds, G.z_dim), psi)


def to_ws(G: nn.Module, w: Tensor) -> Tensor:
    """[w_dim] | [N, w_dim] (W) | [N, num_ws, w_dim] (W+) -> [N, num_ws, w_dim] on G's device."""
    require_stylegan2(G)
    w = torch.as_tensor(w, dtype=torch.float32).to(device_of(G))
    if w.ndim == 1:
        w = w[None]
    if w.ndim == 2 and w.shape[1] == G.w_dim:
        return w[:, None, :].repeat(1, G.num_ws, 1)
    if w.ndim == 3 and tuple(w.shape[1:]) == (G.num_ws, G.w_dim):
        return w
    raise LatentError(f"a latent must be [w_dim], [N, w_dim] (W) or [N, num_ws, w_dim] (W+) with w_dim={G.w_dim}, "
                      f"num_ws={G.num_ws}; got {list(w.shape)}")


def synthesize(G: nn.Module, ws: Tensor, noise_mode: str = "const") -> Tensor:
    """Float images in [-1, 1] of ws [N, num_ws, w_dim] (gradients flow when enabled)."""
    return G.synthesis(ws, noise_mode=noise_mode)


@torch.no_grad()
def render(G: nn.Module, w: Tensor, psi: float = 1.0, noise_mode: str = "const", batch_size: int = 16) -> Tensor:
    """uint8 images [N, 3, R, R] of W or W+ latents, truncated toward w_avg by psi first."""
    ws = truncate(G, to_ws(G, w), psi)
    out = [to_uint8(synthesize(G, ws[i : i + batch_size], noise_mode)).cpu() for i in range(0, len(ws), batch_size)]
    return torch.cat(out)


def lerp_w(w_a: Tensor, w_b: Tensor, steps: int) -> Tensor:
    """`steps` latents from w_a to w_b inclusive, linear in W (any matching shapes): [steps, *w_a.shape]."""
    if steps < 2:
        raise LatentError(f"an interpolation needs at least 2 steps, got {steps}")
    if w_a.shape != w_b.shape:
        raise LatentError(f"both ends must have the same shape, got {list(w_a.shape)} and {list(w_b.shape)}")
    t = torch.linspace(0, 1, steps, device=w_a.device).view(-1, *([1] * w_a.ndim))
    return w_a[None].lerp(w_b[None].to(w_a.device), t)


def interpolation_frames_w(G: nn.Module, w_a: Tensor, w_b: Tensor, steps: int = 16, psi: float = 1.0) -> list[Image.Image]:
    """Frames of a linear walk in W (or W+) between two latents, e.g. two projected images."""
    ws_a, ws_b = to_ws(G, w_a), to_ws(G, w_b)
    if len(ws_a) != 1 or len(ws_b) != 1:
        raise LatentError("interpolate between two single latents ([w_dim] or [num_ws, w_dim] each)")
    return to_pil_list(render(G, lerp_w(ws_a[0], ws_b[0], steps), psi=psi))


# ---------------------------------------------------------------------------------------- files


def save_w(path: Path | str, w: Tensor) -> Path:
    """A latent as float32 .npy, with its batch dimension: [N, w_dim] (W) or [N, num_ws, w_dim] (W+)."""
    arr = torch.as_tensor(w).detach().float().cpu().numpy()
    if arr.ndim == 1:  # one W latent; a single W+ latent must come as [1, num_ws, w_dim]
        arr = arr[None]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, arr.astype(np.float32))
    return path


def load_w(path: Path | str, G: nn.Module | None = None) -> Tensor:
    """A latent saved by `save_w` (or NVlabs' projected_w.npz 'w' array, [1, num_ws, w_dim]); checked
    against G's w_dim/num_ws when G is given."""
    path = Path(path)
    if path.suffix == ".npz":
        with np.load(path) as data:
            if "w" not in data:
                raise LatentError(f"{path}: an .npz latent needs a 'w' array (NVlabs' projector), found {list(data)}")
            arr = data["w"]
    else:
        arr = np.load(path, allow_pickle=False)
    w = torch.from_numpy(np.asarray(arr, dtype=np.float32))
    if G is not None:
        to_ws(G, w)  # raises LatentError naming the expected shapes
    return w
