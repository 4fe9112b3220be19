"""The conditions a timing was measured under, and the rule that says when a cached timing is stale.

Why. A pass, manipulation step or explainer call timed while other jobs loaded the machine is slower than
the same work on an idle one, sometimes many times so (oversubscribed threads wait on each other). Cached
forever, such a time priced every later plan: the default profile's plan said 1 h 10 min for a manipulation
stage that ran in 2 minutes. So each cached timing records the machine's state when it was measured, and
:class:`~robustxai.audit._timing.TimingCache` measures again when the state now differs (:func:`stale`):

- **load**: the 1-minute load average per core (``os.getloadavg()[0] / os.cpu_count()``, machine-wide like
  the load average itself) then and now differ by more than :data:`LOAD_TOLERANCE`. Not checked for a
  timing younger than :data:`FRESH_S`: the plan's own passes raise the load average that the audit's start,
  a minute later, reads, and the time was taken under the machine's load of a moment ago anyway. Only a
  grace period: when training runs longer than it, the run's settling of ``"auto"`` settings after
  training checks the load and may re-time what its plan timed. Not checked where the system has no load
  average (Windows);
- **threads**: torch's intra-op thread count differs (it is part of the cache key as well);
- **age**: the timing is older than :data:`MAX_AGE_S` (or dated in the future: a clock that moved);
- **unrecorded**: a file cached before conditions were recorded.

Each re-measurement is reported (:func:`summary`) so the plan's header says how many and why, e.g.
``3 re-measured: measured under load 4.10/core, now 0.30``.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch

from robustxai._errors import RobustXAIError

#: Re-measure when the load per core then and now differ by more than this.
LOAD_TOLERANCE = 0.5
#: Re-measure a timing older than this (seconds): 30 days.
MAX_AGE_S = 30 * 86400.0
#: A timing younger than this (seconds) is kept whatever the load now (see the module docstring).
FRESH_S = 600.0
#: A timing dated up to this far (seconds) in the future is not refused (clocks differ slightly).
CLOCK_SLACK_S = 60.0
#: The largest load per core and thread count a cached file may record (beyond: a damaged file).
MAX_LOAD = 1.0e6
MAX_THREADS = 2**16
#: The key of the conditions in a cached timing's JSON object.
FIELD = "conditions"


@dataclass(frozen=True)
class Conditions:
    """The machine's state when a timing was measured.

    Attributes:
        load: The 1-minute load average per core; ``None`` where the system has no load average.
        threads: torch's intra-op thread count.
        at: When (seconds since the epoch).
    """

    load: float | None
    threads: int
    at: float

    def __post_init__(self) -> None:
        """A cached file with a load, thread count or date out of range (or not a finite number) is refused.

        Bounded so that arithmetic on them cannot overflow: a JSON integer such as ``10**400`` is no float.
        """
        if self.load is not None and not _number(self.load, MAX_LOAD):
            raise RobustXAIError(
                f"a timing's load must be a finite number in [0, {MAX_LOAD:g}], got {self.load!r}"
            )
        threads = self.threads
        if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= MAX_THREADS:
            raise RobustXAIError(
                f"a timing's thread count must be an integer in [1, {MAX_THREADS}], got {threads!r}"
            )
        if not _number(self.at, math.inf):
            raise RobustXAIError(f"a timing's date must be a finite number ≥ 0, got {self.at!r}")

    @classmethod
    def now(cls) -> Conditions:
        """The conditions a measurement taken now runs under."""
        try:
            load: float | None = os.getloadavg()[0] / (os.cpu_count() or 1)
        except (AttributeError, OSError):  # no load average on this system
            load = None
        return cls(load, torch.get_num_threads(), time.time())

    @classmethod
    def read(cls, fields: object) -> Conditions:
        """The conditions stored in a cached file (a damaged one raises ``ValueError`` or ``TypeError``)."""
        if not isinstance(fields, Mapping):
            raise RobustXAIError(f"a timing's conditions must be an object, got {fields!r}")
        return cls(**fields)


def _number(v: object, limit: float) -> bool:
    """Whether ``v`` is a real number in [0, limit] that converts to a finite float (10**400 does not)."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return False
    try:
        f = float(v)
    except OverflowError:
        return False
    return math.isfinite(f) and 0 <= f <= limit


@dataclass(frozen=True)
class Stale:
    """Why a cached timing was measured again: ``kind`` and the values then and now."""

    kind: str  # "load" | "threads" | "age" | "unrecorded"
    then: float | None = None
    now: float | None = None


def stale(then: Conditions | None, now: Conditions) -> Stale | None:
    """Why a timing measured under ``then`` must be measured again under ``now``; ``None``: it still holds."""
    if then is None:
        return Stale("unrecorded")
    if then.threads != now.threads:
        return Stale("threads", then.threads, now.threads)
    age = now.at - then.at
    if age > MAX_AGE_S or age < -CLOCK_SLACK_S:
        return Stale("age", then.at, now.at)
    if age < FRESH_S or then.load is None or now.load is None:
        return None
    return Stale("load", then.load, now.load) if abs(then.load - now.load) > LOAD_TOLERANCE else None


def summary(found: Iterable[Stale]) -> str:
    """``"3 re-measured: measured under load 4.10/core, now 0.30"`` (empty when nothing was)."""
    found = list(found)
    if not found:
        return ""
    parts: list[str] = []
    loads = [s for s in found if s.kind == "load"]
    if loads:
        then = sorted(float(s.then or 0.0) for s in loads)
        span = f"{then[0]:.2f}" if then[0] == then[-1] else f"{then[0]:.2f}–{then[-1]:.2f}"
        parts.append(f"measured under load {span}/core, now {float(loads[-1].now or 0.0):.2f}")
    threads = [s for s in found if s.kind == "threads"]
    if threads:
        was = ", ".join(sorted({f"{int(s.then or 0)}" for s in threads}))
        parts.append(f"measured with {was} threads, now {int(threads[-1].now or 0)}")
    if any(s.kind == "age" for s in found):
        parts.append(f"measured over {MAX_AGE_S / 86400:.0f} days ago (or dated in the future)")
    if any(s.kind == "unrecorded" for s in found):
        parts.append("cached before the load was recorded")
    return f"{len(found)} re-measured: " + "; ".join(parts)
