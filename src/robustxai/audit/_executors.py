"""The executors by name: :func:`create_executor` (``local`` or ``ray``) for the runner and the CLI.

It lives apart from :mod:`robustxai.audit._executor` (the protocol, the context and the local executor) and
:mod:`robustxai.audit._executor_ray`, which builds on it, so the two executor modules never import each other
in a circle; Ray is imported only when the ``ray`` executor is created.
"""

from __future__ import annotations

import logging

from robustxai._errors import ConfigError
from robustxai.audit._executor import Executor, LocalExecutor

log = logging.getLogger(__name__)

__all__ = ["EXECUTORS", "create_executor"]

EXECUTORS = ("local", "ray")


def create_executor(
    kind: str = "local",
    address: str | None = None,
    num_cpus: float = 1.0,
    num_gpus: float = 0.0,
    device: str | None = None,
    processes: int | str = 1,
) -> Executor:
    """The executor called ``kind``.

    Args:
        kind: ``"local"`` or ``"ray"``.
        address: Ray cluster address (``ray`` only; default: the running Ray, else a new local one).
        num_cpus: CPUs each Ray task reserves.
        num_gpus: GPUs each Ray task reserves (a task with a GPU computes on it unless ``device="cpu"``).
        device: Where units compute (see :func:`choose_device`).
        processes: The local executor's worker processes
            (:func:`robustxai.audit._executor.resolve_processes`); Ray has its own.

    Raises:
        ConfigError: For an unknown kind, options that the kind does not take, or a device it cannot use.
    """
    if kind == "local":
        if address is not None:
            raise ConfigError("--address is only used with --executor ray")
        return LocalExecutor(device, processes)
    if kind == "ray":
        from robustxai.audit._executor_ray import RayExecutor

        if processes not in (1, "auto"):
            log.warning(
                "executor.processes = %s is ignored: Ray runs each unit as a task of its own", processes
            )

        return RayExecutor(address=address, num_cpus=num_cpus, num_gpus=num_gpus, device=device)
    raise ConfigError(f"unknown executor {kind!r}; known executors: {', '.join(EXECUTORS)}")
