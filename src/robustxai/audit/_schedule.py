"""Which unit starts next on a free worker: the order, the ready queue, and the wall time it gives.

The local executor's worker processes (:mod:`robustxai.audit._executor_pool`) and the plan
(:func:`makespan`) use the same :class:`ReadyQueue`, so the plan prices the schedule that runs.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence

from robustxai.audit._plan import Unit

__all__ = ["FIRST_KINDS", "ReadyQueue", "dependents", "makespan", "start_order"]

#: Unit kinds that start before the others when no prediction orders them (the manipulation takes minutes).
FIRST_KINDS = ("manipulation",)


def dependents(units: Sequence[Unit]) -> dict[str, list[str]]:
    """Per unit id: the ids of the units among ``units`` that wait for it (outside dependencies ignored)."""
    waiting_on: dict[str, list[str]] = {u.id: [] for u in units}
    for u in units:
        for d in set(u.deps):
            if d in waiting_on:
                waiting_on[d].append(u.id)
    return waiting_on


def start_order(units: Sequence[Unit], seconds: Mapping[str, float] | None = None) -> list[Unit]:
    """``units`` in the order they should start when ready.

    With predicted ``seconds`` per unit (the plan's): the longest path to the end first — a unit's own time
    plus that of the longest chain of units that wait for it (an attack unit counts the explanations of its
    images) — so the work that holds others up starts early and the run ends on short units. Without them:
    :data:`FIRST_KINDS` first. The plan's order breaks ties (a stable sort).
    """
    if not seconds:
        rank = {kind: i for i, kind in enumerate(FIRST_KINDS)}
        return sorted(units, key=lambda u: rank.get(u.kind, len(rank)))
    waiting_on = dependents(units)
    path: dict[str, float] = {}

    def longest(uid: str) -> float:  # chains are short (attack → explanation), so recursion is fine
        if uid not in path:
            path[uid] = 0.0  # a cycle (never planned) cannot recurse for ever
            after = max((longest(v) for v in waiting_on[uid]), default=0.0)
            path[uid] = max(seconds.get(uid, 0.0), 0.0) + after
        return path[uid]

    return sorted(units, key=lambda u: -longest(u.id))


class ReadyQueue:
    """The units whose dependencies have finished, first in :func:`start_order` first.

    A dependency outside ``units`` counts as finished. ``O(log n)`` per unit, so the plan can simulate
    thousands of units many times over (``--max-minutes`` trimming).
    """

    def __init__(self, units: Sequence[Unit], seconds: Mapping[str, float] | None = None) -> None:
        order = start_order(units, seconds)
        self._rank = {u.id: i for i, u in enumerate(order)}
        self._unit = {u.id: u for u in order}
        self._blocked = {u.id: sum(d in self._rank for d in set(u.deps)) for u in order}
        self._waiting = dependents(order)
        self._heap = [(self._rank[uid], uid) for uid, n in self._blocked.items() if n == 0]
        heapq.heapify(self._heap)
        self._out: set[str] = set()  # handed out
        self._dropped: set[str] = set()
        self.left = len(order)  # units not yet handed out (nor dropped)

    def pop(self) -> Unit | None:
        """The next unit to start, or ``None`` while every unit left waits for a running one."""
        if not self._heap:
            return None
        _, uid = heapq.heappop(self._heap)
        self.left -= 1
        self._out.add(uid)
        return self._unit[uid]

    def finished(self, uid: str) -> None:
        """Count ``uid`` as finished: the units that waited only for it become ready."""
        for v in self._waiting.get(uid, ()):
            self._blocked[v] -= 1
            if self._blocked[v] == 0 and v not in self._dropped:
                heapq.heappush(self._heap, (self._rank[v], v))

    def drop(self, model: str) -> None:
        """Never hand out ``model``'s units, nor those that wait for one of them (a failed model's)."""
        stack = [uid for uid, u in self._unit.items() if u.model == model]
        while stack:
            uid = stack.pop()
            if uid not in self._dropped:
                self._dropped.add(uid)
                self.left -= uid not in self._out
                stack.extend(self._waiting.get(uid, ()))
        self._heap = [item for item in self._heap if item[1] not in self._dropped]
        heapq.heapify(self._heap)

    def blocked(self) -> list[str]:
        """Ids of the units still waiting for a dependency (with nothing running: they never can start)."""
        return [uid for uid, n in self._blocked.items() if n > 0 and uid not in self._dropped]


def makespan(units: Sequence[Unit], seconds: Mapping[str, float], processes: int) -> float:
    """Wall time of ``units`` on ``processes`` workers as the executor schedules them.

    Each time a worker is free, the next unit of :class:`ReadyQueue` starts on it; ``seconds`` is each unit's
    own time. Units that can never start (a circular dependency, never planned) are added one after another.
    """
    ready = ReadyQueue(units, seconds)
    running: list[tuple[float, int, str]] = []  # (end, start count, id): a heap
    now, started = 0.0, 0
    while ready.left or running:
        while len(running) < processes:
            unit = ready.pop()
            if unit is None:
                break
            heapq.heappush(running, (now + max(seconds.get(unit.id, 0.0), 0.0), started, unit.id))
            started += 1
        if not running:
            return now + sum(max(seconds.get(uid, 0.0), 0.0) for uid in ready.blocked())
        now, _, done = heapq.heappop(running)
        ready.finished(done)
    return now
