"""Does ``channels_last`` memory format speed up CNN passes on this CPU? (issue 16, item 4)

Times forward and forward+backward (to the input, as attacks and gradient explainers run) of a max-pool
layer alone and of torchvision CNNs at 224 px, in the default (NCHW) and the ``channels_last`` (NHWC) layout,
and checks that the logits agree to float tolerance. Nothing in the library switches the layout; this
measures whether it should.

    .venv/bin/python benchmarks/channels_last.py [--models resnet18,resnet50] [--batch 8] [--size 224]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn


def median_time(fn: Callable[[], None], repeats: int) -> float:
    """Median seconds of ``repeats`` calls after one warm-up."""
    fn()
    took = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        took.append(time.perf_counter() - t)
    return statistics.median(took)


def passes(model: nn.Module, x: torch.Tensor, repeats: int) -> tuple[float, float]:
    """Median seconds of a forward pass and of a forward+backward pass to the input."""

    def fwd() -> None:
        with torch.inference_mode():
            model(x)

    def grad() -> None:
        xi = x.detach().clone().requires_grad_(True)
        torch.autograd.grad(model(xi).sum(), xi)

    return median_time(fwd, repeats), median_time(grad, repeats)


def compare(name: str, model: nn.Module, x: torch.Tensor, repeats: int) -> None:
    """Print both layouts' times, the speed-up and the largest logit difference."""
    model = model.eval()
    f0, g0 = passes(model, x, repeats)
    with torch.no_grad():
        ref = model(x)
    model_cl = model.to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    f1, g1 = passes(model_cl, x_cl, repeats)
    with torch.no_grad():
        diff = float((model_cl(x_cl) - ref).abs().max())
    print(
        f"{name:<12} fwd {1000 * f0:8.1f} → {1000 * f1:8.1f} ms ({f0 / f1:4.2f}×)   "
        f"fwd+bwd {1000 * g0:8.1f} → {1000 * g1:8.1f} ms ({g0 / g1:4.2f}×)   max |Δ| {diff:.2e}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="resnet18,resnet50")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import torchvision

    torch.manual_seed(0)
    print(f"{torch.get_num_threads()} threads, batch {args.batch}, {args.size} px, default → channels_last")
    x = torch.rand(args.batch, 64, args.size // 2, args.size // 2)
    compare("maxpool 3×3", nn.MaxPool2d(3, 2, 1), x, args.repeats)
    images = torch.rand(args.batch, 3, args.size, args.size)
    for name in filter(None, args.models.split(",")):
        compare(name, getattr(torchvision.models, name)(weights=None), images, args.repeats)


if __name__ == "__main__":
    main()
