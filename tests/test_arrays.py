"""The one min-max normalisation (robustxai._arrays) that metrics, store, figures and the attack share."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robustxai._arrays import minmax, minmax_array
from robustxai.metrics import minmax as metric_minmax
from robustxai.report._figures import minmax_normalise
from robustxai.results._store import _unit_range

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = "tests internals of robustxai._arrays, robustxai.report._figures, robustxai.results._store"


def _numpy_minmax(a: np.ndarray) -> np.ndarray:  # what the store and the figures computed before
    lo, hi = float(np.min(a)), float(np.max(a))
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_minmax_array_equals_the_numpy_formula_it_replaced(dtype) -> None:
    rng = np.random.default_rng(0)
    for a in (rng.normal(size=(9, 7)), rng.uniform(size=(5, 5)) * 1e-6, np.full((4, 4), 3.0)):
        a = a.astype(dtype)
        out = minmax_array(a)
        assert out.dtype == a.dtype
        np.testing.assert_array_equal(out, _numpy_minmax(a))
        np.testing.assert_array_equal(_unit_range(a), out)
    assert minmax_array(np.zeros((0, 3))).shape == (0, 3)


def test_every_minmax_is_the_same_function() -> None:
    maps = torch.rand(3, 8, 8, dtype=torch.float64)
    maps[1] = 0.5  # constant: zeros, not NaN
    assert torch.equal(metric_minmax(maps), minmax(maps))
    assert float(minmax(maps)[1].abs().sum()) == 0.0
    np.testing.assert_array_equal(minmax_normalise(maps[0].numpy()), minmax_array(maps[0].numpy()))
    with_nan = np.array([[np.nan, 1.0], [2.0, 3.0]])
    np.testing.assert_array_equal(minmax_normalise(with_nan), [[0, 1 / 3], [2 / 3, 1]])


def test_minmax_is_differentiable_and_exact_on_tiny_spans() -> None:
    x = torch.rand(2, 9, 9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(minmax, (x,))
    tiny = torch.tensor([[[0.0, 1e-9], [5e-10, 0.0]]])
    assert float(minmax(tiny).max()) == 1.0  # no ε added to the span


def test_minmax_array_of_a_read_only_array_warns_nothing_and_leaves_it() -> None:
    import warnings

    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    arr.flags.writeable = False  # as an array unpickled from Ray's object store
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch.from_numpy of a read-only array warns
        out = minmax_array(arr)
    np.testing.assert_allclose(out, arr / 5.0)
    assert not arr.flags.writeable and arr[1, 2] == 5.0
