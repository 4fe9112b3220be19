"""Attack cost ÷ its pass-count lower bound, measured in one run.

For each attack: wall time of one call on a batch ÷ (gradient steps × the time of one forward+backward pass
with respect to the input at the same batch size). 1.0 means the attack adds nothing to the passes it needs.

    .venv/bin/python benchmarks/attacks.py [--batch 64] [--size 64] [--repeats 5]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

import robustxai as rx


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = rx.create_model("smallcnn").eval()
    x = torch.rand(args.batch, 1, args.size, args.size)
    y = torch.randint(0, 2, (args.batch,))

    def one_pass() -> None:
        xi = x.clone().requires_grad_(True)
        torch.autograd.grad(F.cross_entropy(model(xi), y, reduction="sum"), xi)

    def passes(n: int) -> float:
        """Best time of n back-to-back passes ÷ n: the same granularity as an n-step attack."""
        return best_time(lambda: [one_pass() for _ in range(n)], args.repeats) / n

    t_pass = passes(10)
    print(f"smallcnn, batch {args.batch}, {args.size}px: forward+backward {1000 * t_pass:.1f} ms")
    print(f"{'attack':<42}{'steps':>6}{'time ms':>10}{'ratio':>8}")
    for name, kwargs, steps in [
        ("fgsm", {}, 1),
        ("bim", {"steps": 10}, 10),
        ("pgd", {"steps": 10, "random_start": True}, 10),
        ("pgd", {"steps": 40, "random_start": True}, 40),
    ]:
        attack = rx.create_attack(name, eps=4 / 255, **kwargs)
        t = best_time(lambda a=attack: a(model, x, y), args.repeats)
        label = f"{name} {kwargs}" if kwargs else name
        print(f"{label:<42}{steps:>6}{1000 * t:>10.1f}{t / (steps * passes(steps)):>8.2f}")


if __name__ == "__main__":
    main()
