"""Kernel Inception Distance: clean-fid's ``kernel_distance`` plus a standard error.

Same estimator as ``cleanfid.fid.kernel_distance``: the unbiased MMD^2 with the cubic
polynomial kernel k(x, y) = (x.y / d + 1)^3, averaged over `num_subsets` random subsets
of size m = min(n_a, n_b, max_subset_size) drawn without replacement, and the same draw
order (subset of `feats_b`, then of `feats_a`, per subset). With ``seed`` s the result equals
clean-fid's after ``np.random.seed(s)`` (clean-fid uses the global numpy RNG and gives no
standard error); we use a private ``RandomState`` so callers' RNG state is untouched.

Differences, both deliberate: the kernel sums are computed in float64 (clean-fid keeps the
float32 of the features), and when that is cheaper the kernel matrices of the full sets are
computed once and indexed per subset (same numbers up to rounding).

Standard error = std over subsets (ddof=1) / sqrt(num_subsets). Caveat: when m equals both
set sizes every subset is the whole set, the subsets are identical and the std error is
exactly 0 (computed once): it measures subset-sampling noise only, not the uncertainty due
to the finite sample (e.g. 100 real vs 100 generated images with the defaults).
"""

from __future__ import annotations

import numpy as np


def _kernel(x: np.ndarray, y: np.ndarray, d: int) -> np.ndarray:
    return (x @ y.T / d + 1.0) ** 3


def kid_subset_values(
    feats_a: np.ndarray,
    feats_b: np.ndarray,
    num_subsets: int = 100,
    max_subset_size: int = 1000,
    seed: int | None = 0,
) -> np.ndarray:
    """The per-subset unbiased MMD^2 estimates, shape [num_subsets]."""
    a = np.asarray(feats_a, dtype=np.float64)
    b = np.asarray(feats_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected two feature sets [N, D] with the same D, got {a.shape} and {b.shape}")
    if num_subsets < 1:
        raise ValueError("num_subsets must be >= 1")
    d = a.shape[1]
    m = min(a.shape[0], b.shape[0], int(max_subset_size))
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got {a.shape[0]} and {b.shape[0]}")
    if m == a.shape[0] == b.shape[0]:
        # Every subset is a permutation of the full sets and the estimate is permutation
        # invariant: all num_subsets values are equal (clean-fid recomputes it each time).
        kxx, kyy, kxy = _kernel(b, b, d), _kernel(a, a, d), _kernel(b, a, d)
        off = kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)
        return np.full(num_subsets, (off / (m - 1) - kxy.sum() * 2 / m) / m)
    rng = np.random.RandomState(seed)
    idx = [(rng.choice(b.shape[0], m, replace=False), rng.choice(a.shape[0], m, replace=False)) for _ in range(num_subsets)]

    na, nb = a.shape[0], b.shape[0]
    full = na * na + nb * nb + na * nb < 3 * num_subsets * m * m
    if full:  # kernel matrices once, then index (cheaper for small sets)
        k_bb, k_aa, k_ba = _kernel(b, b, d), _kernel(a, a, d), _kernel(b, a, d)
    vals = np.empty(num_subsets, dtype=np.float64)
    for s, (ix, iy) in enumerate(idx):
        if full:
            kxx, kyy, kxy = k_bb[np.ix_(ix, ix)], k_aa[np.ix_(iy, iy)], k_ba[np.ix_(ix, iy)]
        else:
            x, y = b[ix], a[iy]
            kxx, kyy, kxy = _kernel(x, x, d), _kernel(y, y, d), _kernel(x, y, d)
        # clean-fid: a = kxx + kyy; t = (a.sum() - diag(a).sum()) / (m-1) - kxy.sum() * 2 / m; kid = t / m
        off = kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)
        vals[s] = (off / (m - 1) - kxy.sum() * 2 / m) / m
    return vals


def compute_kid(
    feats_a: np.ndarray,
    feats_b: np.ndarray,
    num_subsets: int = 100,
    max_subset_size: int = 1000,
    seed: int | None = 0,
) -> tuple[float, float]:
    """(kid, kid_std_err). KID is reported in raw units (multiply by 1e3 for the usual x10^3)."""
    vals = kid_subset_values(feats_a, feats_b, num_subsets, max_subset_size, seed)
    if len(vals) < 2:
        std_err = float("nan")
    elif np.all(vals == vals[0]):  # identical subsets (see module docstring): exactly 0
        std_err = 0.0
    else:
        std_err = float(vals.std(ddof=1) / np.sqrt(len(vals)))
    return float(vals.mean()), std_err
