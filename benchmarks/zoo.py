"""ImageNet backbones at 224 px: per-pass time, each stage ÷ its pass-count bound, memory (issue 16 item 5).

For each model (random-initialised, built locally: nothing is downloaded), in a subprocess of its own so that
its peak RSS is its own:

- per-pass time at ``--images`` rows: forward (inference mode) and forward+backward to the input, the
  median of a few passes (:func:`robustxai.audit._timing.measure`); saved activations per image;
- the same forward+backward pass in the ``channels_last`` layout (convolutional models only);
- each stage — PGD-10, saliency, integrated gradients, Grad-CAM, occlusion, and attention rollout where the
  model has attention — timed after one untimed warm-up call (a cheap one: the best of 3), then divided by
  its pass-count lower bound: the rows its ``passes()`` declares, times per-row forward and backward costs
  measured *right after the stage* at the rows per pass the method uses, so a change of machine load
  reaches both sides of the ratio;
- peak RSS of the process (``ru_maxrss``).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/zoo.py [--models resnet50,vit] [--images 2] [--ig-steps 8]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any

import torch

CHEAP_S = 5.0  # a stage faster than this is timed up to 3 times (the best kept): one cold call is noise
ZOO = {
    "resnet50": "torchvision:resnet50",
    "densenet121": "torchvision:densenet121",
    "convnext": "timm:convnext_atto",
    "vit": "timm:vit_tiny_patch16_224",
    "swin": "timm:swin_tiny_patch4_window7_224",
}


def _bound(model: Any, method: Any, n: int, size: int, fwd_bwd: tuple[int, int]) -> float:
    """Seconds of the method's declared passes at per-row costs measured now, at its rows per pass."""
    from robustxai.audit._timing import measure

    rows = method.pass_rows(n) if hasattr(method, "pass_rows") else n
    t = measure(model, (3, size, size), max(rows, 1), repeats=1)
    fwd, bwd = fwd_bwd
    f_row, g_row = t.forward / t.batch, t.gradient / t.batch
    return fwd * f_row + bwd * max(g_row - f_row, 0.0)


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _stage(model: Any, name: str, method: Any, x: torch.Tensor, y: torch.Tensor, size: int) -> dict[str, Any]:
    """Time a stage after a warm-up call (a cheap one: the best of 3) ÷ its bound (measured right after it).

    The warm-up matters at 224 px: a first call pages in fresh memory for its passes (1.6 GB for 16 rows of
    Swin-T), as the bound's own passes do in their warm-up.
    """
    took: list[float] = []
    counts = (0, 0)
    while len(took) < 2 or (sum(took[1:]) < CHEAP_S and len(took) < 4):  # the first call warms up, untimed
        t = time.perf_counter()
        if name == "pgd-10":
            method(model, x, y)
            counts = method.passes(len(x))
        else:
            method.explain(model, x)
            counts = method.passes(len(x), size, size)
            if not method.finds_prediction():  # the forward pass that finds the explained class
                counts = (counts[0] + len(x), counts[1])
        took.append(time.perf_counter() - t)
    rss = _rss_mib()
    bound = _bound(model, method, len(x), size, counts)
    ratio = min(took[1:]) / bound
    return {
        "stage": name,
        "fwd": counts[0],
        "bwd": counts[1],
        "s": min(took[1:]),
        "bound_s": bound,
        "ratio": ratio,
        "rss_mib": rss,
    }


def one(key: str, n: int, size: int, ig_steps: int) -> dict[str, Any]:
    """Everything measured for one model (run in its own process)."""
    import robustxai as rx
    from robustxai.attacks import create_attack
    from robustxai.audit._batching import is_convolutional
    from robustxai.audit._timing import _saved_bytes, measure

    rx.keep_freed_memory()  # as the CLI does (BENCHMARKS.md, "Explainers")
    torch.manual_seed(0)
    model = rx.create_model(ZOO[key], num_classes=2, random_init=True, in_channels=3).eval()
    x = torch.rand(n, 3, size, size)
    y = torch.zeros(n, dtype=torch.long)
    t = measure(model, (3, size, size), n, repeats=3)
    rss_passes = _rss_mib()
    out: dict[str, Any] = {"model": key, "arch": ZOO[key], "images": n, "threads": torch.get_num_threads()}
    out.update(fwd_ms=1000 * t.forward / n, grad_ms=1000 * t.gradient / n, params_mib=t.param_bytes / 2**20)
    out["act_mib_per_image"] = _saved_bytes(model, x[:1]) / 2**20
    out["rss_passes_mib"] = rss_passes
    stages = [("pgd-10", create_attack("pgd", eps=4 / 255, steps=10))]
    stages += [(m, rx.create_explainer(m)) for m in ("saliency", "gradcam")]
    stages.append(("integrated_gradients", rx.create_explainer("integrated_gradients", n_steps=ig_steps)))
    stages.append(("occlusion", rx.create_explainer("occlusion", window=56, stride=56)))
    stages.append(("attention_rollout", rx.create_explainer("attention_rollout")))
    out["stages"] = []
    for name, method in stages:
        why = method.applicable(model) if hasattr(method, "applicable") and name != "pgd-10" else None
        if why:
            out["stages"].append({"stage": name, "skipped": why})
            continue
        out["stages"].append(_stage(model, name, method, x, y, size))
    if is_convolutional(model):
        model.to(memory_format=torch.channels_last)
        cl = measure(model, (3, size, size), n, repeats=3)
        out.update(cl_fwd_ms=1000 * cl.forward / n, cl_grad_ms=1000 * cl.gradient / n)
    out["peak_rss_mib"] = _rss_mib()
    return out


def _print(r: dict[str, Any]) -> None:
    cl = ""
    if "cl_grad_ms" in r:
        cl = f"; channels_last fwd {r['cl_fwd_ms']:.0f}, fwd+bwd {r['cl_grad_ms']:.0f} ms/image"
    print(
        f"\n{r['model']} ({r['arch']}, {r['params_mib']:.0f} MiB parameters, {r['images']} images, "
        f"{r['threads']} thr): fwd {r['fwd_ms']:.0f} ms/image, fwd+bwd {r['grad_ms']:.0f} ms/image{cl}; "
        f"saved activations {r['act_mib_per_image']:.0f} MiB/image; peak RSS {r['peak_rss_mib']:.0f} MiB "
        f"(after the timed passes {r['rss_passes_mib']:.0f} MiB)"
    )
    for s in r["stages"]:
        if "skipped" in s:
            print(f"  {s['stage']:<22} skipped: {s['skipped']}")
        else:
            print(
                f"  {s['stage']:<22} {s['fwd']:>5} fwd / {s['bwd']:>4} bwd rows   {s['s']:8.2f} s ÷ "
                f"{s['bound_s']:8.2f} s = {s['ratio']:.2f}   peak RSS so far {s['rss_mib']:.0f} MiB"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default=",".join(ZOO))
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--ig-steps", type=int, default=8)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.images, args.size, args.ig_steps)))
        return
    print(f"load: {os.getloadavg()}")
    for key in filter(None, args.models.split(",")):
        cmd = [sys.executable, __file__, "--one", key, "--images", str(args.images), "--size", str(args.size)]
        done = subprocess.run([*cmd, "--ig-steps", str(args.ig_steps)], capture_output=True, text=True)
        lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
        if done.returncode or not lines:
            print(f"\n{key}: failed\n{done.stderr[-2000:]}")
            continue
        _print(json.loads(lines[-1]))
    print(f"\nload: {os.getloadavg()}")


if __name__ == "__main__":
    main()
