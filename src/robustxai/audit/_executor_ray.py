"""The Ray executor: units as Ray tasks, results back to the driver, which alone writes the store.

Ray is an optional extra (``pip install robustxai[ray]``) and is imported only when this executor runs. The
driver loads each unit's inputs (so workers need no access to the data), puts every model into the object
store once, and passes it to tasks inside a list, so Ray does not fetch it for every task: each worker
process fetches a model the first time it runs a unit of that model and keeps it for later units (keyed by
the model's cache key, so a later audit with a retrained model never reuses a stale one).

Units are submitted as soon as their dependencies are committed, with at most ``max_in_flight`` tasks
pending, so the driver holds the inputs of a bounded number of shards. An interrupt cancels the pending tasks.

Devices: each task reserves ``num_cpus`` CPUs and ``num_gpus`` GPUs. A task that Ray gave a GPU computes on
it (``cuda``): the worker moves its cached model there once and each unit's inputs with it, and sends results
back on the CPU; a task without a GPU computes on the CPU. ``device="cpu"`` keeps every task on the CPU, and
``device="cuda"`` needs ``num_gpus > 0`` (Ray gives a task a GPU only when it reserves one). See
:func:`robustxai.audit._executor.choose_device`.
"""

from __future__ import annotations

import logging
from types import ModuleType
from typing import TYPE_CHECKING

from robustxai._errors import ConfigError, RobustXAIError
from robustxai._runtime import keep_freed_memory
from robustxai.audit._config import AuditConfig
from robustxai.audit._executor import Commit, ExecutionContext, choose_device, run_unit_on
from robustxai.audit._kinds import UNIT_KINDS  # noqa: F401  (workers must know every unit kind)
from robustxai.audit._plan import Unit, UnitResult
from robustxai.models import ModelWrapper

if TYPE_CHECKING:
    from ray import ObjectRef

log = logging.getLogger(__name__)

_WORKER_MODELS: dict[tuple[str, str], ModelWrapper] = {}  # per worker process: (model key, device) → model


def _import_ray() -> ModuleType:
    try:
        import ray
    except ImportError:
        raise RobustXAIError(
            "the ray executor needs Ray: pip install 'robustxai[ray]' (or use --executor local)"
        ) from None
    return ray


def worker_device(requested: str | None) -> str:
    """The device of the running Ray task: its GPU if Ray gave it one (and torch sees it), else the CPU."""
    import ray
    import torch

    gpus = bool(ray.get_gpu_ids())
    device = choose_device(requested, cuda_available=torch.cuda.is_available(), gpus_assigned=gpus)
    if gpus and device == "cpu" and requested is None:
        log.warning("Ray assigned this task a GPU but torch sees no CUDA device: computing on the CPU")
    return device


def _worker_run(
    unit: Unit,
    model_key: str,
    model_box: list[ObjectRef[ModelWrapper]],
    cfg: AuditConfig,
    payload: object,
    requested: str | None,
) -> UnitResult:
    """Run one unit in a Ray worker, fetching its model once per worker process and device."""
    keep_freed_memory()  # as the CLI's own process does (robustxai._runtime); once per worker
    device = worker_device(requested)
    model = _WORKER_MODELS.get((model_key, device))
    if model is None:
        import ray

        model = ray.get(model_box[0]).eval()
        if device != "cpu":
            model = model.to(device)
        _WORKER_MODELS[(model_key, device)] = model
    return run_unit_on(unit, model, cfg, payload, device)


class RayExecutor:
    """Runs units as Ray tasks.

    Args:
        address: Cluster address; default: the Ray already initialised in this process, else a new local Ray.
        num_cpus: CPUs each task reserves.
        num_gpus: GPUs each task reserves; a task given a GPU computes on it (unless ``device="cpu"``).
        max_in_flight: Tasks pending at once (default: twice the cluster's task slots).
        device: ``[executor] device``: ``None`` (default: the task's GPU if it has one, else the CPU),
            ``"cpu"``, or ``"cuda"`` (needs ``num_gpus > 0``).

    Raises:
        ConfigError: For ``device="cuda"`` without ``num_gpus > 0``.
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        num_cpus: float = 1.0,
        num_gpus: float = 0.0,
        max_in_flight: int | None = None,
        device: str | None = None,
    ) -> None:
        if device == "cuda" and num_gpus <= 0:
            raise ConfigError(
                "executor.device = 'cuda' with the ray executor needs num_gpus > 0: Ray gives a task a GPU "
                "only when it reserves one"
            )
        choose_device(device, cuda_available=True)  # an unknown name fails here, on the driver
        self.address = address
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.max_in_flight = max_in_flight
        self.device = device

    def run(self, units: list[Unit], ctx: ExecutionContext, commit: Commit) -> None:
        """Submit ready units, commit results as they arrive, until every unit is committed."""
        ray = _import_ray()
        started = not ray.is_initialized()
        if started:
            ray.init(address=self.address, include_dashboard=False, logging_level=logging.WARNING)
        try:
            self._run(ray, units, ctx, commit)
        finally:
            if started:
                ray.shutdown()

    def _slots(self, ray: ModuleType) -> int:
        cpus = float(ray.cluster_resources().get("CPU", 1.0))
        return max(1, int(cpus // self.num_cpus)) if self.num_cpus > 0 else 1

    def _run(self, ray: ModuleType, units: list[Unit], ctx: ExecutionContext, commit: Commit) -> None:
        gpus = float(ray.cluster_resources().get("GPU", 0.0))
        if self.num_gpus > gpus:  # Ray would wait for ever for a GPU that no node has
            raise ConfigError(
                f"executor.num_gpus = {self.num_gpus:g} but the Ray cluster has {gpus:g} GPU(s): no task "
                "could start; set num_gpus = 0 or join a node with GPUs"
            )
        task = ray.remote(_worker_run).options(num_cpus=self.num_cpus, num_gpus=self.num_gpus, max_retries=0)
        cap = self.max_in_flight or 2 * self._slots(ray)
        needed = {u.model for u in units}
        boxes = {name: [ray.put(ctx.models[name].cpu())] for name in needed}  # one copy per model
        cfg_ref = ray.put(ctx.cfg)
        unfinished = {u.id for u in units}
        waiting = list(units)
        in_flight: dict[ObjectRef[UnitResult], Unit] = {}
        try:
            while waiting or in_flight:
                for unit in list(waiting):
                    if len(in_flight) >= cap:
                        break
                    if any(d in unfinished for d in unit.deps):
                        continue
                    key = ctx.model_keys.get(unit.model, f"{unit.model}:{id(ctx.models[unit.model])}")
                    ref = task.remote(unit, key, boxes[unit.model], cfg_ref, ctx.prepare(unit), self.device)
                    in_flight[ref] = unit
                    waiting.remove(unit)
                if not in_flight:
                    raise RobustXAIError(f"no unit can start: unmet dependencies of {waiting[0].id!r}")
                ready, _ = ray.wait(list(in_flight), num_returns=1)
                for ref in ready:
                    unit = in_flight.pop(ref)
                    commit(unit, ray.get(ref))
                    unfinished.discard(unit.id)
        except BaseException:
            for ref in in_flight:
                ray.cancel(ref, force=True)
            raise
