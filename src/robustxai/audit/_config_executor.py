"""The ``[executor]`` table of an audit config: where units run (apart, so that ``_config`` stays short)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ExecutorConfig"]


class ExecutorConfig(BaseModel):
    """Where units of work run. A run may resume under other settings.

    Numbers follow the threads a unit computes on, in their last digits only (a sum split over threads adds
    in another order): worker processes (``processes ≥ 2``) and Ray's one-CPU tasks run each unit on one
    thread, so they give identical tables on any number of cores; in-process (``processes = 1``) a unit
    uses torch's threads. On a GPU, numbers may differ from the CPU's in the last digits too, so compare
    runs made on the same kind of device.
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["local", "ray"] = "local"
    address: str | None = Field(None, description="Ray cluster address (default: a new local Ray)")
    num_cpus: float = Field(1.0, gt=0, description="CPUs each Ray task reserves")
    num_gpus: float = Field(0.0, ge=0, description="GPUs each Ray task reserves")
    device: Literal["cpu", "cuda"] | None = Field(
        None,
        description="where units compute: unset = the CPU (local) or the GPU a Ray task was given "
        "(num_gpus > 0); 'cuda' = the GPU (local: refused when torch sees none; ray: needs num_gpus > 0); "
        "'cpu' = the CPU",
    )
    processes: Annotated[int, Field(strict=True, ge=1, le=256)] | Literal["auto"] = Field(
        1,
        description="local executor: 1 = every unit in this process on torch's threads; N = N units at "
        "once on worker processes of one thread each; 'auto' = one per core (at most 8); the CPU only",
    )
