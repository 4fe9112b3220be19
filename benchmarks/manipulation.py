"""Cost of the explanation-manipulation attack.

1. Per method: one attack iteration ÷ one double-backward pass (the input gradient of the saliency map's
   sum, i.e. forward + backward with create_graph + backward through that graph) at the same batch size.
   An iteration also runs the real model's forward+backward for the prediction term, and IG / SmoothGrad
   evaluate ``ig_steps`` / ``sg_samples`` copies, so their ratios are ≈ 1 + that count.
2. The audit stage's wall time per method on ``--images`` images (default 32) at ``--size`` px with the
   default profile's settings, transfer off (each method scored on its own map by the registered explainer).

    .venv/bin/python benchmarks/manipulation.py [--batch 16] [--size 64] [--images 32] [--iterations 100]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

import robustxai as rx
from robustxai._runtime import OPT_OUT, keep_freed_memory
from robustxai.audit._config import load_config, validate_config
from robustxai.audit._stages_manip import ManipulationShard, manipulation_shard
from robustxai.manipulate import SoftplusSurrogate, create_manipulation

METHODS = ["saliency", "input_x_gradient", "gradcam", "guided_gradcam", "integrated_gradients", "smoothgrad"]


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
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", nargs="*", default=METHODS)
    parser.add_argument(
        "--system-malloc",
        action="store_true",
        help="leave glibc's malloc as it is instead of keeping freed memory, as the CLI does (_runtime.py)",
    )
    args = parser.parse_args()
    if args.system_malloc:  # the environment reaches child processes and Ray workers too
        os.environ[OPT_OUT] = "1"
    keep_freed_memory()
    torch.manual_seed(0)
    model = rx.create_model("smallcnn").eval()
    x = torch.rand(args.batch, 1, args.size, args.size)
    y = torch.randint(0, 2, (args.batch,))
    cls = model(x).argmax(1)
    sur = SoftplusSurrogate(model, 10.0)
    saliency = rx.create_explainer("saliency")

    def double_backward() -> None:
        xi = x.clone().requires_grad_(True)
        torch.autograd.grad(saliency.map_for_attack(sur, xi, cls).sum(), xi)

    t_pass = best_time(lambda: [double_backward() for _ in range(5)], args.repeats) / 5
    print(f"smallcnn, batch {args.batch}, {args.size}px: one double-backward pass {1000 * t_pass:.1f} ms")
    print(f"{'method':<22}{'ms / iteration':>16}{'ratio':>8}")
    for method in args.methods:
        steps = 10
        attack = create_manipulation("manipulate", method=method, iterations=steps)
        t = best_time(lambda a=attack: a(model, x, y), args.repeats) / steps
        print(f"{method:<22}{1000 * t:>16.1f}{t / t_pass:>8.2f}")

    raw = load_config(profile="default").model_dump()
    raw["manipulation"] = {
        **raw.get("manipulation", {}),
        "iterations": args.iterations,
        "transfer_from": [],
        "batch_size": args.batch,
    }
    cfg = validate_config(raw)
    gen = torch.Generator().manual_seed(1)
    images = torch.rand(args.images, 1, args.size, args.size, generator=gen)
    labels = torch.randint(0, 2, (args.images,), generator=gen)
    masks = torch.zeros(args.images, args.size, args.size, dtype=torch.bool)
    masks[:, args.size // 2 :, : args.size // 4] = True
    shard = ManipulationShard(
        [f"s{i}" for i in range(args.images)], images, labels, masks, [np.zeros((0, 2))] * args.images, 0
    )
    print(f"\nstage on {args.images} images, {args.size}px, {args.iterations} iterations, batch {args.batch}")
    print(f"{'method':<22}{'seconds':>10}")
    for method in args.methods:
        t = time.perf_counter()
        manipulation_shard("smallcnn", model, cfg, method, shard)
        print(f"{method:<22}{time.perf_counter() - t:>10.1f}")


if __name__ == "__main__":
    main()
