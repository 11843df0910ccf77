"""Fréchet Inception Distance, agreeing with clean-fid.

Statistics: ``feature_stats`` is clean-fid's mu/sigma code verbatim (``np.mean(axis=0)``,
``np.cov(rowvar=False)`` on the float32 features, as in ``cleanfid.fid.fid_from_feats``).

Distance, two methods giving the same number:

* ``method="cleanfid"``: ``cleanfid.fid.frechet_distance`` itself (scipy ``sqrtm`` of the
  2048x2048 product sigma1 @ sigma2), imported through the scoped torchvision stub in
  ``_cleanfid.py``. Bit-identical to clean-fid, but the ``sqrtm`` takes ~1-3 minutes on
  2 CPU cores.
* ``method="fast"`` (default): the same formula with tr sqrt(sigma1 sigma2) computed as
  the nuclear norm of L1^T L2 for any factors sigma_i = L_i L_i^T. (The non-zero
  eigenvalues of L1 L1^T L2 L2^T are those of (L1^T L2)(L1^T L2)^T, so
  tr sqrtm(sigma1 sigma2) = sum of singular values of L1^T L2.) With N <= 2048 images the
  factor is the centred feature matrix / sqrt(N-1) itself, so the cost is an N1 x N2 SVD
  (milliseconds); with more images a Cholesky (eigh if singular) of sigma. Mathematically
  exact; numerically it agrees with clean-fid's ``sqrtm`` to ~1e-7 relative (clean-fid's
  ``sqrtm`` of a rank-deficient product is the less accurate of the two). The unit tests
  check the agreement.

Note: with fewer images than feature dimensions (2048) the covariances are rank-deficient;
FID is then strongly biased upwards and only comparable between runs with the same N.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import linalg

from ._cleanfid import frechet_distance_fn

METHODS = ("fast", "cleanfid")


def _check(feats: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(feats)  # keep the dtype: clean-fid works on the float32 features as they are
    if arr.ndim != 2 or arr.shape[0] < 2:
        raise ValueError(f"{name}: expected features [N >= 2, D], got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: features contain NaN or inf")
    return arr


def feature_stats(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mu, sigma) exactly as clean-fid computes them."""
    arr = _check(feats, "feats")
    return np.mean(arr, axis=0), np.cov(arr, rowvar=False)


@dataclass
class FidStats:
    """mu, sigma (clean-fid's) plus a factor ``lt`` with sigma = lt.T @ lt ([r, D], float64)."""

    mu: np.ndarray
    sigma: np.ndarray
    lt: np.ndarray
    n: int | None = None

    @classmethod
    def from_features(cls, feats: np.ndarray) -> FidStats:
        arr = _check(feats, "feats")
        mu, sigma = feature_stats(arr)
        n, d = arr.shape
        if n <= d:  # the centred data is the cheapest exact factor
            x = arr.astype(np.float64)
            lt = (x - x.mean(axis=0)) / np.sqrt(n - 1)
        else:
            lt = _factor_t(sigma)
        return cls(mu=mu, sigma=sigma, lt=lt, n=n)

    @classmethod
    def from_mu_sigma(cls, mu: np.ndarray, sigma: np.ndarray) -> FidStats:
        return cls(mu=np.asarray(mu), sigma=np.asarray(sigma), lt=_factor_t(np.asarray(sigma)))


def _factor_t(sigma: np.ndarray) -> np.ndarray:
    """L^T with sigma = L L^T: Cholesky, or eigh (negative rounding noise clipped) when singular."""
    s = np.asarray(sigma, dtype=np.float64)
    try:
        return linalg.cholesky(s, lower=False)  # upper U with sigma = U^T U
    except linalg.LinAlgError:
        w, v = linalg.eigh(s)
        return (v * np.sqrt(np.clip(w, 0, None))).T


def frechet_distance_fast(a: FidStats, b: FidStats) -> float:
    """clean-fid's formula, with tr sqrtm(sigma_a sigma_b) as a nuclear norm (module docstring)."""
    if a.mu.shape != b.mu.shape:
        raise ValueError(f"feature dimensions differ: {a.mu.shape} vs {b.mu.shape}")
    diff = a.mu - b.mu
    tr_covmean = linalg.svdvals(a.lt @ b.lt.T).sum()
    return float(diff.dot(diff) + np.trace(a.sigma) + np.trace(b.sigma) - 2 * tr_covmean)


def fid_from_stats(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, method: str = "fast"
) -> float:
    """FID from (mu, sigma) pairs, e.g. clean-fid style .npz statistics."""
    if method == "cleanfid":
        return float(frechet_distance_fn()(mu1, sigma1, mu2, sigma2))
    if method == "fast":
        return frechet_distance_fast(FidStats.from_mu_sigma(mu1, sigma1), FidStats.from_mu_sigma(mu2, sigma2))
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def compute_fid(feats_a: np.ndarray | FidStats, feats_b: np.ndarray | FidStats, method: str = "fast") -> float:
    """FID between two feature sets [N, D] (or precomputed FidStats); symmetric."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    a = feats_a if isinstance(feats_a, FidStats) else FidStats.from_features(feats_a)
    b = feats_b if isinstance(feats_b, FidStats) else FidStats.from_features(feats_b)
    if method == "cleanfid":
        return float(frechet_distance_fn()(a.mu, a.sigma, b.mu, b.sigma))
    return frechet_distance_fast(a, b)
