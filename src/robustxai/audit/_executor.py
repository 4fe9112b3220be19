"""Executors run the planned units and hand each result to the driver, which alone writes the store.

- ``local`` (default): runs units one after another in this process, in plan order, on torch's threads;
  with ``[executor] processes = N`` (N ≥ 2, or ``"auto"``: one per core) it runs N units at once on worker
  processes of one thread each (:mod:`robustxai.audit._executor_pool`). It reads the images of one shard
  at a time (:class:`robustxai.audit._plan.AuditData`), so peak memory does not grow with the data set.
- ``ray``: units become Ray tasks (see :mod:`robustxai.audit._executor_ray`); Ray is imported only then.

:func:`robustxai.audit._executors.create_executor` picks one by name (it lives apart from both, so neither
executor module imports the other back).

Both call ``commit(unit, result)`` on the driver as each unit finishes; the runner's commit persists the
unit's tensors and writes its rows and its ``units`` row in one transaction.

Device (``[executor] device``, see :func:`choose_device`): the local executor computes on the CPU unless the
config asks for ``"cuda"`` (refused with a clear error where torch sees no GPU); a Ray task computes on the
GPU Ray assigned it (``num_gpus > 0``), else on the CPU. Off the CPU, a unit's model and inputs are moved to
the device and its results back to the CPU (:func:`run_unit_on`); on the CPU nothing is moved, so CPU results
are what an in-process run on torch's threads gives (worker processes: what one thread gives, the same for
any number of workers). GPU numbers may differ from CPU numbers in the last digits.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch

from robustxai._errors import ConfigError
from robustxai.audit._config import AuditConfig
from robustxai.audit._failures import PluginsMissingError
from robustxai.audit._plan import UNIT_KINDS, AuditData, Unit, UnitResult, run_unit
from robustxai.models import ModelWrapper

log = logging.getLogger(__name__)

DEVICES = ("cpu", "cuda")
#: The most worker processes ``processes = "auto"`` starts (each holds torch and every model: ≈ 0.3 GB+).
AUTO_PROCESSES = 8

Commit = Callable[[Unit, UnitResult], None]


@dataclass
class ExecutionContext:
    """What units need: the config, the data, and the models (with a stable key per model)."""

    cfg: AuditConfig
    data: AuditData
    models: dict[str, ModelWrapper]
    model_keys: dict[str, str] = field(default_factory=dict)  # e.g. the model cache key
    unit_seconds: dict[str, float] = field(default_factory=dict)  # the plan's predictions, where known

    def prepare(self, unit: Unit) -> object:
        """Load a unit's inputs on the driver."""
        return UNIT_KINDS[unit.kind].prepare(unit, self.cfg, self.data)


class Executor(Protocol):
    """Runs units, each after its dependencies, and commits every result on the driver."""

    name: str

    def run(self, units: list[Unit], ctx: ExecutionContext, commit: Commit) -> None:
        """Run ``units`` (dependencies outside ``units`` count as finished)."""
        ...


def choose_device(requested: str | None, *, cuda_available: bool, gpus_assigned: bool = False) -> str:
    """Where units compute: ``"cpu"`` or ``"cuda"`` (a pure rule, so it is testable without a GPU).

    Args:
        requested: ``[executor] device``: ``"cpu"``, ``"cuda"``, or ``None`` (default: the GPU when one was
            assigned to the task and torch sees it, else the CPU).
        cuda_available: Whether torch sees a CUDA device where the units run (``torch.cuda.is_available()``).
        gpus_assigned: Whether the task was given a GPU (a Ray task with ``num_gpus > 0``; the local executor
            assigns none, so by default it computes on the CPU).

    Raises:
        ConfigError: For an unknown device, or ``"cuda"`` where torch sees no CUDA device.
    """
    if requested not in (None, *DEVICES):
        raise ConfigError(f"unknown executor device {requested!r}; known: {', '.join(DEVICES)}")
    if requested == "cuda" and not cuda_available:
        raise ConfigError(
            "executor.device = 'cuda' but torch sees no CUDA device (torch.cuda.is_available() is False); "
            "set device = 'cpu' or leave it unset"
        )
    if requested is not None:
        return requested
    return "cuda" if gpus_assigned and cuda_available else "cpu"


def usable_cores(cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """The CPU cores this process may use: its affinity, and a container's CPU quota (cgroup v2 or v1)."""
    affinity = getattr(os, "sched_getaffinity", None)
    cores = len(affinity(0)) if affinity is not None else os.cpu_count() or 1
    quota = _cgroup_cpus(cgroup)
    return max(1, min(cores, quota)) if quota is not None else cores


def _cgroup_cpus(root: Path) -> int | None:
    """CPUs a container's quota allows (``docker --cpus``, Kubernetes limits), rounded up; None: no quota."""
    try:
        if (root / "cpu.max").is_file():  # cgroup v2: "<quota> <period>" or "max <period>"
            quota, period = (root / "cpu.max").read_text().split()[:2]
        else:  # cgroup v1
            quota = (root / "cpu" / "cpu.cfs_quota_us").read_text().strip()
            period = (root / "cpu" / "cpu.cfs_period_us").read_text().strip()
        if quota in ("max", "-1") or int(period) <= 0:
            return None
        return max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        return None


def resolve_processes(processes: int | str, device: str = "cpu") -> int:
    """``[executor] processes`` as a count: ``"auto"`` is one per usable core, at most :data:`AUTO_PROCESSES`.

    On a GPU the units share one device, so they run in this process (1) whatever was asked.

    Raises:
        ConfigError: For anything but ``"auto"`` or a whole number ≥ 1.
    """
    if processes == "auto":
        count = min(usable_cores(), AUTO_PROCESSES)
    elif isinstance(processes, int) and not isinstance(processes, bool) and processes >= 1:
        count = processes
    else:
        raise ConfigError(f"executor.processes must be 'auto' or a whole number ≥ 1, got {processes!r}")
    return 1 if device != "cpu" else count


def to_device(value: object, device: str) -> object:
    """``value`` with every tensor inside it (dataclass fields, dicts, lists, tuples) moved to ``device``."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        moved = {
            f.name: to_device(getattr(value, f.name), device) for f in dataclasses.fields(value) if f.init
        }
        return dataclasses.replace(value, **moved)
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    if isinstance(value, list):
        return [to_device(v, device) for v in value]
    if isinstance(value, tuple) and not hasattr(value, "_fields"):  # a named tuple keeps its values
        return tuple(to_device(v, device) for v in value)
    return value


def run_unit_on(
    unit: Unit, model: ModelWrapper, cfg: AuditConfig, payload: object, device: str
) -> UnitResult:
    """Run a unit with ``model`` (already on ``device``): inputs go to the device and results come back.

    On the CPU nothing is moved: the unit runs exactly as :func:`robustxai.audit._plan.run_unit` runs it.
    """
    if device == "cpu":
        return run_unit(unit, model, cfg, payload)
    result = to_device(run_unit(unit, model, cfg, to_device(payload, device)), "cpu")
    assert isinstance(result, UnitResult)  # to_device rebuilds a dataclass as its own type
    return result


class LocalExecutor:
    """Runs units on this machine: in this process, in plan order, or on worker processes.

    Args:
        device: ``[executor] device`` (see :func:`choose_device`): ``None`` or ``"cpu"`` computes on the CPU;
            ``"cuda"`` moves each model to the GPU once and every unit's inputs with it.
        processes: ``[executor] processes`` (see :func:`resolve_processes`): 1 runs every unit in this
            process on torch's threads; N ≥ 2 runs N units at once on worker processes of one thread each
            (:mod:`robustxai.audit._executor_pool`; the CPU only).

    Raises:
        ConfigError: For ``device="cuda"`` where torch sees no CUDA device (before any work starts).
    """

    name = "local"
    device = "cpu"
    processes = 1
    lacks_plugins = False  # set once worker processes lacked a plug-in: the rest of the run stays here

    def __init__(self, device: str | None = None, processes: int | str = 1) -> None:
        self.device = choose_device(device, cuda_available=torch.cuda.is_available())
        self.processes = resolve_processes(processes, self.device)
        if self.processes > (cores := usable_cores()):
            log.warning(
                "executor.processes = %d is more than the %d usable cores: the workers share them (slower) "
                "and each holds torch and the models in memory; 'auto' starts one per core",
                self.processes,
                cores,
            )

    def workers_for(self, ctx: ExecutionContext) -> tuple[int, str]:
        """Worker processes for ``ctx``'s units (1: in this process) and, where fewer than asked, why."""
        if self.processes <= 1:
            return 1, ""
        from robustxai.audit._executor_pool import cannot_ship

        why = cannot_ship(ctx.models)
        return (1, why) if why else (self.processes, "")

    def run(self, units: list[Unit], ctx: ExecutionContext, commit: Commit) -> None:
        """Prepare, run and commit each unit in turn; an interrupt leaves the running unit uncommitted."""
        n, why = self.workers_for(ctx)
        if self.lacks_plugins:
            n, why = 1, ""
        if why:
            log.warning("the units run in this process, not on %d workers: %s", self.processes, why)
        if n > 1:
            from robustxai.audit._executor_pool import run_in_processes

            try:
                run_in_processes(units, ctx.cfg, ctx.data, ctx.models, commit, n, ctx.unit_seconds)
                return
            except PluginsMissingError as missing:  # no unit was committed: every one raised this first
                log.warning("the units run in this process: worker processes lack the plug-ins %s", missing)
                self.lacks_plugins = True  # a later call (after a failed model) does not start workers again
        for unit in units:
            model = ctx.models[unit.model]
            if self.device != "cpu":
                model = model.to(self.device)  # in place, so once per model
            commit(unit, run_unit_on(unit, model, ctx.cfg, ctx.prepare(unit), self.device))


def run_order(ex: Executor, units: list[Unit], ctx: ExecutionContext) -> list[Unit]:
    """The order ``ex`` starts ``units`` in, where it decides one (the progress display's ETAs follow it)."""
    if isinstance(ex, LocalExecutor) and ex.workers_for(ctx)[0] > 1:
        from robustxai.audit._schedule import start_order

        return start_order(units, ctx.unit_seconds)
    return units
