"""Signals between the runner and the executors: a model that cannot be audited, plug-ins workers lack.

Its own module so that the executors (:mod:`robustxai.audit._executor`, :mod:`robustxai.audit._executor_pool`)
and the runner share it without importing each other.
"""

from __future__ import annotations


class ModelsFailedError(Exception):
    """Raised by a commit (on the driver) when a model cannot be audited, and by an executor that went on.

    The runner's commit raises it for the unit that failed. An executor may stop at once (the runner then
    runs the other models' remaining units again), or — the worker processes — run every other model's units
    first and raise it at the end with every model that failed meanwhile, so no worker is restarted.

    Attributes:
        failures: Model name → one-line reason.
    """

    def __init__(self, failures: dict[str, str]) -> None:
        super().__init__("; ".join(failures.values()))
        self.failures = dict(failures)


class PluginsMissingError(Exception):
    """Raised in a worker process whose registries lack a plug-in the driver has (it could not import it).

    The local executor then runs the units in its own process, with a warning naming them: results must not
    depend on the number of worker processes.
    """
