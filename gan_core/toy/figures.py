"""Paper-style figures of the toy (paper Fig. 3-5): generated-point movement and DIG over iterations.

Written by run_paper into out_dir: toy-exp1-exp3.png (Fig. 3: vanilla vs DigGAN from the same start),
toy-exp2.png (Fig. 4: the four noise levels), toy-exp4.png (Fig. 5: escaping from Exp. 2's s = 5 state),
toy-seeds.png (every seed: outcome counts per experiment). One seed is drawn per figure, picked by a
fixed rule (named in the title) rather than by eye; the counts over all seeds are in every title.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import analysis as A
from .nets import BatchedMLP
from .settings import PaperSettings

__all__ = ["write_paper_figures"]

DPI = 72


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _every(n: int, most: int = 2000) -> int:
    return max(1, n // most)


def _movement(ax: Any, x: np.ndarray, st: PaperSettings, title: str, mark: int | None = None) -> None:
    """The paper's panel (b): the two generated points (blue) against the real points (red), over iterations."""
    k = _every(x.shape[0])
    it = np.arange(x.shape[0])[::k]
    ax.plot(it, x[::k, 0], color="tab:blue", lw=1.0)
    ax.plot(it, x[::k, 1], color="tab:blue", lw=1.0, ls="--")
    for p in st.real_points:
        ax.axhline(p, color="red", lw=1.2)
    if mark is not None:
        ax.axvline(mark, color="k", ls=":", lw=0.9)
    lo, hi = min(st.real_points) - 2, max(st.real_points) + 2
    finite = x[np.isfinite(x)]
    if finite.size:
        lo, hi = max(min(lo, finite.min() - 0.5), lo - 8), min(max(hi, finite.max() + 0.5), hi + 8)
    ax.set_ylim(lo, hi)
    ax.set_xlim(0, x.shape[0] - 1)
    ax.set_xlabel("iteration")
    ax.set_ylabel("data position")
    ax.set_title(title, fontsize=8)


def _dig(ax: Any, dig: np.ndarray, title: str, color: str, mark: int | None = None) -> None:
    """The paper's panel (c): DIG (Eq. 2) over iterations, log scale."""
    k = _every(dig.shape[0])
    ax.plot(np.arange(dig.shape[0])[::k], np.clip(dig[::k], 1e-12, None), color=color, lw=0.9)
    ax.set_yscale("log")
    if mark is not None:
        ax.axvline(mark, color="k", ls=":", lw=0.9)
    ax.set_xlabel("iteration")
    ax.set_ylabel("DIG")
    ax.set_title(title, fontsize=8)


def _snapshot(ax: Any, D: BatchedMLP, x_final: np.ndarray, st: PaperSettings, title: str) -> None:
    """The paper's panel (a): D(x) = sigmoid(logit) at the end, the real points and the generated points."""
    grid = torch.linspace(min(st.real_points) - 2, max(st.real_points) + 2, 300).view(1, -1, 1)
    with torch.no_grad():
        d = torch.sigmoid(D(grid)).flatten().numpy()
    ax.plot(grid.flatten().numpy(), d, color="tab:green", lw=1.2, label="D(x)")
    ax.scatter(st.real_points, [0.02] * len(st.real_points), color="red", s=40, zorder=3, label="real")
    ax.scatter(x_final, [0.06, 0.10], color="tab:blue", marker="x", s=40, zorder=3, label="generated")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("x")
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=6, loc="upper right")


def _count(rows: Sequence[dict], key: str = "outcome") -> str:
    vals = [r[key] for r in rows]
    return ", ".join(f"{v} {vals.count(v)}" for v in sorted(set(vals)))


def write_paper_figures(out_dir: Path, st: PaperSettings, seeds: list[int], summary: dict[str, Any],
                        s13: dict, s2: dict, s4d: dict, s4: dict) -> dict[str, str]:
    plt = _plt()
    out_dir = Path(out_dir)
    S = len(seeds)
    van, dgn = summary["experiment1_vanilla"], summary["experiment3_diggan"]
    paths: dict[str, str] = {}

    # ---- Fig. 3 analogue: Exp. 1 vs Exp. 3; the first seed whose vanilla run ends in one mode
    stuck = [i for i, r in enumerate(van) if A.is_single_mode(r["outcome"])]
    i = stuck[0] if stuck else 0
    why = "first seed whose vanilla run ends in one mode" if stuck else "no vanilla run ends in one mode; seed 0"
    x, dig = s13["x"].numpy(), s13["dig"].numpy()
    D = BatchedMLP(st.d_sizes, st.d_act, s13["D"])
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.4))
    for row, (name, j, rows, color) in enumerate((("vanilla (Exp. 1)", i, van, "tab:blue"),
                                                   ("DigGAN (Exp. 3)", S + i, dgn, "tab:orange"))):
        r = rows[i]
        _snapshot(axes[row, 0], D.select([j]), x[j, -1], st, f"(a) {name}: end, {r['outcome']}")
        _movement(axes[row, 1], x[j], st, f"(b) {name}: generated points; all seeds: {_count(rows)}",
                  r.get("collapse_iter"))
        _dig(axes[row, 2], dig[j], f"(c) {name}: DIG, median over run {r['dig_median']:.2g}", color,
             r.get("collapse_iter"))
    fig.suptitle(f"Toy Exp. 1 vs 3 (paper Fig. 3), seed {seeds[i]} ({why}); dotted: collapse. "
                 f"lambda={st.lam:g}, alpha={st.alpha:g}, Adam lr={st.lr:g}", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    paths["exp1_exp3"] = _save(fig, out_dir / "toy-exp1-exp3.png", plt)

    # ---- Fig. 4 analogue: Exp. 2 at every noise level, same seed
    variances = [float(v) for v in s2["variances"]]
    x2 = s2["x"].numpy()
    e2 = summary["experiment2"]
    short = {"same_attractor": "same", "other_single_mode": "other", "both_modes": "both", "neither": "neither",
             "not_converged": "moving"}
    fig, axes = plt.subplots(1, len(variances), figsize=(3.3 * len(variances), 3.4), squeeze=False)
    for vi, var in enumerate(variances):
        rows = e2[f"{var:g}"]
        res = [short[rows[k]["result"]] for k in stuck]
        counts = " ".join(f"{name} {res.count(name)}" for name in short.values() if res.count(name))
        _movement(axes[0, vi], x2[vi * S + i], st,
                  f"{'control, no noise' if var == 0 else f's = {var:g}'}: {short[rows[i]['result']]}\n"
                  f"{len(stuck)} stuck seeds: {counts or '-'}")
    fig.suptitle(f"Toy Exp. 2 (paper Fig. 4): Exp. 1's end state, D + N(0, s) (s a variance), vanilla; seed {seeds[i]}. "
                 "same/other: single mode at the same/other point; moving: not settled", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    paths["exp2"] = _save(fig, out_dir / "toy-exp2.png", plt)

    # ---- Fig. 5 analogue: Exp. 4; the first seed whose Exp. 4 start is one mode
    e4 = summary["experiment4"]
    trapped = [k for k, r in enumerate(e4) if r["trapped_start"]]
    m = trapped[0] if trapped else 0
    why4 = "first seed whose start is one mode" if trapped else "no start is one mode; seed 0"
    x4, dig4 = s4["x"].numpy(), s4["dig"].numpy()
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.4))
    D2 = BatchedMLP(st.d_sizes, st.d_act, s4d["D"]).select([m])
    _snapshot(axes[0, 0], D2, x4[m, 0], st, f"(a) start: G2 ({e4[m]['start_outcome']}), D2 after {st.d_opt_steps} D steps")
    _dig(axes[1, 0], s4d["loss_d"].numpy()[m], "D loss while training D alone", "tab:green")
    axes[1, 0].set_yscale("linear")
    axes[1, 0].set_ylabel("D loss")
    trapped_rows = [e4[k] for k in trapped]
    for col, (name, j, color) in enumerate((("diggan", m, "tab:orange"), ("vanilla", S + m, "tab:blue")), start=1):
        r = e4[m][name]
        esc = sum(row[name]["escaped"] for row in trapped_rows)
        _movement(axes[0, col], x4[j], st, f"{name}: {r['outcome']}; escaped {esc}/{len(trapped_rows)} trapped starts",
                  r["perturbation_onset"])
        _dig(axes[1, col], dig4[j], f"{name}: DIG", color, r["perturbation_onset"])
    fig.suptitle(f"Toy Exp. 4 (paper Fig. 5), seed {seeds[m]} ({why4}); dotted: first move > {st.move_tol:g}",
                 fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    paths["exp4"] = _save(fig, out_dir / "toy-exp4.png", plt)

    # ---- every seed: outcomes per experiment
    fig, ax = plt.subplots(figsize=(9, 3.6))
    groups = [("Exp.1 vanilla", [r["outcome"] for r in van]), ("Exp.3 DigGAN", [r["outcome"] for r in dgn])]
    groups += [(f"Exp.2 s={v:g}", [r["outcome"] if r["settled"] else "not settled" for r in e2[f"{v:g}"]])
               for v in variances]
    groups += [("Exp.4 start", [r["start_outcome"] for r in e4]),
               ("Exp.4 DigGAN", [r["diggan"]["outcome"] for r in e4]),
               ("Exp.4 vanilla", [r["vanilla"]["outcome"] for r in e4])]
    kinds = ["both", *[f"mode@{p:g}" for p in st.real_points], "neither", "not settled"]
    colors = {"both": "tab:green", "neither": "tab:gray", "not settled": "k"}
    palette = iter(["tab:red", "tab:purple", "tab:brown"])
    bottom = np.zeros(len(groups))
    for kind in kinds:
        h = np.array([g[1].count(kind) for g in groups], float)
        ax.bar(range(len(groups)), h, bottom=bottom, color=colors.get(kind) or next(palette), label=kind)
        bottom += h
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([g[0] for g in groups], rotation=30, ha="right", fontsize=7)
    ax.set_ylabel(f"seeds (of {S})")
    ax.legend(fontsize=7, bbox_to_anchor=(1.01, 1), loc="upper left")
    ax.set_title("Toy: how every seed ends, per experiment (Exp. 2 counts all seeds, stuck or not)", fontsize=9)
    fig.tight_layout()
    paths["seeds"] = _save(fig, out_dir / "toy-seeds.png", plt)
    return paths


def _save(fig: Any, path: Path, plt: Any) -> str:
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return str(path)
