"""Memorisation check: nearest training images of generated samples in Inception space.

Distance: **cosine distance** ``1 - cos(f_gen, f_train)`` between the 2048-d Inception pool3
features (computed in float64). Range [0, 2]; 0 means the same direction in feature space,
so an exact copy of a training image is at ~0 (up to float rounding, < 1e-5). Cosine rather
than L2 because it is insensitive to the overall activation magnitude (contrast/brightness
changes scale the pool features) and its scale does not depend on the dataset.

To calibrate "how close is close", the report also gives the leave-one-out nearest-neighbour
distance among the training images themselves (``train_nn_distance``) and, per sample,
``ratio`` = (its nearest distance) / (median training leave-one-out distance). Samples with
ratio < ``copy_ratio`` (default 0.5) are listed in ``suspected_copies``: a heuristic flag to
look at the grid, not proof.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .features import FEATURE_SPEC, FeatureExtractor, iter_uint8_hwc


def _unit(feats: np.ndarray) -> np.ndarray:
    f = np.asarray(feats, dtype=np.float64)
    return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)


def cosine_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[Na, Nb] cosine distances between feature rows (clipped to [0, 2])."""
    return np.clip(1.0 - _unit(a) @ _unit(b).T, 0.0, 2.0)


def nearest_neighbors(gen_feats: np.ndarray, train_feats: np.ndarray, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """(indices [Ng, k], distances [Ng, k]) of the k nearest training rows, closest first."""
    d = cosine_distances(gen_feats, train_feats)
    k = min(k, d.shape[1])
    idx = np.argsort(d, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(d, idx, axis=1)


def _thumb(img_hwc: np.ndarray, size: int) -> Image.Image:
    im = Image.fromarray(np.ascontiguousarray(img_hwc))
    if im.size != (size, size):
        im = im.resize((size, size), Image.LANCZOS)
    return im


def _grid(
    gen: Sequence[np.ndarray],
    train: Sequence[np.ndarray],
    idx: np.ndarray,
    dist: np.ndarray,
    rows: int,
    thumb: int,
) -> Image.Image:
    k = idx.shape[1]
    label_h, pad, sep = 12, 2, 6  # sep: a wider gap after the sample column
    width = pad + thumb + sep + k * (thumb + pad)
    height = pad + rows * (thumb + label_h + pad)
    canvas = Image.new("RGB", (width, max(height, 1)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for r in range(rows):
        y = pad + r * (thumb + label_h + pad)
        canvas.paste(_thumb(gen[r], thumb), (pad, y))
        draw.text((pad + 1, y + thumb), f"gen {r}", fill=(0, 0, 0), font=font)
        for j in range(k):
            x = pad + thumb + sep + j * (thumb + pad)
            canvas.paste(_thumb(train[int(idx[r, j])], thumb), (x, y))
            draw.text((x + 1, y + thumb), f"#{int(idx[r, j])} d={dist[r, j]:.3f}", fill=(160, 0, 0), font=font)
    return canvas


def memorization_report(
    gen_uint8: Any,
    train_uint8: Any,
    k: int = 3,
    extractor: FeatureExtractor | None = None,
    gen_features: np.ndarray | None = None,
    train_features: np.ndarray | None = None,
    train_names: Sequence[str] | None = None,
    max_rows: int = 32,
    thumb_size: int = 96,
    copy_ratio: float = 0.5,
) -> tuple[dict[str, Any], Image.Image]:
    """For each generated image, its k nearest training images (cosine distance in
    Inception space).

    Images: uint8 torch [N, 3, H, W] or numpy [N, H, W, 3] (sizes may differ between the
    two sets). Precomputed features may be passed to skip the network. Returns a JSON-able
    dict (all samples) and a PIL grid of the first `max_rows` samples: each row is the
    sample, then its k neighbours with their training index and distance written below."""
    gen_seq, n_gen = iter_uint8_hwc(gen_uint8)
    train_seq, n_train = iter_uint8_hwc(train_uint8)
    if n_gen < 1 or n_train < 1:
        raise ValueError("need at least one generated and one training image")
    ext = extractor
    if gen_features is None or train_features is None:
        ext = ext or FeatureExtractor()
    gf = gen_features if gen_features is not None else ext.features_from_uint8(gen_uint8)  # type: ignore[union-attr]
    tf = train_features if train_features is not None else ext.features_from_uint8(train_uint8)  # type: ignore[union-attr]
    if len(gf) != n_gen or len(tf) != n_train:
        raise ValueError("feature counts do not match the image counts")
    idx, dist = nearest_neighbors(gf, tf, k)

    train_ref: dict[str, Any] = {"median": None, "mean": None, "min": None}
    if n_train >= 2:
        dd = cosine_distances(tf, tf)
        np.fill_diagonal(dd, np.inf)
        loo = dd.min(axis=1)
        train_ref = {"median": float(np.median(loo)), "mean": float(loo.mean()), "min": float(loo.min())}
    ref = train_ref["median"]

    samples = []
    suspected = []
    for i in range(n_gen):
        ratio = float(dist[i, 0] / ref) if ref else None
        if ratio is not None and ratio < copy_ratio:
            suspected.append(i)
        samples.append(
            {
                "index": i,
                "neighbors": [
                    {
                        "train_index": int(j),
                        "name": (str(train_names[int(j)]) if train_names is not None else None),
                        "distance": float(d),
                    }
                    for j, d in zip(idx[i], dist[i])
                ],
                "ratio": ratio,
            }
        )
    nn1 = dist[:, 0]
    report = {
        "metric": "cosine",
        "feature": FEATURE_SPEC,
        "k": int(idx.shape[1]),
        "num_generated": int(n_gen),
        "num_train": int(n_train),
        "nearest_distance": {"min": float(nn1.min()), "median": float(np.median(nn1)), "mean": float(nn1.mean())},
        "train_nn_distance": train_ref,
        "copy_ratio": copy_ratio,
        "suspected_copies": suspected,
        "samples": samples,
    }
    rows = min(n_gen, max_rows)
    grid = _grid([gen_seq[i] for i in range(rows)], train_seq, idx[:rows], dist[:rows], rows, thumb_size)
    return report, grid

