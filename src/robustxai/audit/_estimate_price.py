"""How the plan prices one piece of work: measured pass, step and call times → seconds and bytes.

Kept apart from :mod:`robustxai.audit._estimate` (the planner and the stage totals) so that each stays
readable; the estimate re-exports these names.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Protocol

import torch

from robustxai.audit._config import AuditConfig
from robustxai.audit._executor import resolve_processes
from robustxai.audit._passes import Work
from robustxai.audit._plan import Unit
from robustxai.audit._schedule import makespan
from robustxai.audit._timing import PassTime
from robustxai.audit._timing_explain import CallTime
from robustxai.audit._timing_manip import StepTime

__all__ = [
    "DRIVER_STAGES",
    "MAX_TIMED_BATCHES",
    "CallTimes",
    "StepTimes",
    "call_seconds",
    "local_processes",
    "nearest",
    "pick_batches",
    "step_seconds",
    "torch_threads",
    "units_wall",
    "wall_total",
    "work_bytes",
    "work_seconds",
]

MAX_TIMED_BATCHES = 3
#: Stages that run in the driver process whatever the executor.
DRIVER_STAGES = ("training", "report")
#: Local worker processes: seconds until the first can run a unit (spawn, torch import, the models).
POOL_START_S = 4.0
#: Measured manipulation steps by (model, work label) and batch size.
StepTimes = dict[tuple[str, str], dict[int, StepTime]]
#: Measured explainer calls (occlusion) by (model, explainer).
CallTimes = dict[tuple[str, str], CallTime]


def pick_batches(rows: list[int]) -> list[int]:
    """At most :data:`MAX_TIMED_BATCHES` batch sizes to time: the smallest, the largest, the most used."""
    if not rows:
        return []
    distinct = sorted(set(rows))
    if len(distinct) <= MAX_TIMED_BATCHES:
        return distinct
    common = max(distinct, key=rows.count)
    return sorted({distinct[0], distinct[-1], common})


def nearest(times: dict[int, PassTime], rows: int) -> PassTime:
    """The measurement at the batch size closest to ``rows`` (by ratio)."""
    return min(times.values(), key=lambda t: max(t.batch / rows, rows / t.batch))


def work_seconds(work: Work, times: dict[int, PassTime]) -> float:
    """Seconds of one piece of work: forward rows, backward rows and training rows at measured rates."""
    t = nearest(times, max(work.rows, 1))
    fwd, grad = t.per_row("forward"), t.per_row("gradient")
    return work.forward * fwd + work.backward * max(grad - fwd, 0.0) + work.train * t.per_row("train")


def step_seconds(work: Work, model: str, steps: StepTimes) -> float | None:
    """Seconds of a manipulation call from its measured steps (``None``: not one, or not measured)."""
    measured = steps.get((model, work.label))
    if not work.steps or not measured:
        return None
    t = min(measured.values(), key=lambda m: max(m.batch / work.rows, work.rows / m.batch))
    return t.seconds(work.steps, work.rows)


def call_seconds(work: Work, model: str, calls: CallTimes) -> float | None:
    """Seconds of an explainer call from its measured per-image time (``None``: priced by its passes)."""
    measured = calls.get((model, work.label))
    if not work.images or measured is None or not measured.applies:
        return None
    return measured.per_image * work.images


def work_bytes(work: Work, times: dict[int, PassTime]) -> int:
    """Peak bytes of one piece of work: parameters (×4 when training: gradients and Adam) + activations."""
    t = nearest(times, max(work.rows, 1))
    act = t.activation_bytes / t.batch * work.rows if (work.backward or work.train) else 0.0
    return int(t.param_bytes * (4 if work.train else 1) + act)


def local_processes(cfg: AuditConfig, device: str) -> int:
    """The local executor's worker processes for ``cfg`` (1 under Ray, whose tasks are priced apart)."""
    if cfg.executor.kind != "local":
        return 1
    return resolve_processes(cfg.executor.processes, device)


def units_wall(
    per_unit: Sequence[tuple[Unit, object]], unit_seconds: Mapping[str, float], processes: int
) -> float:
    """The units' wall time on ``processes`` worker processes (0 in the driver: the stages' sum is it)."""
    if processes <= 1 or not per_unit:
        return 0.0
    return POOL_START_S + makespan([u for u, _ in per_unit], unit_seconds, processes)


class _Stage(Protocol):
    name: str
    seconds: float


def wall_total(stages: Iterable[_Stage], units_wall: float, processes: int) -> float:
    """Predicted wall time: every stage in-process; with workers, the driver's stages and the units' wall."""
    return sum(s.seconds for s in stages if processes == 1 or s.name in DRIVER_STAGES) + units_wall


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Time passes on ``n`` torch threads (``None``: as they are), restoring the count afterwards."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
