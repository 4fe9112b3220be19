"""``box_mean`` against ``F.avg_pool2d`` (the reference): equal values and gradients, bit for bit."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from robustxai.metrics._box import box_mean

WHITE_BOX = "why: the box mean is an internal speed-up of SSIM; its contract is avg_pool2d's numbers"


def _inputs(dtype: torch.dtype) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    rand = torch.rand(5, 3, 64, 64, generator=g, dtype=dtype)
    signed = torch.randn(2, 1, 33, 17, generator=g, dtype=dtype) * 1e3
    ties = torch.randint(0, 3, (2, 2, 12, 9), generator=g).to(dtype) / 3
    zeros = torch.zeros(1, 1, 9, 9, dtype=dtype)
    zeros[0, 0, ::2] = -0.0  # an all-signed-zero window: avg_pool2d's 0 + x makes it +0.0
    tiny = torch.full((1, 1, 7, 7), 1e-30, dtype=dtype) * torch.rand(1, 1, 7, 7, generator=g, dtype=dtype)
    many = torch.rand(16, 5, 20, 21, generator=g, dtype=dtype)  # 80 planes: full vectors and a tail
    return [rand, signed, ties, zeros, -zeros.abs(), tiny, rand * 1e30, many]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("k", [1, 3, 7])
def test_values_equal_avg_pool2d_bitwise(dtype: torch.dtype, k: int) -> None:
    for x in _inputs(dtype):
        if k > min(x.shape[-2:]):
            continue
        ours, ref = box_mean(x, k), F.avg_pool2d(x, k, stride=1)
        assert ours.dtype == ref.dtype and ours.shape == ref.shape and ours.stride() == ref.stride()
        assert torch.equal(ours, ref)
        assert torch.equal(torch.signbit(ours), torch.signbit(ref))  # even the sign of a zero


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gradient_equals_avg_pool2d_bitwise(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(4, 2, 20, 23, generator=g, dtype=dtype)
    w = torch.randn(4, 2, 14, 17, generator=g, dtype=dtype)
    a = x.clone().requires_grad_(True)
    b = x.clone().requires_grad_(True)
    (ga,) = torch.autograd.grad((box_mean(a, 7) * w).sum(), a)
    (gb,) = torch.autograd.grad((F.avg_pool2d(b, 7, stride=1) * w).sum(), b)
    assert torch.equal(ga, gb)


def test_second_order_through_the_box_mean_matches() -> None:
    """A gradient of a gradient (the manipulation attack differentiates maps) takes the same path."""
    x = torch.rand(2, 1, 12, 12, dtype=torch.float64)
    a = x.clone().requires_grad_(True)
    b = x.clone().requires_grad_(True)
    (ga,) = torch.autograd.grad((box_mean(a * a, 3) ** 2).sum(), a, create_graph=True)
    (gb,) = torch.autograd.grad((F.avg_pool2d(b * b, 3, stride=1) ** 2).sum(), b, create_graph=True)
    assert torch.equal(ga, gb)
    (gga,) = torch.autograd.grad(ga.sum(), a)
    (ggb,) = torch.autograd.grad(gb.sum(), b)
    assert torch.equal(gga, ggb)


def test_other_cases_fall_back_to_avg_pool2d() -> None:
    x = torch.rand(1, 1, 8, 8).to(torch.bfloat16)
    assert torch.equal(box_mean(x, 3), F.avg_pool2d(x, 3, stride=1))
    with pytest.raises(RuntimeError):  # a window larger than the image: avg_pool2d's own error
        box_mean(torch.rand(1, 1, 4, 4), 7)


def _ssim_reference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """SSIM as it was written before the box mean: five planes through ``F.avg_pool2d`` (the oracle)."""
    n = a.shape[0]
    x, y = a[:, None], b[:, None]
    stats = F.avg_pool2d(torch.cat([x, y, x * x, y * y, x * y], dim=0), kernel_size=7, stride=1)
    ux, uy, uxx, uyy, uxy = torch.split(stats, n, dim=0)
    cov = 49 / 48
    vx, vy, vxy = cov * (uxx - ux * ux), cov * (uyy - uy * uy), cov * (uxy - ux * uy)
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    return s.reshape(n, -1).mean(dim=1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("threads", [1, 2])
def test_ssim_per_image_keeps_its_bits(dtype: torch.dtype, threads: int) -> None:
    """The whole SSIM, reductions included, as before (a layout change once moved the last bit)."""
    from robustxai.metrics._similarity import SsimReference, ssim_per_image

    g = torch.Generator().manual_seed(2)
    a = torch.rand(40, 64, 64, generator=g, dtype=dtype) ** 3
    b = torch.where(a > 0.3, a, torch.zeros_like(a)).flip(-1)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        ref = _ssim_reference(a, b)
        assert torch.equal(ssim_per_image(a, b), ref)
        assert torch.equal(ssim_per_image(a, SsimReference(b)), ref)
    finally:
        torch.set_num_threads(before)
