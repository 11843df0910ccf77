"""Reading a toy run: outcome of the two generated points, settling, collapse, DIG spike, perturbation onset.

All functions take numpy arrays of one model (positions [T + 1, 2], DIG [T]) and the settings; the
definitions are the ones fixed in gan_core/toy/settings.py before any run.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .settings import PaperSettings

__all__ = [
    "collapse_iter",
    "dig_spike",
    "is_single_mode",
    "outcome",
    "outcome_codes",
    "perturbation_onset",
    "settled",
]

BOTH, NEITHER = "both", "neither"


def _nearest(x: np.ndarray, st: PaperSettings) -> np.ndarray:
    """Index of the real point each generated point is at (within tol), -1 where none. x [..., 2] -> [..., 2]."""
    pts = np.asarray(st.real_points, np.float64)
    d = np.abs(np.asarray(x, np.float64)[..., None] - pts)  # [..., 2, P]
    idx = d.argmin(-1)
    return np.where(d.min(-1) < st.tol, idx, -1)


def outcome_codes(xs: np.ndarray, st: PaperSettings) -> np.ndarray:
    """Per row of xs [..., 2]: -1 neither, 0..P-1 one mode at that point, P both (distinct points covered)."""
    near = _nearest(xs, st)
    P = len(st.real_points)
    a, b = near[..., 0], near[..., 1]
    return np.where((a < 0) | (b < 0), -1, np.where(a == b, a, P))


def outcome(x: np.ndarray, st: PaperSettings) -> str:
    """'both' | 'mode@<point>' (both generated points at that real point) | 'neither'."""
    code = int(outcome_codes(np.asarray(x)[None], st)[0])
    if code == -1:
        return NEITHER
    if code == len(st.real_points):
        return BOTH
    return f"mode@{st.real_points[code]:g}"


def is_single_mode(name: str) -> bool:
    return name.startswith("mode@")


def settled(xs: np.ndarray, st: PaperSettings) -> bool:
    """No generated point moved more than settle_tol over the last settle_window iterations."""
    w = min(st.settle_window, xs.shape[0] - 1)
    tail = xs[-(w + 1):]
    return bool(np.abs(tail - tail[-1]).max() <= st.settle_tol)


def collapse_iter(xs: np.ndarray, st: PaperSettings) -> int | None:
    """For a run ending in one mode: the first iteration from which it stays in that mode; else None."""
    codes = outcome_codes(xs, st)
    last = int(codes[-1])
    if last < 0 or last == len(st.real_points):
        return None
    other = np.nonzero(codes != last)[0]
    return int(other[-1] + 1) if other.size else 0


def dig_spike(dig: np.ndarray, collapse: int | None, st: PaperSettings) -> dict[str, Any] | None:
    """DIG peak in the spike_window iterations before the collapse vs the peak in the window before those.

    None when there is no collapse or fewer than 2 windows of history before it.
    """
    w = st.spike_window
    if collapse is None or collapse < 2 * w:
        return None
    pre = float(dig[collapse - w:collapse].max())
    prev = float(dig[collapse - 2 * w:collapse - w].max())
    base = float(np.median(dig[:collapse - w]))
    return {"peak_pre": pre, "peak_prev": prev, "median_before": base,
            "peak_pre_over_median_before": pre / base if base > 0 else None}


def perturbation_onset(xs: np.ndarray, st: PaperSettings) -> int | None:
    """First iteration at which a generated point is more than move_tol from where it started; None if never."""
    moved = np.abs(xs - xs[0]).max(-1) > st.move_tol
    hit = np.nonzero(moved)[0]
    return int(hit[0]) if hit.size else None
