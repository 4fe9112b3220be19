"""Explainer cost ÷ its pass-count lower bound, and a whole explanation grid against a per-image script.

Part 1. For every registered explainer (but ``random``), on ``smallcnn`` at 64 px with a batch of 32: the
best wall time of one call ÷ its lower bound, ``n_forward × t_forward + n_backward × t_backward``. The pass
counts are the explainer's own ``passes(batch, height, width)`` (IG: n_steps forward+backward per image;
DeepLIFT: images and references; occlusion: one forward per window plus the unoccluded one; ...), and the
per-image times ``t_forward`` (no-grad forward) and ``t_backward`` (forward+backward with respect to the
input, minus the forward) are measured in the same run at the batch size the explainer actually passes
through the model per chunk, its ``pass_rows(batch)`` (e.g. 32 image × step rows for IG on CPU, 2 × 16 rows
of images and references for DeepLIFT), right before and after its call. So 1.0 means the method costs
exactly its passes at its own pass size: everything else it does (input checks, building perturbations,
reductions, Captum's wrappers, segmentation for LIME and XRAI, ranking for XRAI) is what the ratio shows.
A call is timed as the best of ``max(repeats, 7)`` after a warm-up, unless its bound exceeds 1 s (then
``repeats``) or 5 s (then once, without warm-up); each timed call is followed by a measurement of the passes
(best of 3 each), and the bound takes the best of those, so a change of load reaches both sides.
``--clock cpu`` times part 1 in this process's CPU time instead of wall time, for a machine others are using
(run it with one torch thread, ``OMP_NUM_THREADS=1``). The process keeps freed memory for reuse, as the CLI
does (:mod:`robustxai._runtime`); ``--system-malloc`` leaves glibc's malloc as it is.

Part 2. The explanation grid of an audit — saliency, integrated_gradients, gradcam, smoothgrad and occlusion
on 64 images, each scored by point coverage of the top 15 % — done with robustxai's batched explainers and
``rx.metrics.point_coverage``, ÷ the time of a straightforward script that does the same work one image at a
time with Captum and Quantus (``TopKIntersection``), per method and whole. Both sides are timed in float32,
as an audit runs; the script computes identical numbers, which a second float64 run of both sides checks:
the benchmark asserts that the maps agree to 1e-5 and the coverages exactly (why not in float32: ``part2``).

    .venv/bin/python benchmarks/explainers.py [--quick] [--part 1|2] [--clock wall|cpu] [--system-malloc]
        [--batch 32] [--grid 64] [--size 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import quantus
import torch
from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, Occlusion, Saliency

import robustxai as rx
from robustxai._runtime import OPT_OUT, keep_freed_memory

warnings.filterwarnings("ignore")


def best_time(
    fn: Callable[[], Any], repeats: int, warm_up: bool = True, clock: Callable[[], float] = time.perf_counter
) -> float:
    if warm_up:
        fn()
    times = []
    for _ in range(repeats):
        t = clock()
        fn()
        times.append(clock() - t)
    return min(times)


def part1(model: torch.nn.Module, args: argparse.Namespace) -> None:
    # --clock cpu: this process's CPU time, which a busy shared machine disturbs far less than wall time
    # (with one torch thread an idle machine gives CPU time ≈ wall time)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, 1, args.size, args.size, generator=gen)
    with torch.no_grad():
        targets = model(x).argmax(dim=1)
    inputs: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def pass_times(rows: int) -> tuple[float, float]:
        """Per-image forward and backward times at ``rows`` rows per pass, measured now (load drifts)."""
        if rows not in inputs:
            xr = torch.rand(rows, 1, args.size, args.size, generator=gen)
            with torch.no_grad():
                inputs[rows] = xr, model(xr).argmax(dim=1)
        xr, tr = inputs[rows]

        def forward() -> None:
            with torch.no_grad():
                model(xr)

        def forward_backward() -> None:
            xi = xr.clone().requires_grad_(True)
            torch.autograd.grad(model(xi).gather(1, tr[:, None]).sum(), xi)

        t_f = best_time(forward, 3, clock=clock) / rows
        return t_f, best_time(forward_backward, 3, clock=clock) / rows - t_f

    t_f, t_b = pass_times(args.batch)
    print(
        f"smallcnn, batch {args.batch}, {args.size}px, {torch.get_num_threads()} thread(s), {args.clock} "
        f"clock: forward {1e3 * t_f:.2f} ms/image, "
        f"backward {1e3 * t_b:.2f} ms/image at {args.batch} rows per pass (the bound of each explainer is "
        f"re-measured around it, at its own rows per pass); malloc: "
        f"{'keeps freed memory' if args.kept_memory else 'as the system has it'}"
    )
    header = ("forward", 9), ("backward", 9), ("rows", 6), ("bound ms", 10), ("time ms", 10), ("ratio", 7)
    print(f"{'explainer':<22}" + "".join(f"{title:>{width}}" for title, width in header))
    for name in rx.list_explainers():
        if name == "random":
            continue
        explainer = rx.create_explainer(name, **SETTINGS.get(name, {}))
        if explainer.applicable(model) is not None:  # e.g. attention rollout: no attention in a CNN
            continue
        n_f, n_b = explainer.passes(args.batch, args.size, args.size)
        rows = explainer.pass_rows(args.batch, x.device)
        measured = [pass_times(rows)]
        estimate = n_f * measured[0][0] + n_b * measured[0][1]
        rounds = 1 if estimate > 5 else args.repeats if estimate > 1 else max(args.repeats, 7)

        def call(e: rx.Explainer = explainer) -> None:
            e.explain(model, x, target=targets)

        if estimate <= 5:
            call()  # warm-up
        t = math.inf
        for _ in range(rounds):  # calls and passes alternate, so a change of load reaches both sides
            t = min(t, best_time(call, 1, warm_up=False, clock=clock))
            measured.append(pass_times(rows))
        bound = n_f * min(m[0] for m in measured) + n_b * min(m[1] for m in measured)
        print(f"{name:<22}{n_f:>9}{n_b:>9}{rows:>6}{1e3 * bound:>10.0f}{1e3 * t:>10.0f}{t / bound:>7.2f}")


# Hyper-parameters of part 1 (defaults otherwise); LIME and XRAI as an audit would run them.
SETTINGS: dict[str, dict[str, Any]] = {}


# ------------------------------------------------------------------------------------------------ part 2

GRID = ("saliency", "integrated_gradients", "gradcam", "smoothgrad", "occlusion")


def reference_map(name: str, model: torch.nn.Module, image: torch.Tensor, target: int, ex: Any) -> np.ndarray:
    """One image's map, written as a user would with Captum (settings copied from the explainer)."""
    p = ex.params()
    if name == "saliency":
        attr = Saliency(model).attribute(image.clone().requires_grad_(True), target=target, abs=True)
        return attr.abs().amax(dim=1)[0].detach().numpy()
    if name == "integrated_gradients":
        attr = IntegratedGradients(model).attribute(
            image, baselines=torch.zeros_like(image), target=target, n_steps=p["n_steps"], method=p["method"]
        )
        return attr.abs().amax(dim=1)[0].detach().numpy()
    if name == "gradcam":
        cam = LayerGradCam(model, model.get_cam_layer()).attribute(
            image, target=target, relu_attributions=True
        )
        up = LayerAttribution.interpolate(cam, tuple(image.shape[-2:]), interpolate_mode="bilinear")
        return up.abs().amax(dim=1)[0].detach().numpy()
    if name == "occlusion":
        window, stride = ex.geometry(*image.shape[-2:])
        attr = Occlusion(model).attribute(
            image,
            sliding_window_shapes=(image.shape[1], window, window),
            strides=(image.shape[1], stride, stride),
            baselines=0.0,
            target=target,
        )
        return attr.amax(dim=1)[0].detach().numpy()
    raise KeyError(name)


def smoothgrad_noise(ex: Any, images: torch.Tensor) -> torch.Tensor:
    """SmoothGrad's noise, drawn as Captum's NoiseTunnel draws it, for the whole set (row b·n + s)."""
    p = ex.params()
    gen = torch.Generator().manual_seed(p["seed"])
    shape = (images.shape[0] * p["n_samples"], *images.shape[1:])
    return torch.normal(0.0, torch.tensor(p["noise"]).repeat(shape), generator=gen)


Grid = dict[str, tuple[np.ndarray, np.ndarray]]  # method → (maps [N, H, W], coverages [N])


def grid_ours(model: torch.nn.Module, x: torch.Tensor, targets: torch.Tensor, points: list[np.ndarray],
              explainers: dict[str, Any]) -> tuple[Grid, dict[str, float]]:  # fmt: skip
    """The grid with robustxai's batched explainers and metric, and each method's time."""
    out, times = {}, {}
    for name, ex in explainers.items():
        start = time.perf_counter()
        maps = ex.explain(model, x, target=targets).maps
        cover = rx.metrics.point_coverage(maps, points, top=0.15)
        times[name] = time.perf_counter() - start
        out[name] = (maps.numpy(), cover.numpy())
    return out, times


def grid_reference(model: torch.nn.Module, x: torch.Tensor, targets: torch.Tensor, points: list[np.ndarray],
                   explainers: dict[str, Any]) -> tuple[Grid, dict[str, float]]:  # fmt: skip
    """The grid as a straightforward script: Captum and Quantus, one image at a time; each method's time."""
    metric = quantus.TopKIntersection(k=1, normalise=False, abs=False, disable_warnings=True,
                                      display_progressbar=False)  # fmt: skip
    out, times = {}, {}
    for name, ex in explainers.items():
        start = time.perf_counter()
        noise = smoothgrad_noise(ex, x) if name == "smoothgrad" else None
        maps, cover = [], []
        for i in range(len(x)):
            image, t = x[i : i + 1], int(targets[i])
            if noise is not None:
                n = ex.params()["n_samples"]
                noisy = (image + noise[i * n : (i + 1) * n]).requires_grad_(True)
                grads = Saliency(model).attribute(noisy, target=t, abs=True)
                m = grads.mean(dim=0).abs().amax(dim=0).detach().numpy()
            else:
                m = reference_map(name, model, image, t, ex)
            # top 15 % as METHODS.md: pixels ≥ the 85th percentile (ties kept) — Quantus takes a count
            metric.k = int((m >= np.percentile(m, 85)).sum())
            truth = np.zeros((1, 1, *m.shape))
            truth[0, 0, points[i][:, 1], points[i][:, 0]] = 1
            hits = metric(
                model=None, x_batch=image.numpy(), y_batch=np.array([t]), a_batch=m[None, None], s_batch=truth
            )[0]
            maps.append(m)
            cover.append(hits * metric.k / len(np.unique(points[i], axis=0)))
        times[name] = time.perf_counter() - start
        out[name] = (np.stack(maps), np.array(cover))
    return out, times


def part2(model: torch.nn.Module, args: argparse.Namespace) -> None:
    """Time the grid in float32, check its numbers in float64.

    Both sides run twice. The timed run is float32, what an audit runs. There the maps cannot be compared
    exactly: a batched and a single-image convolution round differently, and on a few images that flips a
    max-pool choice, so a map can differ by far more than rounding. So both sides run again in float64 on the
    same images, where the benchmark asserts that every map agrees to 1e-5 (of its scale) and every coverage
    exactly; that run's ratio is printed too. (Occlusion is incremental on our side — each window re-evaluates
    only the layers' boxes it reaches, not a forward pass — and Captum's per-image Occlusion on the other.)
    Both sides run on one thread, the fastest setting for these small models on CPU.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # both sides; two threads on a busy 2-core machine made the script 20× slower
    gen = torch.Generator().manual_seed(1)
    x64 = torch.rand(args.grid, 1, args.size, args.size, generator=gen, dtype=torch.float64)
    points = [torch.randint(0, args.size, (3, 2), generator=gen).numpy() for _ in range(args.grid)]
    explainers = {name: rx.create_explainer(name) for name in GRID}
    runs: dict[torch.dtype, tuple[Grid, dict[str, float], Grid, dict[str, float]]] = {}
    for dtype in (torch.float32, torch.float64):
        m, x = copy.deepcopy(model).to(dtype), x64.to(dtype)
        with torch.no_grad():
            targets = m(x).argmax(dim=1)
        explainers["saliency"](m, x[:2])  # warm-up, both sides
        Saliency(m).attribute(x[:1].clone().requires_grad_(True), target=int(targets[0]))
        runs[dtype] = (
            *grid_ours(m, x, targets, points, explainers),
            *grid_reference(m, x, targets, points, explainers),
        )
    torch.set_num_threads(threads)
    ours64, _, ref64, _ = runs[torch.float64]
    ours32, t_ours, ref32, t_ref = runs[torch.float32]
    print(f"\nexplanation grid: {', '.join(GRID)} on {args.grid} images + point coverage (top 15 %)")
    print(f"{'':<22}{'float64 check run':>24}{'timed run, float32':>44}")
    print(f"{'method':<22}{'max |Δmap|':>12}{'coverage':>10}{'Δmap>1e-5':>11}{'ours s':>9}{'script s':>10}"
          f"{'ratio':>7}{'f64 ratio':>11}")  # fmt: skip
    for name in GRID:
        (a, ca), (b, cb) = ours64[name], ref64[name]
        diff = float(np.abs(a - b).max())
        scale = max(1.0, float(np.abs(b).max()))
        assert diff <= 1e-5 * scale, f"{name}: maps differ by {diff}"
        assert np.allclose(ca, cb, atol=1e-12), f"{name}: coverages differ"
        a32, b32 = ours32[name][0], ref32[name][0]
        off = int((np.abs(a32 - b32).reshape(len(a32), -1).max(axis=1) > 1e-5 * scale).sum())
        r64 = runs[torch.float64][1][name] / runs[torch.float64][3][name]
        print(f"{name:<22}{diff:>12.1e}{100 * float(np.nanmean(ca)):>9.1f}%{off:>6} imgs{t_ours[name]:>9.2f}"
              f"{t_ref[name]:>10.2f}{t_ours[name] / t_ref[name]:>7.2f}{r64:>11.2f}")  # fmt: skip
    whole, whole_ref = sum(t_ours.values()), sum(t_ref.values())
    whole64, whole_ref64 = sum(runs[torch.float64][1].values()), sum(runs[torch.float64][3].values())
    print(f"whole grid, float32: robustxai {whole:.1f} s, per-image Captum + Quantus {whole_ref:.1f} s, "
          f"ratio {whole / whole_ref:.2f} (float64 check run: {whole64:.1f} s ÷ {whole_ref64:.1f} s = "
          f"{whole64 / whole_ref64:.2f})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller batches and one repeat")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--grid", type=int, default=64)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--part", type=int, choices=(1, 2), help="run only part 1 or part 2")
    parser.add_argument(
        "--clock", choices=("wall", "cpu"), default="wall", help="clock of part 1 (cpu: process CPU time)"
    )
    parser.add_argument(
        "--system-malloc",
        action="store_true",
        help="leave glibc's malloc as it is instead of keeping freed memory, as the CLI does (_runtime.py)",
    )
    args = parser.parse_args()
    if args.system_malloc:  # the environment reaches child processes and Ray workers too
        os.environ[OPT_OUT] = "1"
    args.kept_memory = keep_freed_memory()
    if args.quick:
        args.batch, args.grid, args.repeats = 16, 16, 1
    torch.manual_seed(0)
    model = rx.create_model("smallcnn").eval()
    if args.part in (None, 1):
        part1(model, args)
    if args.part in (None, 2):
        part2(model, args)


if __name__ == "__main__":
    main()
