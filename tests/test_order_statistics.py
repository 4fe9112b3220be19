"""The partial sort behind the top-k threshold against a full ``torch.sort`` and ``np.percentile``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robustxai.metrics._alignment import _order_statistics, _percentile_threshold

WHITE_BOX = "why: the order statistics are an internal speed-up; their contract is the full sort's values"


@pytest.mark.parametrize("n", [1, 2, 3, 10, 4096])
def test_every_pair_of_ranks_equals_the_full_sort(n: int) -> None:
    g = torch.Generator().manual_seed(n)
    ties = torch.randint(0, 3, (3, n), generator=g).double()
    flats = [torch.rand(3, n, generator=g), ties, torch.zeros(2, n)]
    ranks = range(n) if n <= 10 else [0, 1, 614, 2047, 2048, 3480, 4094, 4095]
    for flat in flats:
        ordered = torch.sort(flat, dim=1).values
        for lo in ranks:
            hi = min(lo + 1, n - 1)
            a, c = _order_statistics(flat, lo, hi)
            assert torch.equal(a, ordered[:, lo]) and torch.equal(c, ordered[:, hi])


@pytest.mark.parametrize("top", [0.05, 0.15, 0.25, 0.5, 0.85, 1.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_threshold_equals_numpy_percentile(top: float, dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(7)
    maps = torch.rand(4, 17, 13, generator=g, dtype=dtype)
    maps[1] = (maps[1] * 4).round() / 4  # ties
    thr = _percentile_threshold(maps, top)
    ref = [np.percentile(m.numpy().ravel(), 100 * (1 - top)) for m in maps]
    dtypes = [m.numpy().dtype for m in maps]
    assert thr.tolist() == [float(np.asarray(r, dtype=d)) for r, d in zip(ref, dtypes, strict=True)]
