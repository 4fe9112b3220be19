"""Agreement and preference statistics of expert rating studies: Bradley–Terry, Krippendorff's α, Spearman CI.

Pure numpy functions, tested against hand-computed cases and the ``krippendorff`` package.
"""

from __future__ import annotations

import numpy as np

from robustxai._errors import RobustXAIError
from robustxai.metrics._statistics import rankdata

LEVELS = ("nominal", "ordinal", "interval")


def bradley_terry(wins: np.ndarray, iterations: int = 1000, tol: float = 1e-10) -> np.ndarray:
    """Bradley–Terry strengths from a win matrix by Hunter's (2004) MM algorithm.

    ``P(i beats j) = p_i / (p_i + p_j)``; the update is ``p_i ← W_i / Σ_j n_ij / (p_i + p_j)`` with ``W_i``
    the wins of ``i`` and ``n_ij`` the comparisons of ``i`` and ``j``, renormalised to sum to one.

    Args:
        wins: ``[K, K]`` array, ``wins[i, j]`` = how often ``i`` was preferred to ``j``.
        iterations: Most MM steps.
        tol: Stop when no strength moves by more than this.

    Returns:
        ``[K]`` strengths summing to one (NaN for an item never compared; 0 for one that never won).

    Raises:
        RobustXAIError: For a matrix that is not square and non-negative.
    """
    w = np.asarray(wins, dtype=np.float64)
    if w.ndim != 2 or w.shape[0] != w.shape[1] or (w < 0).any() or not np.isfinite(w).all():
        raise RobustXAIError("wins must be a square matrix of non-negative counts")
    n = w + w.T
    compared = n.sum(axis=1) > 0
    p = np.where(compared, 1.0 / max(int(compared.sum()), 1), np.nan)
    won = w.sum(axis=1)
    for _ in range(iterations):
        denom = np.array(
            [
                sum(n[i, j] / (p[i] + p[j]) for j in range(len(p)) if j != i and n[i, j] > 0)
                for i in range(len(p))
            ]
        )
        new = np.where(compared, won / np.where(denom > 0, denom, 1.0), np.nan)
        total = np.nansum(new)
        new = new / total if total > 0 else new
        if np.nanmax(np.abs(new - p)) < tol:
            return new
        p = new
    return p


def _delta2(values: np.ndarray, counts: np.ndarray, level: str) -> np.ndarray:
    """The squared difference function of Krippendorff's α between every pair of values."""
    c, k = np.meshgrid(values, values, indexing="ij")
    out: np.ndarray
    if level == "nominal":
        out = (c != k).astype(np.float64)
    elif level == "interval":
        out = (c - k) ** 2
    else:
        cum = np.concatenate([[0.0], np.cumsum(counts)])  # ordinal: ranks within the pooled values
        i, j = np.meshgrid(np.arange(len(values)), np.arange(len(values)), indexing="ij")
        lo, hi = np.minimum(i, j), np.maximum(i, j)
        between = cum[hi + 1] - cum[lo]
        out = (between - (counts[i] + counts[j]) / 2) ** 2
    return out


def krippendorff_alpha(data: np.ndarray, level: str = "interval") -> float:
    """Krippendorff's α of a raters × units matrix (NaN = not rated), from the coincidence matrix.

    Args:
        data: ``[raters, units]`` values; units with fewer than two ratings are not pairable and ignored.
        level: ``"nominal"``, ``"ordinal"`` or ``"interval"``.

    Returns:
        α (1 = perfect agreement, 0 = chance); NaN when fewer than two pairable values or no variation.

    Raises:
        RobustXAIError: For an unknown level or a matrix that is not 2-D.
    """
    if level not in LEVELS:
        raise RobustXAIError(f"unknown level {level!r}; known: {', '.join(LEVELS)}")
    d = np.asarray(data, dtype=np.float64)
    if d.ndim != 2:
        raise RobustXAIError("data must be a raters × units matrix")
    values = np.unique(d[~np.isnan(d)])
    index = {v: i for i, v in enumerate(values)}
    o = np.zeros((len(values), len(values)))
    for unit in d.T:
        vals = unit[~np.isnan(unit)]
        m = len(vals)
        if m < 2:
            continue
        for a in range(m):
            for b in range(m):
                if a != b:
                    o[index[vals[a]], index[vals[b]]] += 1.0 / (m - 1)
    counts = o.sum(axis=1)
    n = counts.sum()
    if n < 2 or len(values) < 2:
        return float("nan")
    delta = _delta2(values, counts, level)
    expected = float((np.outer(counts, counts) * delta).sum())
    return float(1.0 - (n - 1) * float((o * delta).sum()) / expected) if expected > 0 else float("nan")


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    rx, ry = rankdata(x), rankdata(y)
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def spearman_ci(
    x: np.ndarray, y: np.ndarray, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float, int]:
    """Spearman's ρ with a percentile-bootstrap CI over resampled pairs (NaN pairs dropped).

    Returns:
        ``(rho, low, high, n)``; NaNs when fewer than three pairs or a constant variable.
    """
    a, b = np.asarray(x, dtype=np.float64).ravel(), np.asarray(y, dtype=np.float64).ravel()
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    n = int(a.size)
    rho = _spearman(a, b) if n >= 3 else float("nan")
    if np.isnan(rho):
        return rho, float("nan"), float("nan"), n
    rng = np.random.default_rng(seed)
    boots = [_spearman(a[i], b[i]) for i in rng.integers(0, n, size=(n_boot, n))]
    boots_arr = np.asarray([v for v in boots if not np.isnan(v)])
    if boots_arr.size == 0:
        return rho, float("nan"), float("nan"), n
    lo, hi = np.percentile(boots_arr, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return rho, float(lo), float(hi), n
