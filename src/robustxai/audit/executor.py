"""Executors run the planned units and hand each result to the driver, which alone writes the store.

- ``local`` (default): runs units one after another in this process, in plan order. It reads the images of
  one shard at a time (:class:`robustxai.audit.plan.AuditData`), so peak memory does not grow with the data
  set.
- ``ray``: units become Ray tasks (see :mod:`robustxai.audit.executor_ray`); Ray is imported only then.

Both call ``commit(unit, result)`` on the driver as each unit finishes; the runner's commit persists the
unit's tensors and writes its rows and its ``units`` row in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from robustxai.audit.config import AuditConfig
from robustxai.audit.plan import UNIT_KINDS, AuditData, Unit, UnitResult, run_unit
from robustxai.errors import ConfigError
from robustxai.models import ModelWrapper

EXECUTORS = ("local", "ray")

Commit = Callable[[Unit, UnitResult], None]


@dataclass
class ExecutionContext:
    """What units need: the config, the data, and the models (with a stable key per model)."""

    cfg: AuditConfig
    data: AuditData
    models: dict[str, ModelWrapper]
    model_keys: dict[str, str] = field(default_factory=dict)  # e.g. the model cache key

    def prepare(self, unit: Unit) -> Any:
        """Load a unit's inputs on the driver."""
        return UNIT_KINDS[unit.kind].prepare(unit, self.cfg, self.data)


class Executor(Protocol):
    """Runs units, each after its dependencies, and commits every result on the driver."""

    name: str

    def run(self, units: list[Unit], ctx: ExecutionContext, commit: Commit) -> None:
        """Run ``units`` (dependencies outside ``units`` count as finished)."""
        ...


class LocalExecutor:
    """Runs units in this process, in plan order (which puts each unit after its dependencies)."""

    name = "local"

    def run(self, units: list[Unit], ctx: ExecutionContext, commit: Commit) -> None:
        """Prepare, run and commit each unit in turn; an interrupt leaves the running unit uncommitted."""
        for unit in units:
            result = run_unit(unit, ctx.models[unit.model], ctx.cfg, ctx.prepare(unit))
            commit(unit, result)


def create_executor(
    kind: str = "local", address: str | None = None, num_cpus: float = 1.0, num_gpus: float = 0.0
) -> Executor:
    """The executor called ``kind``.

    Args:
        kind: ``"local"`` or ``"ray"``.
        address: Ray cluster address (``ray`` only; default: the running Ray, else a new local one).
        num_cpus: CPUs each Ray task reserves.
        num_gpus: GPUs each Ray task reserves.

    Raises:
        ConfigError: For an unknown kind, or options that the kind does not take.
    """
    if kind == "local":
        if address is not None:
            raise ConfigError("--address is only used with --executor ray")
        return LocalExecutor()
    if kind == "ray":
        from robustxai.audit.executor_ray import RayExecutor

        return RayExecutor(address=address, num_cpus=num_cpus, num_gpus=num_gpus)
    raise ConfigError(f"unknown executor {kind!r}; known executors: {', '.join(EXECUTORS)}")
