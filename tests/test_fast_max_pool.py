"""The fast 2 × 2 max-pool against ``F.max_pool2d`` (the reference): bit-for-bit values."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustxai.explain._deeplift_rules import rescale_rules
from robustxai.models._pool import _pooled, fast_max_pools, max_pool_2x2
from robustxai.models._smallcnn import SmallCNN

WHITE_BOX = "why: the fast pool is an internal speed-up; its contract is nn.MaxPool2d's numbers"


def _inputs(dtype: torch.dtype) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    rand = torch.randn(3, 4, 16, 12, generator=g).to(dtype)
    ties = torch.randint(0, 2, (3, 4, 8, 8), generator=g).to(dtype)  # many tied windows
    neg_inf = torch.full((1, 1, 4, 4), -torch.inf, dtype=dtype)
    neg_inf[0, 0, 1, 1] = 0
    nan = rand.clone()
    nan[0, 0, 0, 1] = nan[1, 2, 5, 5] = torch.nan
    signed_zeros = torch.where(torch.tensor(list(itertools.product([0, 1], repeat=4))) == 1, -0.0, 0.0)
    return [rand, ties, neg_inf, nan, torch.relu(rand), signed_zeros.reshape(1, 16, 2, 2).to(dtype)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_values_equal_max_pool2d_bit_for_bit(dtype: torch.dtype) -> None:
    for x in _inputs(dtype):
        ours, ref = _pooled(x), F.max_pool2d(x, 2)
        assert ours.dtype == ref.dtype and ours.shape == ref.shape and ours.is_contiguous()
        assert torch.equal(ours.isnan(), ref.isnan())
        assert torch.equal(ours.nan_to_num(), ref.nan_to_num())
        assert torch.equal(torch.signbit(ours), torch.signbit(ref))  # narrow rows: even a zero's sign
        with torch.no_grad():
            assert torch.equal(max_pool_2x2(x).isnan(), ref.isnan())


def test_a_recorded_pass_runs_the_kernel() -> None:
    """With a gradient to keep, the kernel runs (its backward picks each window's first maximum)."""
    x = torch.randint(0, 2, (2, 3, 8, 8)).float().requires_grad_(True)
    out = max_pool_2x2(x)
    assert out.grad_fn is not None and "MaxPool2DWithIndices" in type(out.grad_fn).__name__


def test_odd_sides_and_channels_last_use_the_kernel() -> None:
    odd = torch.randn(1, 2, 7, 9)
    assert torch.equal(max_pool_2x2(odd), F.max_pool2d(odd, 2))
    cl = torch.randn(2, 3, 8, 8).to(memory_format=torch.channels_last)
    out = max_pool_2x2(cl)
    assert torch.equal(out, F.max_pool2d(cl, 2)) and out.is_contiguous(memory_format=torch.channels_last)


def test_installed_only_on_plain_2x2_pools_and_the_model_is_unchanged() -> None:
    torch.manual_seed(0)
    model = SmallCNN(widths=(4, 8, 8, 8), attention=True).eval()
    pools = [m for m in model.modules() if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 5  # three in the backbone, two in the attention head
    assert all(type(m) is nn.MaxPool2d and m.__dict__.get("forward") is max_pool_2x2 for m in pools)
    other = nn.Sequential(nn.MaxPool2d(3, 2), nn.MaxPool2d(2, 1), nn.MaxPool2d(2, ceil_mode=True))
    assert fast_max_pools(other) == 0
    plain = copy.deepcopy(model)
    for m in plain.modules():
        m.__dict__.pop("forward", None)
    x = torch.rand(5, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), plain(x))
    assert set(model.state_dict()) == set(plain.state_dict())


def test_deeplift_restores_the_fast_forward() -> None:
    model = SmallCNN(widths=(4, 8, 8, 8)).eval()
    with rescale_rules(model, 1e-10):
        pass
    pools = [m for m in model.modules() if isinstance(m, nn.MaxPool2d)]
    assert pools and all(m.__dict__.get("forward") is max_pool_2x2 for m in pools)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_zero_ties_on_vector_widths_differ_only_in_a_sign_the_next_layer_erases(dtype: torch.dtype) -> None:
    """Rows wide enough for the vectorised loops (64 px): equal values; only a zero's sign may differ."""
    x = torch.zeros(2, 8, 64, 64, dtype=dtype)
    x[:, :, 1::2] = -0.0  # bottom rows −0.0 against top rows +0.0: the kernel keeps the top's +0.0
    x[1, 3, 5, 7] = torch.nan
    ours, ref = _pooled(x), F.max_pool2d(x, 2)
    assert torch.equal(ours.isnan(), ref.isnan()) and torch.equal(ours.nan_to_num(), ref.nan_to_num())
    conv = nn.Conv2d(8, 4, 3, padding=1, bias=False).to(dtype)
    with torch.no_grad():
        a, b = conv(ours.nan_to_num()), conv(ref.nan_to_num())
    assert torch.equal(torch.signbit(a), torch.signbit(b)) and torch.equal(a, b)  # the sign is gone
