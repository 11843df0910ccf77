"""Tiny deterministic image sets (coloured shapes) for tests and benchmarks that must run
without ../shared/datasets: unlabelled, or with one folder per class.

    make_synthetic_dataset(out, n=16, resolution=64)                       # one folder of PNGs
    make_synthetic_dataset(out, n=500, resolution=32, num_classes=10)      # class0/ .. class9/, 50 each
    write_synthetic_classes(out, num_classes=10, per_class=50)             # the same set
    zip_folder(out, "ten-class.zip")                                       # a zip with one folder per class

With num_classes <= 10 every class has its own shape *and* its own colour (CLASS_STYLES), so the
classes are distinct at a glance and a class-conditional GAN has something to learn.
"""

from __future__ import annotations

import colorsys
import math
import os
import random
import zipfile
from pathlib import Path

from PIL import Image, ImageDraw

_SHAPES = ("ellipse", "rectangle", "triangle")

# Class k (k < 10): (shape, RGB). Ten shapes x ten hues, no two classes share either.
CLASS_STYLES: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("disc", (235, 40, 40)),  # red
    ("square", (40, 200, 60)),  # green
    ("triangle", (50, 90, 240)),  # blue
    ("diamond", (240, 220, 40)),  # yellow
    ("plus", (230, 50, 220)),  # magenta
    ("ring", (40, 220, 230)),  # cyan
    ("hstripes", (250, 140, 20)),  # orange
    ("vstripes", (245, 245, 245)),  # white
    ("cross", (150, 70, 240)),  # violet
    ("half", (150, 110, 60)),  # brown
)


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: tuple[float, float, float, float], color: tuple[int, int, int]) -> None:
    x0, y0, x1, y1 = box
    if shape == "ellipse":
        draw.ellipse(box, fill=color)
    elif shape == "rectangle":
        draw.rectangle(box, fill=color)
    else:
        draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=color)


def _draw_class_shape(draw: ImageDraw.ImageDraw, shape: str, box: tuple[float, float, float, float],
                      color: tuple[int, int, int]) -> None:
    x0, y0, x1, y1 = box
    cx, cy, s = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0
    t = max(2.0, s / 4)  # stroke width of the line shapes
    if shape == "disc":
        draw.ellipse(box, fill=color)
    elif shape == "square":
        draw.rectangle(box, fill=color)
    elif shape == "triangle":
        draw.polygon([(cx, y0), (x1, y1), (x0, y1)], fill=color)
    elif shape == "diamond":
        draw.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=color)
    elif shape == "plus":
        draw.rectangle((cx - t / 2, y0, cx + t / 2, y1), fill=color)
        draw.rectangle((x0, cy - t / 2, x1, cy + t / 2), fill=color)
    elif shape == "ring":
        draw.ellipse(box, outline=color, width=int(round(t * 0.8)))
    elif shape == "hstripes":
        for k in range(3):
            y = y0 + k * s / 2.5
            draw.rectangle((x0, y, x1, y + s / 5), fill=color)
    elif shape == "vstripes":
        for k in range(3):
            x = x0 + k * s / 2.5
            draw.rectangle((x, y0, x + s / 5, y1), fill=color)
    elif shape == "cross":
        draw.line((x0, y0, x1, y1), fill=color, width=int(round(t)))
        draw.line((x0, y1, x1, y0), fill=color, width=int(round(t)))
    else:  # "half": the upper half of a disc
        draw.pieslice(box, 180, 360, fill=color)


def class_style(k: int) -> tuple[str, tuple[int, int, int]]:
    """Shape and colour of class k: CLASS_STYLES for k < 10, beyond that shapes repeat with new hues."""
    if k < len(CLASS_STYLES):
        return CLASS_STYLES[k]
    h = (k * 0.6180339887) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, 0.8, 0.95)
    return CLASS_STYLES[k % len(CLASS_STYLES)][0], (int(r * 255), int(g * 255), int(b * 255))


def class_folder_name(k: int, num_classes: int) -> str:
    """'class3', zero-padded when there are more than 10 classes so that sorted names = class order."""
    width = len(str(num_classes - 1))
    return f"class{k:0{width}d}"


def make_synthetic_dataset(out_dir: str | os.PathLike, n: int = 16, resolution: int = 64, seed: int = 0,
                           num_classes: int = 0) -> Path:
    """Write `n` PNGs (`img000.png`, ...) of one shape on a plain background; returns `out_dir`.

    num_classes = 0: random shapes and colours in one folder (unchanged since the first release,
    so existing tests keep their exact pixels).
    num_classes > 0: image i goes to `class{i % num_classes}/` (see `class_folder_name`); its class
    fixes the shape and colour (`class_style`), while size, position, background and a small colour
    jitter vary. `prepare_dataset(out_dir, class_folders=True)` reads the labels back (class k = label k).
    Same arguments -> byte-identical files (random.Random, no global state).
    """
    if n < 1 or resolution < 4 or num_classes < 0:
        raise ValueError(f"need n >= 1, resolution >= 4, num_classes >= 0; got {n}, {resolution}, {num_classes}")
    out = Path(out_dir)
    rng = random.Random(seed)
    for i in range(n):
        if num_classes:
            img = _class_image(rng, i % num_classes, resolution)
            folder = out / class_folder_name(i % num_classes, num_classes)
        else:
            img = _plain_image(rng, resolution)
            folder = out
        folder.mkdir(parents=True, exist_ok=True)
        img.save(folder / f"img{i:03d}.png")
    return out


def write_synthetic_classes(out_dir: str | os.PathLike, num_classes: int = 10, per_class: int = 50,
                            resolution: int = 32, seed: int = 0) -> Path:
    """The labelled benchmark set: `per_class` images of each of `num_classes` classes as class folders
    (`make_synthetic_dataset(out_dir, n=num_classes * per_class, resolution, seed, num_classes)`)."""
    if num_classes < 1 or per_class < 1:
        raise ValueError(f"need num_classes >= 1 and per_class >= 1, got {num_classes}, {per_class}")
    return make_synthetic_dataset(out_dir, n=num_classes * per_class, resolution=resolution, seed=seed,
                                  num_classes=num_classes)


def _plain_image(rng: random.Random, resolution: int) -> Image.Image:
    shape = rng.choice(_SHAPES)
    bg = tuple(rng.randrange(0, 96) for _ in range(3))  # dark background, bright shape: clear edges
    fg = [rng.randrange(128, 256) for _ in range(3)]
    size = rng.uniform(0.35, 0.75) * resolution
    cx = rng.uniform(size / 2, resolution - size / 2)
    cy = rng.uniform(size / 2, resolution - size / 2)
    img = Image.new("RGB", (resolution, resolution), bg)  # type: ignore[arg-type]
    _draw_shape(ImageDraw.Draw(img), shape, (cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2), tuple(fg))  # type: ignore[arg-type]
    return img


def _class_image(rng: random.Random, k: int, resolution: int) -> Image.Image:
    shape, color = class_style(k)
    bg = tuple(rng.randrange(0, 60) for _ in range(3))  # dark, so every class colour stands out
    fg = tuple(max(0, min(255, c + rng.randrange(-20, 21))) for c in color)
    size = rng.uniform(0.5, 0.85) * resolution
    cx = rng.uniform(size / 2, resolution - size / 2)
    cy = rng.uniform(size / 2, resolution - size / 2)
    img = Image.new("RGB", (resolution, resolution), bg)  # type: ignore[arg-type]
    box = (math.floor(cx - size / 2), math.floor(cy - size / 2), math.ceil(cx + size / 2) - 1, math.ceil(cy + size / 2) - 1)
    _draw_class_shape(ImageDraw.Draw(img), shape, box, fg)  # type: ignore[arg-type]
    return img


def zip_folder(folder: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Zip `folder`'s files (paths relative to it, e.g. `class3/img003.png`) into `dest`, deterministically.

    A zip of class folders is what `POST /v1/datasets` with `class_folders=true` expects.
    """
    src, dest = Path(folder), Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
        for path in sorted(p for p in src.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(path.relative_to(src).as_posix(), date_time=(2020, 1, 1, 0, 0, 0))
            zf.writestr(info, path.read_bytes())
    os.replace(tmp, dest)
    return dest
