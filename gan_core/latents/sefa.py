"""SeFa, closed-form factorisation of latent semantics (Shen & Zhou, CVPR 2021).

The style of synthesis layer k is an affine map of w: s_k = A_k w + b_k. Moving w along a unit n
changes the styles of the chosen layers by A n, so the directions that change them most are the
top eigenvectors of A^T A, with A the chosen layers' affine weights stacked (each style channel's
weight row scaled to unit length first, as the authors' code does). No training, no data.

Layer k is the synthesis layer that reads ws[k] (b4.conv1, b8.conv0, b8.conv1, ...) and the last
index is the final ToRGB, as in the authors' genforce/sefa code for StyleGAN2; the default layer
range is theirs too ("all" = every layer but that last ToRGB). An edit adds strength x direction to
the same layers' w, so an edit of a projected W latent becomes a W+ latent when the range is partial.

    sefa = sefa_directions(G, num=5)                     # layers=None: 0..num_ws-2
    ws = apply_direction(G, w, sefa.directions[0], 3.0, sefa.layers)
    strip, images = edit_strip(G, w, sefa, index=0, strengths=[-3, -1, 0, 1, 3])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from PIL import Image
from torch import Tensor, nn

from ..sampling import make_grid
from .mixing import parse_styles
from .w import LatentError, render, require_stylegan2, to_ws


def style_affines(G: nn.Module) -> list[nn.Module]:
    """The affine (style) layer reading each ws index, in ws order: num_ws entries."""
    require_stylegan2(G)
    syn = G.synthesis
    out = []
    for res in syn.block_resolutions:
        block = getattr(syn, f"b{res}")
        if hasattr(block, "conv0"):
            out.append(block.conv0.affine)
        out.append(block.conv1.affine)
    out.append(getattr(syn, f"b{syn.block_resolutions[-1]}").torgb.affine)
    if len(out) != G.num_ws:
        raise LatentError(f"found {len(out)} style layers for {G.num_ws} ws; not a StyleGAN2 skip generator")
    return out


@dataclass
class SeFa:
    directions: Tensor  # [num, w_dim], unit vectors, strongest first
    eigenvalues: Tensor  # [num]
    layers: list[int]  # the ws indices they were computed from (and are applied to)


def sefa_directions(G: nn.Module, num: int = 5, layers: str | Sequence[int] | None = None) -> SeFa:
    """The top-`num` SeFa directions of the style layers `layers` (None: 0..num_ws-2, genforce's "all")."""
    affines = style_affines(G)
    idx = list(range(G.num_ws - 1)) if layers is None else parse_styles(layers, G.num_ws)
    if not 1 <= num <= G.w_dim:
        raise LatentError(f"num must be in 1..{G.w_dim} (w_dim), got {num}")
    A = torch.cat([affines[k].weight.detach().double().cpu() for k in idx])  # [sum of channels, w_dim]
    A = A / A.norm(dim=1, keepdim=True)
    eigenvalues, vectors = torch.linalg.eigh(A.T @ A)  # ascending, orthonormal columns
    order = eigenvalues.argsort(descending=True)[:num]
    directions = vectors[:, order].T  # [num, w_dim]
    # An eigenvector's sign is arbitrary: make the largest component positive, so a direction is stable.
    signs = torch.sign(directions.gather(1, directions.abs().argmax(dim=1, keepdim=True)))
    directions = directions * signs
    return SeFa(directions.float(), eigenvalues[order].float(), idx)


def apply_direction(G: nn.Module, w: Tensor, direction: Tensor, strength: float,
                    layers: str | Sequence[int] | None = None) -> Tensor:
    """ws [N, num_ws, w_dim]: `w` (W or W+) moved by strength x direction on `layers` (None: 0..num_ws-2)."""
    ws = to_ws(G, w).clone()
    idx = list(range(G.num_ws - 1)) if layers is None else parse_styles(layers, G.num_ws)
    direction = torch.as_tensor(direction, dtype=torch.float32, device=ws.device).reshape(-1)
    if direction.numel() != G.w_dim:
        raise LatentError(f"a direction has w_dim={G.w_dim} entries, got {direction.numel()}")
    ws[:, idx] += float(strength) * direction
    return ws


def edit_strip(G: nn.Module, w: Tensor, sefa: SeFa, index: int = 0,
               strengths: Sequence[float] = (-3, -1.5, 0, 1.5, 3)) -> tuple[Image.Image, Tensor]:
    """One latent rendered along SeFa direction `index` at each strength: (a one-row strip image,
    uint8 images [len(strengths), 3, R, R]). Strength 0 is the unedited latent."""
    if not 0 <= index < len(sefa.directions):
        raise LatentError(f"direction {index} does not exist: {len(sefa.directions)} were computed (0..{len(sefa.directions) - 1})")
    ws = to_ws(G, w)
    if len(ws) != 1:
        raise LatentError("edit one latent at a time ([w_dim] or [1, ...])")
    edited = torch.cat([apply_direction(G, ws, sefa.directions[index], s, sefa.layers) for s in strengths])
    images = torch.cat([render(G, e[None]) for e in edited])  # one at a time: strength 0 == the plain sample, bit for bit
    return make_grid(images, nrow=len(strengths)), images
