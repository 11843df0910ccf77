"""Training curves as one PNG (matplotlib, Agg, imported lazily; no pyplot global state, so
it is safe to call from worker threads)."""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..training.checkpoint import atomic_write_bytes


def _series(rows: Sequence[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(kimg, value) pairs where both are present and finite (None values are skipped)."""
    xs, ys = [], []
    for r in rows:
        x, y = r.get("kimg"), r.get(key)
        if x is None or y is None:
            continue
        try:
            xf, yf = float(x), float(y)
        except (TypeError, ValueError):
            continue
        if math.isfinite(xf) and math.isfinite(yf):
            xs.append(xf)
            ys.append(yf)
    return xs, ys


def _plot(ax: Any, rows: Sequence[dict[str, Any]], keys: Sequence[tuple[str, str]], **kw: Any) -> int:
    drawn = 0
    for key, label in keys:
        xs, ys = _series(rows, key)
        if xs:
            ax.plot(xs, ys, label=label, linewidth=1.2, marker="." if len(xs) < 30 else None, **kw)
            drawn += 1
    return drawn


def _no_data(ax: Any) -> None:
    ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="0.5")


def plot_curves(
    ticks: Sequence[dict[str, Any]],
    snapshot_metrics: Sequence[dict[str, Any]] | None,
    out_path: str | os.PathLike[str],
    title: str | None = None,
) -> Path:
    """Write a 2x2 PNG: (1) G/D losses and R1, (2) DIG and real/fake gradient norms
    (log scale when all positive), (3) augment p with D(real)/D(fake), (4) KID (with
    std-err bars, left axis) and FID (right axis) over kimg; median sec/kimg in a corner. Tick keys: kimg, loss_G, loss_D, r1, dig,
    grad_norm_real, grad_norm_fake, D_real, D_fake, augment_p, sec_per_kimg (None allowed).
    Snapshot keys: kimg, kid, kid_std_err, fid. Written atomically; returns the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ticks = list(ticks or [])
    snaps = list(snapshot_metrics or [])
    fig = Figure(figsize=(12, 8), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 2)

    ax = axes[0, 0]
    n = _plot(ax, ticks, [("loss_G", "loss G"), ("loss_D", "loss D")])
    if _series(ticks, "r1")[0]:
        ax2 = ax.twinx()
        _plot(ax2, ticks, [("r1", "R1 (right)")], color="tab:gray", linestyle="--")
        ax2.set_ylabel("R1 penalty")
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper right")
    elif n:
        ax.legend(fontsize=8)
    if not n and not _series(ticks, "r1")[0]:
        _no_data(ax)
    ax.set_title("losses")

    ax = axes[0, 1]
    keys = [("dig", "DIG"), ("grad_norm_real", "|grad D| real"), ("grad_norm_fake", "|grad D| fake")]
    n = _plot(ax, ticks, keys)
    vals = [v for k, _ in keys for v in _series(ticks, k)[1]]
    if vals and min(vals) > 0:
        ax.set_yscale("log")
    if n:
        ax.legend(fontsize=8)
    else:
        _no_data(ax)
    ax.set_title("DIG and discriminator gradient norms")

    ax = axes[1, 0]
    n = _plot(ax, ticks, [("augment_p", "augment p")], color="tab:green")
    if n:
        ax.set_ylim(bottom=0)
        ax.set_ylabel("p")
    handles, labels = ax.get_legend_handles_labels()
    if _series(ticks, "D_real")[0] or _series(ticks, "D_fake")[0]:
        # D's mean outputs beside p: ADA steers p from sign(D(real)).
        axd = ax.twinx()
        _plot(axd, ticks, [("D_real", "D(real) (right)"), ("D_fake", "D(fake) (right)")], linestyle=":")
        axd.set_ylabel("D output")
        h2, l2 = axd.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
        n += 1
    if n:
        ax.legend(handles, labels, fontsize=8, loc="upper left")
    else:
        _no_data(ax)
    ax.set_title("augmentation probability and D outputs")

    ax = axes[1, 1]
    drawn = 0
    xs, ys = _series(snaps, "kid")
    if xs:
        errs = []
        for r in snaps:
            if r.get("kid") is not None and r.get("kimg") is not None:
                e = r.get("kid_std_err")
                errs.append(float(e) if e is not None and math.isfinite(float(e)) else 0.0)
        ax.errorbar(xs, ys, yerr=errs if len(errs) == len(xs) else None, label="KID", color="tab:blue", marker="o", capsize=3)
        ax.set_ylabel("KID", color="tab:blue")
        drawn += 1
    fx, fy = _series(snaps, "fid")
    if fx:
        axf = ax.twinx() if xs else ax
        axf.plot(fx, fy, label="FID", color="tab:red", marker="s")
        axf.set_ylabel("FID", color="tab:red")
        drawn += 1
    if not drawn:
        _no_data(ax)
    ax.set_title("KID / FID")

    for a in axes.flat:
        a.set_xlabel("kimg")
        a.grid(True, alpha=0.3)
    spk = sorted(_series(ticks, "sec_per_kimg")[1])
    if spk:
        fig.text(0.99, 0.005, f"median sec/kimg: {spk[len(spk) // 2]:.3g}", ha="right", va="bottom", fontsize=8, color="0.4")
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.02, 1, 1))

    out = Path(out_path)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(out, buf.getvalue())
    return out
