"""The local executor's worker processes: units on several CPU cores, each unit on one thread.

Why. On a CPU, PyTorch spreads one pass over every core (intra-op threads). At the default audit's sizes
(64-px images, batches of 16–64) two threads run a pass only ≈ 1.6–1.75× faster than one, so a 2-core
machine idles a fifth of its time. ``[executor] processes = N`` runs N units at once instead, in N worker
processes that each compute on one thread: the default audit took ≈ 0.8 of its in-process time
(BENCHMARKS.md).

Why one thread: a reduction split over threads adds in another order, so the last digits of a result
depend on the thread count. Each unit here runs on one thread whatever N is, so the tables are the same
for every ``processes ≥ 2`` on every machine with the same kind of CPU (and the same as the Ray executor's
one-CPU tasks); in-process (``processes = 1``) they follow torch's thread count.

How. Worker processes are *spawned* (a fork would copy the driver's thread pools mid-use) and each gets
the config and every model once, pickled through a pipe between robustxai's own processes — nothing read
from disk is unpickled. The driver alone prepares each unit's inputs, commits each result to the store and
decides the order: of the units whose dependencies are committed, the one predicted longest starts first
(the manipulation units, which take minutes, then the plan's order), so the last unit to finish is a short
one. Workers ignore Ctrl-C; the driver stops them on any interruption or error, and a worker that dies
(killed for memory, say) stops the run with a one-line error — the finished units stay saved.
"""

from __future__ import annotations

import heapq
import logging
import multiprocessing
import os
import signal
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

import torch

from robustxai._errors import RobustXAIError
from robustxai._runtime import keep_freed_memory
from robustxai.audit._config import AuditConfig
from robustxai.audit._kinds import UNIT_KINDS  # registers every unit kind (a spawned worker imports this)
from robustxai.audit._plan import AuditData, Unit, UnitResult, run_unit
from robustxai.models import ModelWrapper

log = logging.getLogger(__name__)

__all__ = ["makespan", "refuse_in_worker", "run_in_processes", "start_order"]

#: Thread counts of the libraries a worker loads (torch's OpenMP, numpy's BLAS): one, as Ray's one-CPU tasks.
ONE_THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
#: Set in the environment of worker processes while they start: :func:`refuse_in_worker` reads it.
WORKER_ENV = "ROBUSTXAI_AUDIT_WORKER"
#: Unit kinds that start before the others when ready, longest first (the plan's order breaks ties).
FIRST_KINDS = ("manipulation",)

_WORKER: dict[str, object] = {}  # in a worker process: "cfg" and "models", set once by _start_worker


def refuse_in_worker() -> None:
    """Refuse an audit started inside a starting worker process (the user's script re-run on its import).

    A spawned worker imports the main script of the driver, as Python's ``spawn`` does; a script that calls
    ``rx.run_audit`` outside ``if __name__ == "__main__":`` would start the whole audit again in every
    worker. This stops it at once, and the driver reports the dead worker in one line.

    Raises:
        RobustXAIError: In a worker process of this module.
    """
    if os.environ.get(WORKER_ENV) == "1":
        raise RobustXAIError(
            "an audit was started inside a robustxai worker process: the script that calls rx.run_audit runs "
            'again when a worker imports it; call it under if __name__ == "__main__": (or set [executor] '
            "processes = 1)"
        )


def _start_worker(cfg: AuditConfig, models: dict[str, ModelWrapper]) -> None:
    """A worker's set-up: one thread, no Ctrl-C (the driver decides), the malloc tuning, its models."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)
    keep_freed_memory()
    _WORKER["cfg"] = cfg
    _WORKER["models"] = models


def _run_in_worker(unit: Unit, payload: object) -> UnitResult:
    cfg = _WORKER["cfg"]
    models = _WORKER["models"]
    assert isinstance(cfg, AuditConfig) and isinstance(models, dict)
    return run_unit(unit, models[unit.model], cfg, payload)


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
    waiting_on: dict[str, list[str]] = {u.id: [] for u in units}
    for u in units:
        for d in u.deps:
            if d in waiting_on:
                waiting_on[d].append(u.id)
    path: dict[str, float] = {}

    def longest(uid: str) -> float:  # chains are short (attack → explanation), so recursion is fine
        if uid not in path:
            path[uid] = 0.0  # a cycle (never planned) cannot recurse for ever
            after = max((longest(v) for v in waiting_on[uid]), default=0.0)
            path[uid] = max(seconds.get(uid, 0.0), 0.0) + after
        return path[uid]

    return sorted(units, key=lambda u: -longest(u.id))


def makespan(units: Sequence[Unit], seconds: Mapping[str, float], processes: int) -> float:
    """Wall time of ``units`` on ``processes`` workers as :func:`run_in_processes` schedules them.

    Each time a worker is free, the first unit in :func:`start_order` whose dependencies have finished
    starts on it (a dependency outside ``units`` counts as finished); ``seconds`` is each unit's own time.
    """
    ids = {u.id for u in units}
    waiting = start_order(units, seconds)
    running: list[tuple[float, int, str]] = []  # (end, start order, id): a heap
    finished: set[str] = set()
    now, started = 0.0, 0
    while waiting or running:
        for unit in list(waiting):
            if len(running) >= processes:
                break
            if all(d in finished or d not in ids for d in unit.deps):
                heapq.heappush(running, (now + max(seconds.get(unit.id, 0.0), 0.0), started, unit.id))
                started += 1
                waiting.remove(unit)
        if not running:  # unmet dependencies: the executor refuses these; price the rest one after another
            return now + sum(seconds.get(u.id, 0.0) for u in waiting)
        now, _, done = heapq.heappop(running)
        finished.add(done)
    return now


def _stop(pool: ProcessPoolExecutor) -> None:
    """Stop every worker now (a running unit is abandoned, never committed) and release the pool."""
    for process in list(getattr(pool, "_processes", {}).values()):  # no public way before Python 3.14
        if process.is_alive():
            process.terminate()
    pool.shutdown(wait=True, cancel_futures=True)


def run_in_processes(
    units: list[Unit],
    cfg: AuditConfig,
    data: AuditData,
    models: dict[str, ModelWrapper],
    commit: Callable[[Unit, UnitResult], None],
    processes: int,
    seconds: Mapping[str, float] | None = None,
) -> None:
    """Run ``units`` on ``processes`` worker processes, each unit after its dependencies; commit each result.

    ``seconds``: the plan's predicted time of each unit, which orders them (:func:`start_order`).

    Raises:
        RobustXAIError: When a worker process dies (its unit and the running ones are not committed).
    """
    if not units:
        return
    needed = {u.model: models[u.model] for u in units}
    unfinished = {u.id for u in units}
    waiting = start_order(units, seconds)
    n = min(processes, len(units))
    saved = {k: os.environ.get(k) for k in (*ONE_THREAD_ENV, WORKER_ENV)}
    os.environ.update(dict.fromkeys((*ONE_THREAD_ENV, WORKER_ENV), "1"))  # read by the workers as they load
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(n, mp_context=context, initializer=_start_worker, initargs=(cfg, needed))
    running: dict[Future[UnitResult], Unit] = {}
    try:
        while waiting or running:
            for unit in list(waiting):
                if len(running) >= n + 1:  # one queued ahead: a free worker never waits for the driver
                    break
                if any(d in unfinished for d in unit.deps):
                    continue
                payload = UNIT_KINDS[unit.kind].prepare(unit, cfg, data)
                running[pool.submit(_run_in_worker, unit, payload)] = unit
                waiting.remove(unit)
            if not running:
                raise RobustXAIError(f"no unit can start: unmet dependencies of {waiting[0].id!r}")
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in sorted(done, key=lambda f: units.index(running[f])):  # a fixed order of commits
                unit = running.pop(future)
                try:
                    result = future.result()
                except BrokenProcessPool:
                    raise RobustXAIError(
                        f"a worker process died while running unit {unit.id!r}: killed for memory (use "
                        "fewer [executor] processes, or 1), or your script calls rx.run_audit outside "
                        'if __name__ == "__main__": (see above); the finished units are saved: run it '
                        "again to resume"
                    ) from None
                commit(unit, result)
                unfinished.discard(unit.id)
    except BaseException:
        _stop(pool)
        raise
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    pool.shutdown(wait=True)
