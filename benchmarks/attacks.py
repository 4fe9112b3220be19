"""Attack cost ÷ its pass-count lower bound, measured in one run.

For each attack: wall time of one call on a batch ÷ (gradient passes × the time of one forward+backward pass
with respect to the input at the same batch size). 1.0 means the attack adds nothing to the passes it needs;
the target is ≤ 1.15. Passes: FGSM 1, BIM/PGD ``steps``, APGD ``steps + 1`` (it also evaluates its start).

    .venv/bin/python benchmarks/attacks.py [--batch 32] [--size 64] [--repeats 2] [--apgd-steps 20]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

import robustxai as rx
from robustxai._runtime import OPT_OUT, keep_freed_memory


def best_time(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--apgd-steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument(
        "--system-malloc",
        action="store_true",
        help="leave glibc's malloc as it is instead of keeping freed memory, as the CLI does (_runtime.py)",
    )
    args = parser.parse_args()
    if args.system_malloc:  # the environment reaches child processes and Ray workers too
        os.environ[OPT_OUT] = "1"
    keep_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = rx.create_model("smallcnn").eval()
    x = torch.rand(args.batch, 1, args.size, args.size)
    y = torch.randint(0, 2, (args.batch,))

    def one_pass() -> None:
        xi = x.clone().requires_grad_(True)
        torch.autograd.grad(F.cross_entropy(model(xi), y, reduction="sum"), xi)

    cache: dict[int, float] = {}

    def passes(n: int) -> float:
        """Best time of n back-to-back passes ÷ n: the same granularity as an n-step attack."""
        if n not in cache:
            cache[n] = best_time(lambda: [one_pass() for _ in range(n)], args.repeats) / n
        return cache[n]

    t_pass = passes(10)
    print(
        f"smallcnn, batch {args.batch}, {args.size}px, {torch.get_num_threads()} threads: "
        f"forward+backward {1000 * t_pass:.1f} ms"
    )
    n = args.apgd_steps
    rows: list[tuple[str, str, dict[str, Any], int]] = [
        ("fgsm", "fgsm", {}, 1),
        ("bim-10", "bim", {"steps": 10}, 10),
        ("pgd-linf-10", "pgd", {"steps": 10}, 10),
        ("pgd-l2-10", "pgd", {"steps": 10, "norm": "l2", "eps": 0.5}, 10),
        (f"apgd-ce-linf-{n}", "apgd", {"steps": n}, n + 1),
        (f"apgd-ce-l2-{n}", "apgd", {"steps": n, "norm": "l2", "eps": 0.5}, n + 1),
    ]
    print(f"{'attack':<20}{'passes':>7}{'time ms':>10}{'ratio':>8}")
    for label, name, kwargs, n_passes in rows:
        attack = rx.create_attack(name, **{"eps": 4 / 255, **kwargs})
        t = best_time(lambda a=attack: a(model, x, y), args.repeats)
        print(f"{label:<20}{n_passes:>7}{1000 * t:>10.1f}{t / (n_passes * passes(n_passes)):>8.2f}")


if __name__ == "__main__":
    main()
