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
from disk is unpickled; a worker imports the modules of the user's plug-ins, and what only ``__main__``
defines keeps the units in the driver (:func:`cannot_ship`). The driver alone prepares each unit's inputs,
commits each result to the store and decides the order (:class:`~robustxai.audit._schedule.ReadyQueue`:
of the units whose dependencies are committed, the one at the head of the longest predicted chain starts
first), so the last unit to finish is a short one. Workers ignore Ctrl-C and end with the driver; the
driver stops them on any interruption or error, and a worker that dies (killed for memory, say) stops the
run with a one-line error — the finished units stay saved.
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager, nullcontext, suppress
from typing import Any

import torch
from torch import nn

from robustxai._errors import RobustXAIError, first_line
from robustxai._registry import Registry
from robustxai._runtime import keep_freed_memory
from robustxai.attacks._base import ATTACKS
from robustxai.audit._config import AuditConfig
from robustxai.audit._failures import ModelsFailedError, PluginsMissingError
from robustxai.audit._kinds import UNIT_KINDS  # registers every unit kind (a spawned worker imports this)
from robustxai.audit._plan import AuditData, Unit, UnitResult, run_unit
from robustxai.audit._schedule import ReadyQueue
from robustxai.explain._base import EXPLAINERS
from robustxai.manipulate._attack import MANIPULATIONS
from robustxai.metrics._registry import METRICS
from robustxai.models import ModelWrapper

log = logging.getLogger(__name__)

__all__ = ["cannot_ship", "refuse_in_worker", "run_in_processes"]

#: Thread counts of the libraries a worker loads (torch's OpenMP, numpy's BLAS): one, as Ray's one-CPU tasks.
ONE_THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
#: Set in the environment of worker processes while they start: :func:`refuse_in_worker` reads it.
WORKER_ENV = "ROBUSTXAI_AUDIT_WORKER"
#: The plug-in registries a unit looks names up in, inside the worker.
_REGISTRIES: dict[str, Registry[Any]] = {
    "attack": ATTACKS,
    "explainer": EXPLAINERS,
    "manipulation": MANIPULATIONS,
    "metric": METRICS,
}

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


def _origin(kind: str, name: str) -> str:
    """The module that defines plug-in ``name`` (a metric: its function's, not the registry's wrapper)."""
    factory = _REGISTRIES[kind].get(name)
    if kind == "metric":
        return str(getattr(getattr(factory(), "fn", None), "__module__", "__main__"))
    return str(getattr(factory, "__module__", "__main__"))


def plugin_modules() -> dict[str, str]:
    """``"kind name"`` → defining module of every registered plug-in that robustxai itself does not define."""
    out: dict[str, str] = {}
    for kind, registry in _REGISTRIES.items():
        for name in registry.names():
            module = _origin(kind, name)
            if module != "robustxai" and not module.startswith("robustxai."):
                out[f"{kind} {name!r}"] = module
    return out


def cannot_ship(models: Mapping[str, nn.Module]) -> str:
    """Why worker processes cannot run these units (``""``: they can): what only this process defines.

    A worker imports robustxai and the modules of the user's plug-ins and model classes, but not what was
    defined in ``__main__`` (a notebook, or a script under its ``__main__`` guard): such a metric would be
    missing from the worker's tables and such a model could not be unpickled there.
    """
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    if isinstance(main_file, str) and not os.path.isfile(main_file):  # python - < script.py
        return f"the main script ({main_file}) is no file, which worker processes cannot re-import"
    here = sorted(what for what, module in plugin_modules().items() if module == "__main__")
    for name, model in models.items():
        if any(type(m).__module__ == "__main__" for m in model.modules()):
            here.append(f"model {name!r}")
    return ", ".join(here) and f"{', '.join(here)} defined in __main__, which worker processes cannot import"


def _start_worker(
    cfg: AuditConfig,
    models: dict[str, ModelWrapper],
    modules: list[str],
    level: int,
    names: dict[str, list[str]],
) -> None:
    """A worker's set-up: one thread, no Ctrl-C (the driver decides), the plug-ins, its models, a watchdog.

    ``names``: every name in the driver's registries. One missing here after the plug-ins' modules were
    imported (a plug-in registered under a new name for a function defined elsewhere, a module this process
    cannot import) makes every unit raise :class:`PluginsMissingError`, so the driver runs them itself.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)
    keep_freed_memory()
    logging.basicConfig(level=level, format="%(levelname)s: %(message)s")
    missing = []
    for module in modules:  # registers the user's plug-ins here as in the driver
        try:
            importlib.import_module(module)
        except Exception as err:  # noqa: BLE001 - any import failure: the units run in the driver instead
            missing.append(f"module {module} ({type(err).__name__}: {first_line(err)})")
    for kind, registered in names.items():
        here = set(_REGISTRIES[kind].names())
        missing += [f"{kind} {name!r}" for name in registered if name not in here]
    _WORKER["missing"] = ", ".join(missing)
    parent = multiprocessing.parent_process()
    if parent is not None:  # the driver killed outright (SIGKILL, the memory killer): end with it
        threading.Thread(target=_end_with, args=(parent.sentinel,), daemon=True).start()
    _WORKER["cfg"] = cfg
    _WORKER["models"] = models


@contextmanager
def _children_ignore_ctrl_c() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) back while this thread spawns workers; deliver it here afterwards.

    A spawned worker inherits the signal mask of the thread that starts it, so with SIGINT blocked here (as
    CPython does when it starts its resource tracker) a Ctrl-C during the worker's first second — before
    :func:`_start_worker` ignores SIGINT, while it still imports torch — stays pending there instead of
    printing a worker's traceback under the driver's one-line message. In the main thread the Python
    handler is swapped for one that only records the Ctrl-C (another thread may take the signal and have
    the main thread run the handler mid-spawn, leaving a half-started worker); it is raised again once the
    spawn is over, so it is never lost.
    """
    if not hasattr(signal, "pthread_sigmask"):  # Windows: no signal masks
        yield
        return
    pressed: list[int] = []
    # the main thread, where a Python handler is installed (None: an embedding host's own, left alone)
    main = (
        threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is not None
    )
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: pressed.append(signum)) if main else None
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
        if main:
            signal.signal(signal.SIGINT, previous)
            if pressed:
                signal.raise_signal(signal.SIGINT)  # the user's Ctrl-C, to the handler that was in place


_ENV_LOCK = threading.Lock()


@contextmanager
def _worker_environment() -> Iterator[None]:
    """The workers' environment (one thread, :data:`WORKER_ENV`), set only while this thread spawns one.

    A spawned process inherits the environment at its start, so the variables are in this process's own
    environment only for that moment (under a lock), not for the whole run: another audit started meanwhile
    in another thread of this program is neither refused as a worker nor confined to one thread.
    """
    with _ENV_LOCK:
        saved = {k: os.environ.get(k) for k in (*ONE_THREAD_ENV, WORKER_ENV)}
        os.environ.update(dict.fromkeys((*ONE_THREAD_ENV, WORKER_ENV), "1"))
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


@contextmanager
def _spawning() -> Iterator[None]:
    """What a submit that starts a worker runs under: Ctrl-C held back, the workers' environment set."""
    with _children_ignore_ctrl_c(), _worker_environment():
        yield


def _end_with(sentinel: int) -> None:
    """Wait until the driver process ends, then end this worker (its units would never be committed)."""
    multiprocessing.connection.wait([sentinel])
    os._exit(1)


def _run_in_worker(unit: Unit, payload: object) -> UnitResult:
    if missing := _WORKER.get("missing"):
        raise PluginsMissingError(str(missing))
    cfg = _WORKER["cfg"]
    models = _WORKER["models"]
    assert isinstance(cfg, AuditConfig) and isinstance(models, dict)
    return run_unit(unit, models[unit.model], cfg, payload)


def _stop(pool: ProcessPoolExecutor) -> None:
    """Stop every worker now (a running unit is abandoned, never committed) and release the pool."""
    for process in list((getattr(pool, "_processes", None) or {}).values()):  # no public way before 3.14
        if process.is_alive():
            process.terminate()
    with suppress(RuntimeError):  # its manager thread never started (no memory for a thread): no join
        pool.shutdown(wait=True, cancel_futures=True)


def _died(units: list[Unit]) -> RobustXAIError:
    names = ", ".join(repr(u.id) for u in units)
    return RobustXAIError(
        f"a worker process died while running {names}: killed for memory (use fewer [executor] "
        'processes, or 1), or your script calls rx.run_audit outside if __name__ == "__main__": (see '
        "above); the finished units are saved: run it again to resume"
    )


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

    ``seconds``: the plan's predicted time of each unit, which orders them (:func:`start_order`). Every
    unit that finished is committed before an error is raised.

    Raises:
        RobustXAIError: When a worker process dies (its unit and the running ones are not committed).
        ModelsFailedError: At the end, when models failed (a commit raised it): every other unit was run and
            committed first, without restarting a worker.
    """
    if not units:
        return
    needed = {u.model: models[u.model] for u in units}
    ready = ReadyQueue(units, seconds)
    n = min(processes, len(units))
    modules = sorted(set(plugin_modules().values()))
    names = {kind: registry.names() for kind, registry in _REGISTRIES.items()}
    start = (cfg, needed, modules, logging.getLogger("robustxai").getEffectiveLevel(), names)
    pool = ProcessPoolExecutor(
        n, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker, initargs=start
    )
    running: dict[Future[UnitResult], Unit] = {}
    failures: dict[str, str] = {}
    try:
        _drive(pool, ready, running, n, cfg, data, _Commits(commit, ready, failures))
    except BrokenProcessPool:
        _stop(pool)
        raise _died(sorted(running.values(), key=units.index)) from None
    except BaseException:
        _stop(pool)
        raise
    pool.shutdown(wait=True)
    if failures:  # every other model's units are committed: the runner records these and is done
        raise ModelsFailedError(failures)


class _Commits:
    """The runner's commit, going on past a failed model: its waiting units are dropped, not run.

    A unit of a model that failed meanwhile, still running then, is discarded when it ends (as the in-process
    executor never starts it); its model is not committed further.
    """

    def __init__(
        self, commit: Callable[[Unit, UnitResult], None], ready: ReadyQueue, failures: dict[str, str]
    ) -> None:
        self.commit, self.ready, self.failures = commit, ready, failures

    def __call__(self, unit: Unit, result: UnitResult) -> None:
        if unit.model in self.failures:
            return
        try:
            self.commit(unit, result)
        except ModelsFailedError as failed:
            for model, why in failed.failures.items():
                log.error("model %r not audited: %s", model, why)  # said now: the run may end before the pool
                self.ready.drop(model)
            self.failures.update(failed.failures)
            return
        self.ready.finished(unit.id)


#: Seconds between checks that the pool's manager thread is alive while no unit finishes.
ALIVE_CHECK_S = 5.0


def _wait(pool: ProcessPoolExecutor, running: dict[Future[UnitResult], Unit]) -> set[Future[UnitResult]]:
    """The running units that finished; a one-line error if the pool can no longer finish any.

    The pool hands results back through a manager thread; when it cannot start one (out of memory under
    ``ulimit -v``) no future ever completes, and waiting without this check hung for ever.
    """
    while True:
        done, _ = wait(list(running), timeout=ALIVE_CHECK_S, return_when=FIRST_COMPLETED)
        if done:
            return done
        manager = getattr(pool, "_executor_manager_thread", None)  # no public way to ask
        if manager is not None and not manager.is_alive():
            done, _ = wait(list(running), timeout=0)  # it may have ended the futures (a dead worker) first
            if done:
                return done
            names = ", ".join(repr(u.id) for u in running.values())
            raise RobustXAIError(
                f"the worker pool stopped handing back results while running {names} (it could not start "
                "a thread: out of memory?); use fewer [executor] processes, or 1; finished units are saved"
            )


def _drive(
    pool: ProcessPoolExecutor,
    ready: ReadyQueue,
    running: dict[Future[UnitResult], Unit],
    n: int,
    cfg: AuditConfig,
    data: AuditData,
    commit: Callable[[Unit, UnitResult], None],
) -> None:
    """Keep ``n`` units running, commit each result as it comes (in a fixed order within a batch)."""
    while ready.left or running:
        while len(running) < n:
            unit = ready.pop()
            if unit is None:
                break
            payload = UNIT_KINDS[unit.kind].prepare(unit, cfg, data)
            starts = len(getattr(pool, "_processes", None) or {}) < n  # this submit starts a worker
            with _spawning() if starts else nullcontext():
                running[pool.submit(_run_in_worker, unit, payload)] = unit
        if not running:
            raise RobustXAIError(f"no unit can start: unmet dependencies of {ready.blocked()[0]!r}")
        done = _wait(pool, running)
        broken = False
        for future in sorted(done, key=lambda f: running[f].id):  # a fixed order of commits
            if isinstance(future.exception(), BrokenProcessPool):
                broken = True
                continue
            unit = running.pop(future)
            commit(unit, future.result())  # a unit's own error (not a dead worker) propagates as in-process
        if broken:  # every finished unit of the batch is committed first
            raise BrokenProcessPool
