"""A tiny deterministic image folder (coloured shapes) for tests and examples
that must run without ../shared/datasets."""

from __future__ import annotations

import os
import random
from pathlib import Path

from PIL import Image, ImageDraw

_SHAPES = ("ellipse", "rectangle", "triangle")


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: tuple[float, float, float, float], color: tuple[int, int, int]) -> None:
    x0, y0, x1, y1 = box
    if shape == "ellipse":
        draw.ellipse(box, fill=color)
    elif shape == "rectangle":
        draw.rectangle(box, fill=color)
    else:
        draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=color)


def make_synthetic_dataset(out_dir: str | os.PathLike, n: int = 16, resolution: int = 64, seed: int = 0,
                           num_classes: int = 0) -> Path:
    """Write `n` PNGs (`img000.png`, ...) of one shape on a plain background; returns `out_dir`.

    With num_classes > 0, image i goes to `class{i % num_classes}/` and its class fixes
    the shape (class k: _SHAPES[k % 3]) and the hue family, so classes are learnable.
    Same arguments -> byte-identical files (random.Random, no global state).
    """
    if n < 1 or resolution < 4 or num_classes < 0:
        raise ValueError(f"need n >= 1, resolution >= 4, num_classes >= 0; got {n}, {resolution}, {num_classes}")
    out = Path(out_dir)
    rng = random.Random(seed)
    for i in range(n):
        cls = i % num_classes if num_classes else None
        shape = _SHAPES[cls % 3] if cls is not None else rng.choice(_SHAPES)
        bg = tuple(rng.randrange(0, 96) for _ in range(3))  # dark background, bright shape: clear edges
        fg = [rng.randrange(128, 256) for _ in range(3)]
        if cls is not None:
            fg[cls % 3] = 255  # class-dependent dominant channel
        size = rng.uniform(0.35, 0.75) * resolution
        cx = rng.uniform(size / 2, resolution - size / 2)
        cy = rng.uniform(size / 2, resolution - size / 2)
        img = Image.new("RGB", (resolution, resolution), bg)  # type: ignore[arg-type]
        _draw_shape(ImageDraw.Draw(img), shape, (cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2), tuple(fg))  # type: ignore[arg-type]
        folder = out / f"class{cls}" if cls is not None else out
        folder.mkdir(parents=True, exist_ok=True)
        img.save(folder / f"img{i:03d}.png")
    return out
