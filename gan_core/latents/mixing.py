"""Style mixing (Karras et al. 2019, StyleGAN Sec. 3.1 and Fig. 3), with NVlabs style_mixing.py semantics:
a mixed latent takes the row source's w everywhere except the layers in `col_styles`, which come from
the column source. Coarse layers (0-3: pose, shape) come first, fine ones (colour, texture) last.

    ws = mix_ws(G, w_row, w_col, col_styles=range(0, 7))
    grid, cells = mixing_grid(G, row_seeds=[1, 2, 3], col_seeds=[10, 11], col_styles=[0, 1, 2, 3])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image
from torch import Tensor, nn

from ..specs import parse_seeds
from .w import LatentError, render, to_ws, truncate, w_from_seeds


def parse_styles(spec: str | Sequence[int], num_ws: int) -> list[int]:
    """'0-6' / '0,2,4' / [0, 1] -> sorted layer indices, each in [0, num_ws)."""
    if isinstance(spec, str):
        try:
            layers = parse_seeds(spec)
        except ValueError:
            raise LatentError(f"styles {spec!r}: give layer indices like 0-6 or 0,2,4") from None
    else:
        layers = [int(i) for i in spec]
    bad = [i for i in layers if not 0 <= i < num_ws]
    if bad or not layers:
        raise LatentError(f"style layers must be in 0..{num_ws - 1} (this generator has {num_ws} w inputs); "
                          f"got {bad or 'none'}")
    return sorted(set(layers))


def mix_ws(G: nn.Module, w_row: Tensor, w_col: Tensor, col_styles: str | Sequence[int]) -> Tensor:
    """[N, num_ws, w_dim]: w_row's latents with the `col_styles` layers taken from w_col (W or W+ each;
    N rows paired with N columns, or one of them broadcast)."""
    rows, cols = to_ws(G, w_row), to_ws(G, w_col)
    if len(rows) != len(cols):
        if len(rows) == 1:
            rows = rows.expand(len(cols), -1, -1)
        elif len(cols) == 1:
            cols = cols.expand(len(rows), -1, -1)
        else:
            raise LatentError(f"{len(rows)} row latents and {len(cols)} column latents: give as many, or one of either")
    layers = parse_styles(col_styles, G.num_ws)
    ws = rows.clone()
    ws[:, layers] = cols[:, layers]
    return ws


def style_mix(G: nn.Module, w_row: Tensor, w_col: Tensor, col_styles: str | Sequence[int],
              noise_mode: str = "const") -> Tensor:
    """uint8 images [N, 3, R, R] of the mixed latents (see mix_ws)."""
    return render(G, mix_ws(G, w_row, w_col, col_styles), noise_mode=noise_mode)


def mixing_grid(
    G: nn.Module,
    row_seeds: Sequence[int],
    col_seeds: Sequence[int],
    col_styles: str | Sequence[int] = "0-6",  # NVlabs style_mixing.py --styles default
    psi: float = 1.0,  # NVlabs --trunc default
    noise_mode: str = "const",  # NVlabs --noise-mode default
    row_w: Tensor | None = None,
    col_w: Tensor | None = None,
) -> tuple[Image.Image, dict[tuple[int, int], Tensor]]:
    """The StyleGAN papers' figure: column sources along the top, row sources down the left, and in
    cell (r, c) row r's image with column c's `col_styles` layers. Latents come from the seeds (truncated
    by psi, as NVlabs truncates W before mixing) or, when given, from row_w / col_w ([N, w_dim] or
    [N, num_ws, w_dim], e.g. projected images; the seeds then only label them).
    Returns the grid (black top-left corner, no padding, as NVlabs' grid.png) and every image by
    (row, col) key, where (s, s) is source s itself."""
    rows = to_ws(G, row_w) if row_w is not None else to_ws(G, w_from_seeds(G, row_seeds))
    cols = to_ws(G, col_w) if col_w is not None else to_ws(G, w_from_seeds(G, col_seeds))
    if len(rows) != len(row_seeds) or len(cols) != len(col_seeds):
        raise LatentError("give one latent per row and per column")
    rows, cols = truncate(G, rows, psi), truncate(G, cols, psi)
    layers = parse_styles(col_styles, G.num_ws)
    cells: dict[tuple[int, int], Tensor] = {}
    # One image per call: the same batch shape as a plain sample, so an unmixed cell is bit-identical to it.
    for r, w in zip(row_seeds, rows):
        cells[(r, r)] = render(G, w[None], noise_mode=noise_mode)[0]
    for c, w in zip(col_seeds, cols):
        cells[(c, c)] = render(G, w[None], noise_mode=noise_mode)[0]
    for r, wr in zip(row_seeds, rows):
        for c, wc in zip(col_seeds, cols):
            cells[(r, c)] = render(G, mix_ws(G, wr[None], wc[None], layers), noise_mode=noise_mode)[0]

    res = G.img_resolution
    canvas = torch.zeros(3, res * (len(row_seeds) + 1), res * (len(col_seeds) + 1), dtype=torch.uint8)
    for j, c in enumerate(col_seeds, start=1):
        canvas[:, :res, j * res : (j + 1) * res] = cells[(c, c)]
    for i, r in enumerate(row_seeds, start=1):
        canvas[:, i * res : (i + 1) * res, :res] = cells[(r, r)]
        for j, c in enumerate(col_seeds, start=1):
            canvas[:, i * res : (i + 1) * res, j * res : (j + 1) * res] = cells[(r, c)]
    return Image.fromarray(canvas.permute(1, 2, 0).numpy()), cells
