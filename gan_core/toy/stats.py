"""Paired tests for the toy's per-seed results (scipy).

- Binary outcome per seed under two treatments from the same start (covers both modes: vanilla vs
  DigGAN; escaped: DigGAN vs vanilla): the exact McNemar test, i.e. a two-sided binomial test on the
  discordant pairs. Exact, because with 20-50 seeds the discordant counts are small.
- Continuous value per seed under two treatments (DIG of vanilla vs DigGAN; DIG peak right before
  the collapse vs the window before that): the Wilcoxon signed-rank test, two-sided, on the paired
  differences. It assumes no distribution and is insensitive to the heavy tails DIG has.
- A single proportion (e.g. escapes at one noise level): its exact Clopper-Pearson 95% interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

__all__ = ["mcnemar_exact", "proportion", "wilcoxon_paired"]


def mcnemar_exact(a: Sequence[bool], b: Sequence[bool], a_name: str = "a", b_name: str = "b") -> dict[str, Any]:
    """Exact McNemar test of paired booleans a[i], b[i]; two-sided p from the discordant pairs."""
    if len(a) != len(b):
        raise ValueError("paired samples must have the same length")
    only_a = sum(1 for x, y in zip(a, b) if x and not y)
    only_b = sum(1 for x, y in zip(a, b) if y and not x)
    n = only_a + only_b
    p = float(stats.binomtest(only_a, n, 0.5).pvalue) if n else 1.0
    return {
        "test": "exact McNemar (two-sided binomial test on discordant pairs)",
        "n_pairs": len(a),
        f"{a_name}_true": int(sum(bool(x) for x in a)),
        f"{b_name}_true": int(sum(bool(y) for y in b)),
        f"only_{a_name}": only_a,
        f"only_{b_name}": only_b,
        "both": sum(1 for x, y in zip(a, b) if x and y),
        "neither": sum(1 for x, y in zip(a, b) if not x and not y),
        "p_value": p,
    }


def wilcoxon_paired(x: Sequence[float], y: Sequence[float], x_name: str = "x", y_name: str = "y") -> dict[str, Any]:
    """Two-sided Wilcoxon signed-rank test of x[i] - y[i] (pairs with a zero difference are dropped)."""
    xa, ya = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if xa.shape != ya.shape:
        raise ValueError("paired samples must have the same length")
    d = xa - ya
    out: dict[str, Any] = {
        "test": "Wilcoxon signed-rank, two-sided (zero differences dropped)",
        "n_pairs": int(d.size),
        f"median_{x_name}": float(np.median(xa)) if d.size else None,
        f"median_{y_name}": float(np.median(ya)) if d.size else None,
        "median_difference": float(np.median(d)) if d.size else None,
        f"n_{x_name}_greater": int((d > 0).sum()),
        f"n_{y_name}_greater": int((d < 0).sum()),
    }
    if d.size == 0 or not np.any(d != 0):
        out.update(statistic=None, p_value=1.0 if d.size else None)
        return out
    res = stats.wilcoxon(xa, ya, zero_method="wilcox", alternative="two-sided")
    out.update(statistic=float(res.statistic), p_value=float(res.pvalue))
    return out


def proportion(k: int, n: int) -> dict[str, Any]:
    """k of n with its exact (Clopper-Pearson) 95% interval."""
    if n == 0:
        return {"k": 0, "n": 0, "fraction": None, "ci95": None}
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    return {"k": int(k), "n": int(n), "fraction": k / n, "ci95": [float(ci.low), float(ci.high)]}


def finite_or_none(v: float) -> float | None:
    return float(v) if v is not None and math.isfinite(float(v)) else None
