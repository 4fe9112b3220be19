"""The signal from the runner's commit to an executor that a model cannot be audited.

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
