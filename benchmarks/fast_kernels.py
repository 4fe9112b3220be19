"""The default audit's two kernel replacements against PyTorch's own kernels: time and bit-for-bit equality.

    .venv/bin/python benchmarks/fast_kernels.py [--threads 2] [--repeats 30]

- the built-in CNN's 2 × 2 max-pool (``robustxai/models/_pool.py``) on the default model's three pool
  inputs at batch 64 (64 px): forward without a graph, and forward + backward (a recorded pass runs
  PyTorch's kernel itself, so those lines show ≈ 1);
- SSIM's 7 × 7 box mean (``robustxai/metrics/_box.py``) on the manipulation attack's 16 images × 3 planes
  and the stability metric's 40 maps × 5 planes (float64);
- one forward and one forward + backward pass of the default ``smallcnn`` at batch 64, with and without
  the fast pool.

Each line prints PyTorch's time, ours, their ratio and whether the outputs (and gradients) are equal bit for
bit. Times are medians of ``--repeats`` calls after a warm-up, alternating the two, in one process.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from robustxai.metrics._box import box_mean
from robustxai.models._pool import max_pool_2x2
from robustxai.models._smallcnn import SmallCNN


def _median_pair(a: Callable[[], object], b: Callable[[], object], repeats: int) -> tuple[float, float]:
    a(), b()
    ta, tb = [], []
    for _ in range(repeats):
        for fn, out in ((a, ta), (b, tb)):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
    return statistics.median(ta), statistics.median(tb)


def _line(
    name: str, ref: Callable[[], object], ours: Callable[[], object], equal: bool, repeats: int
) -> None:
    t_ref, t_ours = _median_pair(ref, ours, repeats)
    print(
        f"{name:<46} torch {t_ref * 1e3:8.2f} ms   ours {t_ours * 1e3:8.2f} ms   "
        f"÷ {t_ours / t_ref:5.2f}   bit-equal {equal}"
    )


def _pool_case(x: torch.Tensor, w: torch.Tensor, repeats: int) -> None:
    def native(t: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(t, 2)

    def grad(pool: Callable[[torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        xi = x.clone().requires_grad_(True)
        out = pool(xi)
        (gx,) = torch.autograd.grad((out * w).sum(), xi)
        return out, gx

    shape = list(x.shape)
    with torch.no_grad():
        same = torch.equal(native(x), max_pool_2x2(x))
        _line(f"max-pool {shape} forward", lambda: native(x), lambda: max_pool_2x2(x), same, repeats)
    a, b = grad(native), grad(max_pool_2x2)
    same = torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    _line(f"max-pool {shape} fwd+bwd", lambda: grad(native), lambda: grad(max_pool_2x2), same, repeats)


def _box_case(x: torch.Tensor, what: str, repeats: int) -> None:
    same = torch.equal(F.avg_pool2d(x, 7, stride=1), box_mean(x, 7))
    name = f"box mean 7×7, {x.shape[0]} planes {str(x.dtype)[6:]} ({what})"
    _line(name, lambda: F.avg_pool2d(x, 7, stride=1), lambda: box_mean(x, 7), same, repeats)


def _pool_lines(repeats: int) -> None:
    g = torch.Generator().manual_seed(0)
    for b, c, h, w in [(64, 16, 64, 64), (64, 32, 32, 32), (64, 64, 16, 16)]:
        x = torch.relu(torch.randn(b, c, h, w, generator=g))
        _pool_case(x, torch.randn(b, c, h // 2, w // 2, generator=g), repeats)


def _box_lines(repeats: int) -> None:
    g = torch.Generator().manual_seed(1)
    _box_case(torch.rand(48, 1, 64, 64, generator=g), "manipulation", repeats)
    _box_case(torch.rand(200, 1, 64, 64, generator=g, dtype=torch.float64), "stability", repeats)


def _model_lines(repeats: int) -> None:
    torch.manual_seed(0)
    fast = SmallCNN(widths=(16, 32, 64, 64)).eval()
    plain = copy.deepcopy(fast)
    for m in plain.modules():
        m.__dict__.pop("forward", None)  # back to nn.MaxPool2d's own forward
    x = torch.rand(64, 1, 64, 64)

    def fwd(model: torch.nn.Module) -> torch.Tensor:
        with torch.no_grad():
            out: torch.Tensor = model(x)
        return out

    def grad(model: torch.nn.Module) -> torch.Tensor:
        xi = x.clone().requires_grad_(True)
        (gx,) = torch.autograd.grad(model(xi)[:, 1].sum(), xi)
        return gx

    _line(
        "smallcnn batch 64: forward",
        lambda: fwd(plain),
        lambda: fwd(fast),
        torch.equal(fwd(plain), fwd(fast)),
        repeats,
    )
    _line(
        "smallcnn batch 64: forward + backward to the input",
        lambda: grad(plain),
        lambda: grad(fast),
        torch.equal(grad(plain), grad(fast)),
        repeats,
    )


def main() -> None:
    """Print the comparison (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), median of {args.repeats}")
    _pool_lines(args.repeats)
    _box_lines(args.repeats)
    _model_lines(args.repeats)


if __name__ == "__main__":
    main()
