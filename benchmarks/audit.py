"""Whole-audit cost against its pass-count lower bound, memory against data-set size, Ray against local.

Three figures (BENCHMARKS.md records them):

1. ``passes``: wall time of one audit (cache warm: models are trained by an untimed warm-up run) ÷ the
   pass-count lower bound of the same grid. The bound is, for each stage, the forward / forward+backward
   passes the methods need × the measured time of one such pass of the same model at the batch size used
   (fractional batches: a last partial batch counts by its images). Reported for the whole audit (data,
   model loading, units, report) and for the units alone. Target ≤ 1.2.
2. ``rss``: peak RSS of an audit subprocess with 10× the images ÷ with 1× (the smoke models, loaded from
   checkpoints so nothing is retrained; FGSM only; the data cache is written first). Target ≤ 1.2.
3. ``ray``: the smoke audit with the Ray executor ÷ with the local executor, with Ray already started and its
   workers warm (a first Ray audit is untimed); the cold figure includes ``ray.init`` and worker start-up.
   Target ≤ 1.15.

    .venv/bin/python benchmarks/audit.py [--only passes,rss,ray] [--profile smoke] [--n-test 300] [--size 64]

The bound's explainer passes come from each explainer's ``passes(batch, height, width)`` (images forward,
images backward per call) where it has one, else from :data:`EXPLAINER_PASSES`. ``--profile default
--n-test 0 --skip-warmup`` measures the default profile's grid (SmoothGrad, LIME, the manipulation stage) once
its models are cached (≈ 4 min of units on a 2-core machine). ``--clock cpu`` times the audit and the passes
in this process's CPU time instead of wall time (for a machine others are using; use one torch thread).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from robustxai._pipeline import run_audit
from robustxai._runtime import OPT_OUT, keep_freed_memory
from robustxai.attacks import create_attack
from robustxai.audit._cache import cache_root
from robustxai.audit._config import AuditConfig, load_config
from robustxai.audit._executor import ExecutionContext, LocalExecutor
from robustxai.audit._plan import Unit, explained_conditions, explanation_methods
from robustxai.audit._progress import LogProgress
from robustxai.audit._stages_data import build_datasets
from robustxai.audit._stages_manip import _attack
from robustxai.audit._stages_models import get_models
from robustxai.explain import create_explainer
from robustxai.results._store import Store

# Per image: (forward, backward) passes of each explainer, for explainers without a ``passes`` method
# (Captum batches its perturbations into these). Called with the explainer's parameters and the image size.
EXPLAINER_PASSES: dict[str, Callable[[dict[str, Any], int, int], tuple[float, float]]] = {
    "saliency": lambda p, h, w: (1, 1),
    "input_x_gradient": lambda p, h, w: (1, 1),
    "gradcam": lambda p, h, w: (1, 1),
    "guided_gradcam": lambda p, h, w: (2, 2),
    "integrated_gradients": lambda p, h, w: (p.get("n_steps", 20),) * 2,
    "smoothgrad": lambda p, h, w: (p.get("n_samples", p.get("nt_samples", 10)),) * 2,
    "deeplift": lambda p, h, w: (2, 2),
    "lime": lambda p, h, w: (p.get("n_samples", 256), 0),
    "random": lambda p, h, w: (0, 0),
}


EXPLAINER_COUNTS: dict[str, tuple[float, float]] = {}  # what the last bound used, for the output


def explainer_passes(method: str, params: dict[str, Any], batch: int, h: int, w: int) -> tuple[float, float]:
    """Images pushed forward and backward by one call of ``method`` on ``batch`` images of ``h × w``.

    The explainer's own count (its ``passes(batch, height, width)``) where it has one, else the table above.
    """
    explainer = create_explainer(method, **params)
    if hasattr(explainer, "passes"):
        try:
            forward, backward = explainer.passes(batch, h, w)
            return float(forward), float(backward)
        except TypeError:  # an explainer with an older signature
            pass
    forward, backward = EXPLAINER_PASSES.get(method, lambda p, h, w: (1, 1))(params, h, w)
    return forward * batch, backward * batch


def call_seconds(passes: tuple[float, float], batch: int, fwd: float, fb: float) -> float:
    """Seconds of one explainer call: backward images as forward+backward passes, the rest forward only."""
    forward, backward = passes
    return (backward * fb + max(forward - backward, 0.0) * fwd) / batch


# The clock of the pass-count figure: wall time, or (``--clock cpu``) this process's CPU time, which a busy
# shared machine disturbs far less (with one torch thread an idle machine gives CPU time ≈ wall time).
CLOCK = time.perf_counter


def median_time(fn: Any, repeats: int = 5) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = CLOCK()
        fn()
        times.append(CLOCK() - t)
    return statistics.median(times)


# Bound parts by unit kind.
STAGES = {"robustness": "robustness", "explanation": "explanations", "sanity": "sanity"}


class TimedExecutor(LocalExecutor):
    """The local executor, recording the seconds (on :data:`CLOCK`) its units take, in all and per stage."""

    seconds = 0.0

    def run(self, units: list[Unit], ctx: ExecutionContext, commit: Any) -> None:
        self.stages: dict[str, float] = {}
        start = last = CLOCK()

        def timed(
            unit: Unit, result: Any
        ) -> None:  # a unit's time: since the previous commit, its own included
            nonlocal last
            commit(unit, result)
            now = CLOCK()
            stage = STAGES.get(unit.kind, unit.kind)
            self.stages[stage] = self.stages.get(stage, 0.0) + now - last
            last = now

        super().run(units, ctx, timed)
        self.seconds = CLOCK() - start


def pass_times(model: torch.nn.Module, shape: tuple[int, ...], batch: int) -> tuple[float, float]:
    """Seconds of one forward and of one forward+backward (w.r.t. the input) pass at ``batch`` images."""
    x = torch.rand(batch, *shape)
    y = torch.zeros(batch, dtype=torch.long)

    def forward() -> None:
        with torch.no_grad():
            model(x)

    def forward_backward() -> None:
        xi = x.clone().requires_grad_(True)
        torch.autograd.grad(F.cross_entropy(model(xi), y, reduction="sum"), xi)

    return median_time(forward), median_time(forward_backward)


def lower_bound(cfg: AuditConfig) -> tuple[float, dict[str, float]]:
    """The pass-count lower bound of the audit's units, in seconds, and its share per stage."""
    cache = cache_root(cfg.cache_dir)
    train_ds, test_ds, info = build_datasets(cfg, cache, LogProgress())
    models, _ = get_models(cfg, train_ds, info, cache, LogProgress())
    shape = tuple(test_ds[0].image.shape)
    n, n_sub = len(test_ds), min(cfg.explain.n_images, len(test_ds))
    bs, ebs = cfg.batch_size, cfg.explain.batch_size
    parts = {"robustness": 0.0, "explanations": 0.0, "sanity": 0.0, "manipulation": 0.0}
    mc = cfg.manipulation
    h, w = shape[-2:]
    for name, model in models.items():
        model.eval()
        fwd, fb = pass_times(model, shape, bs)
        fwd_e, fb_e = pass_times(model, shape, ebs)
        parts["robustness"] += n / bs * fwd  # clean predictions
        for a in cfg.attacks:
            for eps in a.epsilons:
                attack = create_attack(a.name, eps=eps, **a.params)
                steps = int(getattr(attack, "steps", 1)) + (1 if a.name == "apgd" else 0)  # APGD: + start
                parts["robustness"] += n / bs * (steps * fb + fwd)  # attack steps, then the prediction
        if cfg.sanity.enabled:  # two forward passes (determinism) and one input gradient
            n_s = min(cfg.sanity.n_images, n)
            fwd_s, fb_s = pass_times(model, shape, n_s)
            parts["sanity"] += fb_s + 2 * fwd_s
        if mc is not None and (mc.models is None or name in mc.models):
            parts["manipulation"] += manipulation_bound(cfg, model, shape, min(mc.n_images, n_sub))
        for method in explanation_methods(cfg):
            passes = explainer_passes(method, cfg.explain.params.get(method, {}), ebs, h, w)
            per_call = call_seconds(passes, ebs, fwd_e, fb_e)
            parts["explanations"] += len(explained_conditions(cfg)) * n_sub / ebs * per_call
            EXPLAINER_COUNTS[method] = passes
    return sum(parts.values()), parts


def manipulation_bound(cfg: AuditConfig, model: torch.nn.Module, shape: tuple[int, ...], n_m: int) -> float:
    """Pass-count bound of one model's manipulation units, in seconds.

    Per iteration the attack needs the surrogate map's input gradient (a forward+backward with a graph) and
    the loss gradient through it (one more backward through both), plus the logits' forward+backward: at
    least 3 passes, and one more forward+backward of the real model with ``select = "real"``. Then the
    predictions (3 forwards: explained class, clean and attacked logits) and each evaluated explainer on the
    clean and the attacked images.
    """
    mc = cfg.manipulation
    assert mc is not None
    b = min(mc.batch_size, n_m)
    fwd, fb = pass_times(model, shape, b)
    h, w = shape[-2:]
    total = 0.0
    for method in mc.methods:
        override = mc.method_params.get(method, {})
        iterations = int(override.get("iterations", mc.iterations))
        per_iteration = (3 + (1 if _attack(mc, method).selection.real else 0)) * fb
        evaluated = [method]
        if method in mc.transfer_from:
            evaluated += [m for m in dict.fromkeys([*mc.methods, *mc.evaluate]) if m != method]
        maps = sum(
            2 * call_seconds(explainer_passes(ev, cfg.explain.params.get(ev, {}), b, h, w), b, fwd, fb)
            for ev in evaluated
        )
        total += n_m / b * (iterations * per_iteration + 3 * fwd + maps)
    return total


def bench_passes(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    overrides: dict[str, Any] = {"data": {"n_test": args.n_test, "size": args.size}} if args.n_test else {}
    if args.full_width:  # the profile's models at the default smallcnn widths (32-64-128-128)
        models = load_config(profile=args.profile).model_dump()["models"]
        overrides["models"] = [{**m, "arch_kwargs": {}} for m in models]
    cfg = load_config(profile=args.profile, **overrides)
    if not args.skip_warmup:
        run_audit(cfg, tmp / "warm")  # trains or loads the models; untimed
    executor = TimedExecutor()
    t, t_clock = time.perf_counter(), CLOCK()
    result = run_audit(cfg, tmp / "timed", executor=executor)
    whole, wall = CLOCK() - t_clock, time.perf_counter() - t
    with Store(result.store, readonly=True) as store:
        timings = store.get_meta("timings")
    bound, parts = lower_bound(cfg)
    overhead = {  # what the bound does not count (wall seconds)
        "data_s": timings["data"],
        "models_s": timings["models"],
        "setup_s": round(
            timings["total_before_report"] - timings["units"] - timings["data"] - timings["models"], 2
        ),
        "report_s": round(wall - timings["total_before_report"], 2),
    }
    return {
        "profile": args.profile + (" (full-width models)" if args.full_width else ""),
        "clock": args.clock,
        "n_test": cfg.data.n_test,
        "size": cfg.data.size,
        "audit_wall_s": round(wall, 2),
        "audit_s": round(whole, 2),
        "units_s": round(executor.seconds, 2),
        "lower_bound_s": round(bound, 2),
        "bound_parts_s": {k: round(v, 2) for k, v in parts.items()},
        "overhead_wall_s": overhead,
        "ratio_whole": round(whole / bound, 3),
        "ratio_units": round(executor.seconds / bound, 3),
        "ratio_by_stage": {k: round(executor.stages.get(k, 0.0) / v, 3) for k, v in parts.items() if v > 0},
        "explainer_passes_per_call": {
            m: [cfg.explain.batch_size, *map(float, fb)] for m, fb in EXPLAINER_COUNTS.items()
        },
    }


def rss_config(n_test: int, size: int, checkpoints: dict[str, str]) -> AuditConfig:
    """The memory benchmark's audit: the smoke grid with FGSM only (memory, not attacks, is measured)."""
    return load_config(
        profile="smoke",
        data={"n_test": n_test, "size": size},
        models=[{"name": name, "checkpoint": path} for name, path in checkpoints.items()],
        attacks=[{"name": "fgsm", "epsilons": [4 / 255]}],
        report={"primary_attack": "fgsm"},
    )


def rss_child(n_test: int, size: int, checkpoints: dict[str, str], out: str) -> None:
    """Run one audit in this process and print its peak RSS (MiB) as JSON."""
    run_audit(rss_config(n_test, size, checkpoints), out, fresh=True)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"n_test": n_test, "peak_rss_mib": round(peak_kib / 1024, 1)}))


def bench_rss(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    base = load_config(profile="smoke", data={"size": args.size})
    result = run_audit(base, tmp / "rss-models")  # trains the smoke models once; they become checkpoints
    with Store(result.store, readonly=True) as store:
        infos = {
            m: json.loads(i) for m, i in store.table("models")[["model", "info"]].itertuples(index=False)
        }
    checkpoints = {m: info["path"] for m, info in infos.items()}
    n1 = args.rss_images
    peaks, seconds = {}, {}
    for n in (n1, 10 * n1):
        cfg = rss_config(n, args.size, checkpoints)
        build_datasets(cfg, cache_root(cfg.cache_dir), LogProgress())  # the data cache is written here
        cmd = [sys.executable, __file__, "--rss-child", json.dumps([n, args.size, checkpoints])]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        t = time.perf_counter()
        out = subprocess.run([*cmd, str(tmp / f"rss-{n}")], check=True, capture_output=True, text=True)
        seconds[n] = round(time.perf_counter() - t, 1)
        peaks[n] = json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mib"]
    return {
        "images": [n1, 10 * n1],
        "peak_rss_mib": [peaks[n1], peaks[10 * n1]],
        "child_seconds": [seconds[n1], seconds[10 * n1]],
        "ratio": round(peaks[10 * n1] / peaks[n1], 3),
    }


def bench_ray(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    import ray

    from robustxai.audit._executor_ray import RayExecutor

    cfg = load_config(profile="smoke")
    run_audit(cfg, tmp / "ray-warm-local")  # trains or loads the models; untimed
    local = []
    for i in range(args.repeats):
        t = time.perf_counter()
        run_audit(cfg, tmp / f"ray-local-{i}")
        local.append(time.perf_counter() - t)
    t = time.perf_counter()
    ray.init(num_cpus=args.ray_cpus or os.cpu_count(), include_dashboard=False, logging_level="ERROR")
    run_audit(cfg, tmp / "ray-cold", executor=RayExecutor())
    cold = time.perf_counter() - t
    warm = []
    for i in range(args.repeats):
        t = time.perf_counter()
        run_audit(cfg, tmp / f"ray-warm-{i}", executor=RayExecutor())
        warm.append(time.perf_counter() - t)
    ray.shutdown()
    return {
        "local_s": round(min(local), 2),
        "ray_warm_s": round(min(warm), 2),
        "ray_cold_s": round(cold, 2),
        "ratio_warm": round(min(warm) / min(local), 3),
        "ratio_cold": round(cold / min(local), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="passes,rss,ray")
    parser.add_argument("--profile", default="smoke", help="grid of the pass-count figure (smoke or default)")
    parser.add_argument(
        "--n-test", type=int, default=300, help="test images of the pass-count figure (0: keep)"
    )
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--full-width", action="store_true", help="pass-count figure with default-width CNNs")
    parser.add_argument(
        "--skip-warmup", action="store_true", help="no untimed first audit (the model cache is already warm)"
    )
    parser.add_argument(
        "--rss-images", type=int, default=300, help="1× images (the default profile's n_test)"
    )
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--ray-cpus", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument(
        "--clock", choices=("wall", "cpu"), default="wall", help="clock of the pass-count figure"
    )
    parser.add_argument(
        "--system-malloc",
        action="store_true",
        help="leave glibc's malloc as it is instead of keeping freed memory, as the CLI does (_runtime.py)",
    )
    parser.add_argument("--rss-child", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.system_malloc:  # the environment reaches child processes and Ray workers too
        os.environ[OPT_OUT] = "1"
    args.kept_memory = keep_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.clock == "cpu" and args.threads != 1:
        # process CPU time adds up every thread's time, OpenMP spin-waits included
        parser.error("--clock cpu needs --threads 1")
    if args.clock == "cpu":
        global CLOCK
        CLOCK = time.process_time
    if args.rss_child:
        n, size, checkpoints = json.loads(args.rss_child)
        rss_child(n, size, checkpoints, rest[0])
        return
    results: dict[str, Any] = {
        "torch_threads": torch.get_num_threads(),
        "malloc": "keeps freed memory" if args.kept_memory else "as the system has it",
        "load_avg": os.getloadavg()[0],
    }
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for name in args.only.split(","):
            results[name] = {"passes": bench_passes, "rss": bench_rss, "ray": bench_ray}[name](args, tmp)
            print(name, json.dumps(results[name]), flush=True)
    results["load_avg_end"] = os.getloadavg()[0]
    print(
        json.dumps(results, indent=2, default=lambda v: None if isinstance(v, float) and math.isnan(v) else v)
    )


if __name__ == "__main__":
    main()
