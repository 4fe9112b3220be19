"""Progress reporting for long audit stages, decoupled from any terminal library.

The library reports through a :class:`Progress` object; the CLI passes one backed by ``rich`` progress bars on
a terminal and a :class:`LineProgress` (plain lines at a steady interval) when the output is piped, and the
default only logs, so library code never prints.

Every task measures how long its steps take (:class:`ProgressTracker`): a step's duration is the time since
the previous event of any task (the audit runs one thing at a time on the local executor), and a task's ETA
is its mean step duration times the steps left. Until one step has finished there is no estimate ("ETA —").
The audit's units get one task per model × stage (:class:`UnitStages`): ``attack`` (clean and attacked
accuracy), ``explain``, ``manipulate`` and ``sanity``; their ETA adds up the units still to run before the
stage's last one, each estimated from measured units of the same work (model, explainer, attack).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

log = logging.getLogger("robustxai.audit")

#: Seconds between two status lines of :class:`LineProgress` (the CLI's ``--progress-interval``).
DEFAULT_INTERVAL = 30.0
#: How each unit kind is named as a stage of progress.
STAGE_NAMES = {"robustness": "attack", "explanation": "explain", "manipulation": "manipulate"}
NO_ETA = "ETA —"


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


def format_seconds(seconds: float) -> str:
    """``H:MM:SS`` (whole seconds), the form of every elapsed time and ETA."""
    s = max(int(round(seconds)), 0)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


@dataclass
class TaskState:
    """One task's counts and measured step durations (seconds of the tracker's clock)."""

    description: str
    total: int
    started: float
    done: int = 0
    finished: float | None = None
    busy: float = 0.0
    measured: int = 0
    #: Replaces the task's own estimate (:class:`UnitStages` sets one that counts interleaved stages).
    eta_fn: Callable[[], float | None] | None = None

    def mean(self) -> float | None:
        """Measured seconds per step, or ``None`` before a step has finished."""
        return self.busy / self.measured if self.measured else None

    def eta(self) -> float | None:
        """Seconds left at the measured pace, or ``None`` before a step has finished."""
        if self.finished is not None:
            return 0.0
        if self.eta_fn is not None:
            return self.eta_fn()
        mean = self.mean()
        return None if mean is None else mean * max(self.total - self.done, 0)

    def eta_text(self) -> str:
        """``ETA 0:01:23``, or ``ETA —`` without an estimate."""
        eta = self.eta()
        return NO_ETA if eta is None else f"ETA {format_seconds(eta)}"


class ProgressTracker:
    """A :class:`Progress` that only keeps every task's state (thread-safe); the base of the reporters.

    Args:
        clock: Monotonic seconds (a test passes a fake clock).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.RLock()
        self.tasks: list[TaskState] = []
        self.t0 = clock()
        self._last_event = self.t0
        #: The estimate of the next task started (:class:`UnitStages` sets it, so a start line has an ETA).
        self.next_eta_fn: Callable[[], float | None] | None = None
        #: Predicted seconds per unit id (the plan's, :mod:`robustxai.audit._estimate`): set it before the
        #: audit runs and :class:`UnitStages` starts its ETAs from these (the CLI does).
        self.predicted: dict[str, float] = {}

    def start(self, description: str, total: int) -> int:
        """Add a task; its first step is measured from now."""
        with self._lock:
            now = self.clock()
            eta_fn, self.next_eta_fn = self.next_eta_fn, None
            self.tasks.append(TaskState(description, max(int(total), 0), started=now, eta_fn=eta_fn))
            self._last_event = now
            return len(self.tasks) - 1

    def advance(self, task: int, steps: int = 1) -> None:
        """Count ``steps`` finished steps, each as long as the time since the last event over ``steps``."""
        with self._lock:
            now = self.clock()
            state = self.tasks[task]
            state.done += steps
            state.busy += now - max(self._last_event, state.started)
            state.measured += steps
            self._last_event = now

    def finish(self, task: int) -> None:
        """Mark a task as done (an early stop, e.g. of training, finishes with fewer steps)."""
        with self._lock:
            now = self.clock()
            self.tasks[task].finished = now
            self._last_event = now

    def active(self) -> list[TaskState]:
        """Tasks started and not yet finished."""
        with self._lock:
            return [t for t in self.tasks if t.finished is None]

    def status(self, state: TaskState) -> str:
        """``<task>: done/total, elapsed H:MM:SS, ETA H:MM:SS`` as of now."""
        with self._lock:
            elapsed = format_seconds(self.clock() - state.started)
            return f"{state.description}: {state.done}/{state.total}, elapsed {elapsed}, {state.eta_text()}"


def predictions(progress: Progress) -> dict[str, float]:
    """The plan's predicted seconds per unit id that a progress display holds (the CLI gives them)."""
    return dict(progress.predicted) if isinstance(progress, ProgressTracker) else {}


class LineProgress(ProgressTracker):
    """Plain progress lines: a task's start and end, and every ``interval`` seconds each running task.

    Each line is ``[H:MM:SS since start] <task>: done/total, elapsed …, ETA …``. Used as a context manager,
    a background thread writes the status lines even while a long step runs; otherwise they are written when
    a step ends and ``interval`` has passed.

    Args:
        emit: Receives each line (default: the ``robustxai.audit`` logger at INFO).
        interval: Seconds between status lines.
        clock: Monotonic seconds.
    """

    def __init__(
        self,
        emit: Callable[[str], None] | None = None,
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(clock)
        self._emit = emit or log.info
        self.interval = float(interval)
        self._last_lines = self.t0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _line(self, text: str) -> None:
        with self._lock:
            self._emit(f"[{format_seconds(self.clock() - self.t0)}] {text}")

    def start(self, description: str, total: int) -> int:
        """Start a task and write its first line."""
        with self._lock:
            task = super().start(description, total)
            state = self.tasks[task]
            self._line(f"{description}: started, 0/{state.total}, {state.eta_text()}")
            return task

    def advance(self, task: int, steps: int = 1) -> None:
        """Count steps; write the status lines when ``interval`` has passed."""
        with self._lock:
            super().advance(task, steps)
            self.tick()

    def finish(self, task: int) -> None:
        """Finish a task and write its last line."""
        with self._lock:
            super().finish(task)
            s = self.tasks[task]
            took = format_seconds(self.clock() - s.started)
            self._line(f"{s.description}: done, {s.done}/{s.total} in {took}")

    def tick(self, force: bool = False) -> None:
        """Write one status line per running task (or that the audit is between stages) if one is due."""
        with self._lock:
            now = self.clock()
            if not force and now - self._last_lines < self.interval:
                return
            self._last_lines = now
            running = self.active()
            for state in running:
                self._line(self.status(state))
            if not running:
                self._line("working (between stages)")

    def _run(self) -> None:
        while not self._stop.wait(min(self.interval, 1.0)):
            self.tick()

    def __enter__(self) -> LineProgress:
        """Start the thread that writes status lines while a step runs."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="robustxai-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Stop the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None


class LogProgress(LineProgress):
    """A :class:`LineProgress` that writes to the ``robustxai.audit`` logger (the library's default)."""


class _UnitLike(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def model(self) -> str: ...


def stage_name(kind: str) -> str:
    """The stage a unit kind belongs to (``robustness`` → ``attack``, …)."""
    return STAGE_NAMES.get(kind, kind)


def _work(unit: _UnitLike) -> tuple[str, str, str]:
    """What a unit's cost depends on besides its model: kind, explainer and attack."""
    condition = getattr(unit, "condition", None)
    return unit.kind, str(getattr(unit, "explainer", None) or ""), str(condition[0]) if condition else ""


class UnitStages:
    """One progress task per model × stage of the units to run, started when its first unit is next.

    Units are expected in the order they run (the local executor runs them in plan order); a unit that
    finishes out of order (Ray) starts its stage then. Each finished unit's duration is measured (time since
    the previous one), and with a :class:`ProgressTracker` a stage's ETA is the time of every unit still to
    run up to the stage's last one, less what the running unit has already taken ("—" once it has run for
    more than twice its estimate). A unit is estimated by the units measured with the same model, kind,
    explainer and attack (LIME and APGD cost far more than saliency and FGSM), else by the plan's prediction
    (below), else the same work on another model, else its stage's mean, else its kind's mean; with no
    estimate the ETA is "—". Stages that
    interleave (the attack stages of all models, shard by shard) are so counted in each other's ETA.

    With ``predicted`` seconds per unit id (the plan's, :mod:`robustxai.audit._estimate`), a unit without a
    measured estimate is estimated from its prediction times the ratio of measured to predicted seconds of
    the units finished so far, so the ETA exists before the first unit finishes and corrects itself as
    units finish.

    Args:
        progress: Receives the tasks.
        units: The units to run, in plan order.
        clock: Monotonic seconds (default: the tracker's clock).
        predicted: Predicted seconds per unit id (default: the tracker's :attr:`ProgressTracker.predicted`).
    """

    def __init__(
        self,
        progress: Progress,
        units: Sequence[_UnitLike],
        clock: Callable[[], float] | None = None,
        predicted: Mapping[str, float] | None = None,
    ) -> None:
        if predicted is None and isinstance(progress, ProgressTracker):
            predicted = progress.predicted
        self._predicted = dict(predicted or {})
        self._ratio = [0.0, 0.0]  # measured and predicted seconds of the finished units that had a prediction
        self._progress = progress
        default = progress.clock if isinstance(progress, ProgressTracker) else time.monotonic
        self._clock = clock or default
        self._last = self._clock()
        self._units = list(units)
        self._key = {u.id: (stage_name(u.kind), u.model) for u in self._units}
        self._left = Counter(self._key.values())
        self._order = list(self._left)
        self._tasks: dict[tuple[str, str], int] = {}
        self._done: set[str] = set()
        self._seconds: dict[tuple[str, ...], list[float]] = {}  # look-up key → [total seconds, units]
        self._next = 0
        self._begin_next()

    def _lookups(self, unit: _UnitLike) -> list[tuple[str, ...]]:
        kind, explainer, attack = _work(unit)
        return [("unit", unit.model, kind, explainer, attack), ("work", kind, explainer, attack)] + [
            ("stage", *self._key[unit.id]),
            ("kind", kind),
        ]

    def _estimate(self, unit: _UnitLike) -> float | None:
        total = self._seconds.get(self._lookups(unit)[0])  # the same work measured on this model
        if total is not None:
            return total[0] / total[1]
        if unit.id in self._predicted:  # the plan's prediction, corrected by how the finished units went
            # (before the same work on another model: a ViT's Grad-CAM says little of a Swin's)
            measured, predicted = self._ratio
            return self._predicted[unit.id] * (measured / predicted if predicted > 0 else 1.0)
        for lookup in self._lookups(unit)[1:]:
            total = self._seconds.get(lookup)
            if total is not None:
                return total[0] / total[1]
        return None

    def _begin(self, key: tuple[str, str]) -> int:
        if key not in self._tasks:
            n = self._order.index(key) + 1
            label = f"{key[0]} {key[1]} (stage {n}/{len(self._order)})"
            if isinstance(self._progress, ProgressTracker):
                self._progress.next_eta_fn = lambda: self.eta(key)
            task = self._progress.start(label, self._left[key])
            self._tasks[key] = task
        return self._tasks[key]

    def eta(self, key: tuple[str, str]) -> float | None:
        """Seconds until the last unit of stage ``key`` (stage, model) finishes; ``None`` without estimate."""
        pending = [u for u in self._units[self._next :] if u.id not in self._done]
        keys = [self._key[u.id] for u in pending]
        if key not in keys:
            return 0.0
        running = self._clock() - self._last
        total = 0.0
        for i, unit in enumerate(pending[: len(keys) - keys[::-1].index(key)]):
            estimate = self._estimate(unit)
            if estimate is None or (i == 0 and running > 2 * estimate + 1):  # none, or proved wrong
                return None
            total += max(estimate - running, 0.0) if i == 0 else estimate
        return total

    def _begin_next(self) -> None:
        while self._next < len(self._units) and self._units[self._next].id in self._done:
            self._next += 1
        if self._next < len(self._units):
            self._begin(self._key[self._units[self._next].id])

    def done(self, unit: _UnitLike) -> None:
        """Count a finished unit; finish its stage after its last unit and start the next unit's stage."""
        now = self._clock()
        for lookup in self._lookups(unit):
            total = self._seconds.setdefault(lookup, [0.0, 0])
            total[0] += now - self._last
            total[1] += 1
        if self._predicted.get(unit.id, 0.0) > 0:
            self._ratio[0] += now - self._last
            self._ratio[1] += self._predicted[unit.id]
        self._last = now
        key = self._key[unit.id]
        task = self._begin(key)
        self._done.add(unit.id)
        self._progress.advance(task)
        self._left[key] -= 1
        if self._left[key] == 0:
            self._progress.finish(task)
        self._begin_next()
