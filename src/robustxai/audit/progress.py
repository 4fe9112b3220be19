"""Progress reporting for long audit stages, decoupled from any terminal library.

The library reports through a :class:`Progress` object; the CLI passes one backed by ``rich`` progress bars,
and the default only logs, so library code never prints.
"""

from __future__ import annotations

import logging
from typing import Protocol

log = logging.getLogger("robustxai.audit")


class Progress(Protocol):
    """Receives the start, advance and end of each long-running task."""

    def start(self, description: str, total: int) -> int:
        """Announce a task of ``total`` steps and return its handle."""
        ...

    def advance(self, task: int, steps: int = 1) -> None:
        """Record ``steps`` finished steps of ``task``."""
        ...

    def finish(self, task: int) -> None:
        """Mark ``task`` as done."""
        ...


class LogProgress:
    """A :class:`Progress` that writes one log line per task start and end."""

    def __init__(self) -> None:
        self._names: dict[int, str] = {}

    def start(self, description: str, total: int) -> int:
        """Log the task's start."""
        task = len(self._names)
        self._names[task] = description
        log.info("%s (%d steps)", description, total)
        return task

    def advance(self, task: int, steps: int = 1) -> None:
        """Nothing to do between start and finish."""

    def finish(self, task: int) -> None:
        """Log the task's end."""
        log.info("%s: done", self._names.get(task, "task"))
