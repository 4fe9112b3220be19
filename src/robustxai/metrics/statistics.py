"""Dataset-level statistics over per-sample metric values.

Metrics return one value per sample; the audit and the report aggregate them. The bootstrap here gives the
confidence interval that tables print next to each mean.
"""

from __future__ import annotations

import math

import numpy as np

from robustxai.errors import RobustXAIError

# Resampled index matrices are drawn in blocks of about this many entries to bound memory.
_BLOCK_ENTRIES = 2_000_000


def bootstrap_ci(
    values: np.ndarray,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Mean of ``values`` with a percentile-bootstrap confidence interval.

    NaN values (undefined per-sample metrics, e.g. images without ground truth) are dropped first. The
    interval is the ``(1 − level)/2`` and ``(1 + level)/2`` percentiles (numpy's default, linear) of the
    means of ``n_boot`` resamples with replacement. The resamples come from
    ``numpy.random.default_rng(seed)``, so the same values and seed always give the same interval.

    Args:
        values: Per-sample values, any shape (flattened).
        n_boot: Number of bootstrap resamples, ≥ 1.
        level: Confidence level in (0, 1).
        seed: Seed of the resampling generator.

    Returns:
        ``(mean, low, high)``; with fewer than two non-NaN values the interval is ``(nan, nan)`` (and the
        mean is NaN when there is none).

    Raises:
        RobustXAIError: If the values are not numeric or the arguments are out of range.
    """
    try:
        arr = np.asarray(values, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise RobustXAIError("values must be numeric") from None
    if isinstance(n_boot, bool) or not isinstance(n_boot, int | np.integer) or n_boot < 1:
        raise RobustXAIError(f"n_boot must be a positive integer, got {n_boot!r}")
    if not (0.0 < float(level) < 1.0):
        raise RobustXAIError(f"level must be in (0, 1), got {level!r}")
    arr = arr[~np.isnan(arr)]
    if np.isinf(arr).any():
        raise RobustXAIError("values contain infinite entries")
    n = arr.size
    if n == 0:
        return (math.nan, math.nan, math.nan)
    mean = float(arr.mean())
    if n < 2:
        return (mean, math.nan, math.nan)
    rng = np.random.default_rng(seed)
    block = max(1, _BLOCK_ENTRIES // n)
    means = np.empty(int(n_boot), dtype=np.float64)
    for start in range(0, int(n_boot), block):
        stop = min(start + block, int(n_boot))
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = arr[idx].mean(axis=1)
    alpha = (1.0 - float(level)) / 2.0
    low, high = np.percentile(means, [100.0 * alpha, 100.0 * (1.0 - alpha)])
    return (mean, float(low), float(high))
