"""The cost plan as text: what ``robustxai plan`` prints and ``robustxai audit`` prints first."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import torch

from robustxai.audit._progress import format_seconds
from robustxai.audit._timing_conditions import Conditions

if TYPE_CHECKING:
    from robustxai.audit._estimate import AuditEstimate, StagePlan


def _mb(n: float) -> str:
    return f"{n / 2**20:,.0f} MB" if n >= 2**20 else f"{n / 2**10:,.0f} kB"


def _count(n: int) -> str:
    return f"{n:,}"


def _passes(fwd: int, bwd: int, train: int) -> str:
    parts = []
    if train:
        parts.append(f"{_count(train)} train")
    if bwd:
        parts.append(f"{_count(bwd)} fwd+bwd")
    if fwd - bwd > 0:
        parts.append(f"{_count(fwd - bwd)} fwd")
    return ", ".join(parts) or "none"


def _stage_line(s: StagePlan) -> str:
    head = f"  {s.name:<11}{format_seconds(s.seconds):>9}"
    if s.name == "report":
        return f"{head}   ({s.note})"
    mem = f", peak ≈ {_mb(s.peak_bytes)}" if s.peak_bytes else ""
    return f"{head}   {_passes(s.forward, s.backward, s.train)} image passes{mem}"


def _held_now() -> str:
    """What this process has taken at most so far (torch, the models, the data, the timing passes)."""
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    except (ImportError, OSError):  # no resource module (Windows)
        return ""
    return f"; this process alone has peaked at {_mb(peak)} so far (torch, the models, the data)"


def _total_note(est: AuditEstimate) -> str:
    tensors = f"peak tensor memory ≈ {_mb(est.peak_bytes)} (parameters and a pass's activations)"
    if est.processes <= 1:
        return tensors + _held_now()
    return (
        f"wall time of {est.processes} units at once on worker processes of one thread each (training and "
        f"the report in this one); {tensors} per worker, each of which also holds torch and the models"
        + _held_now()
    )


def plan_lines(est: AuditEstimate) -> list[str]:
    """Header, measured pass times per model, one line per stage (and per method), total, GPU and Ray."""
    threads = torch.get_num_threads()
    load = Conditions.now().load
    one = f"{threads} thread" + ("s" if threads != 1 else "")
    on = one if est.processes <= 1 else f"one thread, as each of {est.processes} workers"
    here = f"{est.device}, {on}" + ("" if load is None else f", load {load:.2f}/core")
    again = f" ({est.remeasured})" if est.remeasured else ""
    lines = [
        f"plan of audit {est.cfg.name!r}: passes × per-pass times measured here "
        f"({here}; {est.measured} new measurements{again}, the rest cached)"
    ]
    for name, times in est.models.items():
        cells = []
        for b, t in sorted(times.items()):
            fwd, grad = 1000 * t.per_row("forward"), 1000 * t.per_row("gradient")
            cells.append(f"batch {b}: fwd {fwd:.2f} ms, fwd+bwd {grad:.2f} ms/image")
        param = next(iter(times.values())).param_bytes if times else 0
        lines.append(f"  model {name} ({_mb(param)} parameters): " + "; ".join(cells))
    for name, times in est.training_models.items():
        steps = [f"batch {b}: {1000 * t.per_row('train'):.2f} ms/image" for b, t in sorted(times.items())]
        lines.append(f"  model {name}, a training step (float32): " + "; ".join(steps))
    lines += [f"  {line}" for line in est.settled]
    if est.to_train:
        lines.append(f"  to train now (not cached; epochs are an upper bound): {', '.join(est.to_train)}")
    else:
        lines.append("  every trained model is cached: training costs nothing")
    lines += [f"  cannot run, so not planned: {line}" for line in est.skipped]
    if est.processes > 1:
        lines.append("stages (one thread's time, image passes, peak memory of one process):")
    else:
        lines.append("stages (predicted wall time, image passes, peak memory):")
    for s in est.stages:
        lines.append(_stage_line(s))
        for label, (fwd, bwd, train) in s.by_method.items():
            priced = s.priced.get(label)
            if len(s.by_method) > 1 or priced:
                note = f" (the full computation's passes; priced by {priced}, not by these)" if priced else ""
                lines.append(f"      {label}: {_passes(fwd, bwd, train)}{note}")
    lines.append(f"  {'total':<11}{format_seconds(est.seconds):>9}   {_total_note(est)}")
    gpu = (
        "measured on this machine's GPU"
        if est.gpu_measured
        else f"assuming a GPU pass is {est.gpu_speedup:g}× faster than here: an assumption, not measured"
    )
    lines.append(f"on a GPU: ≈ {format_seconds(est.gpu_seconds)} ({gpu})")
    lines.append(
        f"on a {est.workers}-worker Ray cluster of machines like this: ≈ {format_seconds(est.ray_seconds())} "
        "(training stays on the driver)"
    )
    for cut in est.trimmed:
        lines.append(f"trimmed to fit --max-minutes: {cut}")
    return lines
