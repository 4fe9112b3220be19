"""``[executor] processes``: units on worker processes of one thread each (audit/_executor_pool.py).

The reference for the numbers is the in-process executor on one torch thread: every unit then runs the same
operations on one thread, so the store must be row-for-row equal, and equal for any number of workers.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

import robustxai as rx
import robustxai.audit._executor_pool as pool_module
from robustxai import ConfigError, RobustXAIError
from robustxai._pipeline import run_audit
from robustxai.audit import load_config
from robustxai.audit._estimate import estimate_audit
from robustxai.audit._estimate_price import POOL_START_S
from robustxai.audit._estimate_text import plan_lines
from robustxai.audit._executor import AUTO_PROCESSES, LocalExecutor, resolve_processes, usable_cores
from robustxai.audit._executor_pool import _children_ignore_ctrl_c
from robustxai.audit._plan import Unit
from robustxai.audit._runner import AuditInterrupted
from robustxai.audit._schedule import ReadyQueue, makespan, start_order
from robustxai.audit._timing import PassTime, TimingCache
from robustxai.results import Store

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = (
    "tests internals of robustxai.audit._executor, robustxai.audit._executor_pool, robustxai._cli_errors"
)

TINY = {
    "name": "tiny-processes",
    "batch_size": 4,
    "data": {"n_train": 60, "n_test": 20, "size": 32, "write_to_disk": False},
    "training": {"epochs": 1, "attack_steps": 1, "eps_warmup_epochs": 0},
    "models": [
        {"name": "a", "arch": "smallcnn", "arch_kwargs": {"widths": [4, 8, 8, 8]}},
        {"name": "b", "arch": "smallcnn-attention", "arch_kwargs": {"widths": [4, 8, 8, 8]}},
    ],
    "explain": {"methods": ["saliency", "smoothgrad", "gradcam"], "n_images": 4, "batch_size": 2},
    "manipulation": {"methods": ["saliency"], "models": ["a"], "n_images": 2, "iterations": 3},
    "report": {"n_figure": 1},
}


def tiny(processes: int | str) -> Any:
    return load_config(profile="smoke", **{**TINY, "executor": {"processes": processes}})


def unit(uid: str, kind: str = "robustness", deps: tuple[str, ...] = (), model: str = "a") -> Unit:
    return Unit(id=uid, kind=kind, model=model, shard=0, indices=(0,), deps=deps)


# --- the setting -------------------------------------------------------------------------------------------


def test_processes_resolve_to_a_count() -> None:
    assert resolve_processes(1) == 1 and resolve_processes(3) == 3
    assert resolve_processes("auto") == min(usable_cores(), AUTO_PROCESSES) >= 1
    assert resolve_processes(4, "cuda") == 1  # one GPU: its units run in this process
    for bad in (0, -2, True, "all", 2.5):
        with pytest.raises(ConfigError, match="executor.processes must be 'auto' or a whole number ≥ 1"):
            resolve_processes(bad)  # type: ignore[arg-type]
    assert LocalExecutor(processes=2).processes == 2


@pytest.mark.parametrize("bad", [0, -1, True, "many", 1.5, 1000])
def test_config_refuses_bad_processes(bad: object) -> None:
    with pytest.raises(ConfigError, match="executor.processes"):
        load_config(profile="smoke", executor={"processes": bad})


def test_config_accepts_auto_and_counts() -> None:
    assert load_config(profile="smoke", executor={"processes": "auto"}).executor.processes == "auto"
    assert load_config(profile="smoke", executor={"processes": 2}).executor.processes == 2
    assert load_config(profile="smoke").executor.processes == 1  # the library's default: in-process


# --- the schedule ------------------------------------------------------------------------------------------


def test_start_order_puts_manipulation_first_and_keeps_plan_order() -> None:
    units = [
        unit("r1"),
        unit("e1", "explanation"),
        unit("m1", "manipulation"),
        unit("r2"),
        unit("m2", "manipulation"),
    ]
    assert [u.id for u in start_order(units)] == ["m1", "m2", "r1", "e1", "r2"]  # no predictions
    assert [u.id for u in start_order(units, {})] == ["m1", "m2", "r1", "e1", "r2"]


def test_start_order_with_predictions_starts_the_longest_chain_first() -> None:
    units = [
        unit("r1"),  # 1 s, but two explanations of 5 s and 2 s wait for it: chain 6 s
        unit("r2"),  # 2 s, nothing waits: chain 2 s
        unit("m1", "manipulation"),  # 4 s alone
        unit("e1", "explanation", deps=("r1",)),
        unit("e2", "explanation", deps=("r1",)),
        unit("r3"),  # 2 s: ties with r2, which the plan puts first
    ]
    seconds = {"r1": 1.0, "r2": 2.0, "m1": 4.0, "e1": 5.0, "e2": 2.0, "r3": 2.0}
    assert [u.id for u in start_order(units, seconds)] == ["r1", "e1", "m1", "r2", "e2", "r3"]


def brute_force_makespan(units: list[Unit], seconds: dict[str, float], n: int) -> float:
    """Time-stepped simulation (0.5-s ticks) of the same rule, written independently."""
    order = start_order(units, seconds)
    end: dict[str, float] = {}
    busy: list[tuple[str, float]] = []
    t = 0.0
    while len(end) < len(units):
        busy = [(uid, stop) for uid, stop in busy if stop > t]
        for u in order:
            if len(busy) == n:
                break
            if u.id in end or any(uid == u.id for uid, _ in busy):
                continue
            if all(d in end and end[d] <= t for d in u.deps):
                busy.append((u.id, t + seconds[u.id]))
                end[u.id] = t + seconds[u.id]
        t += 0.5
    return max(end.values())


def test_a_dropped_model_never_starts_nor_do_the_units_waiting_for_it() -> None:
    units = [
        unit("a1"),
        unit("a2", deps=("a1",)),
        unit("b1", model="b"),
        unit("b2", deps=("b1",), model="b"),
        unit("b3", deps=("a1",), model="b"),  # waits for a dropped unit: dropped too
        unit("c1", model="c"),
    ]
    ready = ReadyQueue(units)
    first = ready.pop()
    assert first is not None and first.id == "a1" and ready.left == 5
    ready.drop("a")  # a1 is running: it is not counted again; a2 and b3 are never handed out
    assert ready.left == 3
    started = []
    while (u := ready.pop()) is not None:
        started.append(u.id)
        ready.finished(u.id)
    assert started == ["b1", "b2", "c1"] and ready.left == 0 and ready.blocked() == []
    ready.finished("a1")  # a dropped unit that ends anyway wakes nothing
    assert ready.pop() is None


def test_makespan_matches_a_brute_force_schedule() -> None:
    units = [
        unit("r1"),
        unit("r2"),
        unit("e1", "explanation", deps=("r1",)),
        unit("e2", "explanation", deps=("r1", "r2")),
        unit("m1", "manipulation"),
        unit("s1", "sanity"),
    ]
    seconds = {"r1": 2.0, "r2": 3.0, "e1": 1.5, "e2": 4.0, "m1": 6.0, "s1": 0.5}
    for n in (1, 2, 3, 8):
        assert makespan(units, seconds, n) == brute_force_makespan(units, seconds, n)
    assert makespan(units, seconds, 1) == sum(seconds.values())
    assert makespan(units, seconds, 8) == 7.0  # the longest chain: r2 (0–3 s), then e2 (3–7 s)
    # by hand: r2 0–3 and r1 0–2; m1 2–8 (its chain, 6 s, beats e1's); e2 3–7; e1 7–8.5; s1 8–8.5
    assert makespan(units, seconds, 2) == 8.5
    assert makespan([], {}, 2) == 0.0
    assert makespan([unit("x", deps=("done-before",))], {"x": 1.0}, 2) == 1.0  # outside deps count as done


# --- the numbers -------------------------------------------------------------------------------------------


def store_tables(store: Path) -> dict[str, pd.DataFrame]:
    with Store(store, readonly=True) as s:
        return {t: s.table(t) for t in ("units", "predictions", "metrics")}


@pytest.mark.slow
def test_workers_give_the_one_thread_store_for_any_count(tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        reference = run_audit(tiny(1), tmp_path / "one-thread")
    finally:
        torch.set_num_threads(threads)
    two = run_audit(tiny(2), tmp_path / "two")
    three = run_audit(tiny(3), tmp_path / "three")
    assert torch.get_num_threads() == threads  # the driver's own threads are untouched
    assert two.units_run == three.units_run == reference.units_run > 0
    ref = store_tables(reference.store)
    for run in (two, three):
        got = store_tables(run.store)
        assert sorted(got["units"]["unit"]) == sorted(ref["units"]["unit"]) and got["units"]["unit"].is_unique
        for table in ("predictions", "metrics"):
            pd.testing.assert_frame_equal(got[table], ref[table], obj=table)
        for name in ("robustness", "alignment", "manipulation"):
            a = (reference.run_dir / "tables" / f"{name}.csv").read_bytes()
            assert (run.run_dir / "tables" / f"{name}.csv").read_bytes() == a, name


# --- interruptions -----------------------------------------------------------------------------------------


class _Hook:
    """A progress display that does something to the run when its ``n``-th unit is committed.

    Training's progress (its epochs, when the models are not cached yet) is not counted: the action must
    hit the units, whatever earlier tests left in the cache.
    """

    def __init__(self, n: int, action: Any) -> None:
        self.n, self.action, self.count = n, action, 0
        self.tasks = 0
        self.training: set[int] = set()

    def start(self, description: str, total: int) -> int:
        self.tasks += 1
        task = self.tasks
        if description.startswith("training"):
            self.training.add(task)
        return task

    def advance(self, task: int, steps: int = 1) -> None:
        if task in self.training:
            return
        self.count += 1
        if self.count == self.n:
            self.action()

    def finish(self, task: int) -> None:
        pass


def _kill_workers() -> None:
    for child in multiprocessing.active_children():
        os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]


def _interrupt() -> None:
    raise KeyboardInterrupt


@pytest.mark.slow
def test_a_dead_worker_is_a_one_line_error_and_the_run_resumes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(RobustXAIError, match=r"a worker process died while running .*run it again to resume"):
        run_audit(tiny(2), out, progress=_Hook(2, _kill_workers))
    assert not multiprocessing.active_children()
    with Store(out / "results.sqlite", readonly=True) as s:
        saved = len(s.done_units())
    assert saved >= 2
    resumed = run_audit(tiny(2), out)
    assert resumed.units_skipped == saved and resumed.units_run > 0
    whole = run_audit(tiny(2), tmp_path / "whole")
    for name in ("robustness", "alignment", "manipulation"):
        a = (whole.run_dir / "tables" / f"{name}.csv").read_bytes()
        assert (resumed.run_dir / "tables" / f"{name}.csv").read_bytes() == a, name


@pytest.mark.slow
def test_an_interrupt_stops_every_worker(tmp_path: Path) -> None:
    with pytest.raises(AuditInterrupted, match="Run the same command again to resume"):
        run_audit(tiny(2), tmp_path / "run", progress=_Hook(1, _interrupt))
    assert not multiprocessing.active_children()


def _saved(folder: Path, fill: float | None = None) -> str:
    torch.manual_seed(0)
    model = rx.create_model("smallcnn", widths=(4, 8, 8, 8), class_names=("normal", "fracture"))
    if fill is not None:  # finite weights whose logits overflow: the model's first unit fails
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(fill)
    return str(rx.save_model(model, folder))


@pytest.mark.slow
def test_a_failed_model_leaves_the_same_workers_running_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No restart: one pool; the failed model's other units never run; the healthy model's rows unchanged."""
    pools: list[object] = []

    class Counted(pool_module.ProcessPoolExecutor):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pools.append(self)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(pool_module, "ProcessPoolExecutor", Counted)
    good = {"name": "good", "checkpoint": _saved(tmp_path / "good")}
    huge = {"name": "huge", "checkpoint": _saved(tmp_path / "huge", 1e30)}
    settings = {
        "name": "failing",
        "batch_size": 4,
        "data": {"n_train": 10, "n_test": 16, "size": 32, "write_to_disk": False},
        "attacks": [{"name": "fgsm", "epsilons": [4 / 255]}, {"name": "pgd", "epsilons": [4 / 255]}],
        "explain": {"methods": ["saliency"], "n_images": 4, "batch_size": 2, "attacks": ["fgsm"]},
        "report": {"n_figure": 1, "primary_attack": "fgsm"},
        "sanity": {"enabled": False},
        "manipulation": {"models": []},
        "executor": {"processes": 2},
    }
    both = run_audit(load_config(profile="smoke", **settings, models=[huge, good]), tmp_path / "both")
    assert set(both.failed) == {"huge"} and "non-finite outputs" in both.failed["huge"]
    assert len(pools) == 1
    with Store(tmp_path / "both" / "results.sqlite", readonly=True) as store:
        done = store.done_units()
    assert done and all("/good/" in uid for uid in done)
    alone = run_audit(load_config(profile="smoke", **settings, models=[good]), tmp_path / "alone")
    assert alone.units_run == both.units_run
    for name in ("robustness", "alignment"):
        a = pd.read_csv(tmp_path / "alone" / "tables" / f"{name}.csv")
        b = pd.read_csv(tmp_path / "both" / "tables" / f"{name}.csv")
        pd.testing.assert_frame_equal(a, b.reset_index(drop=True))


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="no signal masks on this platform")
def test_a_worker_started_under_the_block_cannot_be_interrupted_before_its_set_up() -> None:
    """A Ctrl-C that reaches a worker still importing torch stays pending there (no worker traceback).

    ``signal.raise_signal(SIGINT)`` as a spawned process's very first act: it ends with code 1 (a
    KeyboardInterrupt) when the process was started normally and with 0 under the block.
    """
    ctx = multiprocessing.get_context("spawn")
    normal = ctx.Process(target=signal.raise_signal, args=(signal.SIGINT,))
    normal.start()
    normal.join(60)
    assert normal.exitcode == 1  # the control: the check can fail
    with _children_ignore_ctrl_c():
        blocked = ctx.Process(target=signal.raise_signal, args=(signal.SIGINT,))
        blocked.start()
    blocked.join(60)
    assert blocked.exitcode == 0


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="no signal masks on this platform")
def test_a_ctrl_c_while_workers_start_is_delivered_afterwards_once() -> None:
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        reached: list[str] = []
        with pytest.raises(KeyboardInterrupt):
            with _children_ignore_ctrl_c():
                signal.raise_signal(signal.SIGINT)  # held back: the spawn goes on
                reached.append("after the Ctrl-C")
            reached.append("after the block")  # never: it is raised on leaving the block
        assert reached == ["after the Ctrl-C"]
        with _children_ignore_ctrl_c():  # nothing pressed: nothing raised, the handler is back
            pass
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)


# --- the plan ----------------------------------------------------------------------------------------------


class ThreadsSeen(TimingCache):
    """Fixed pass times (10 ms forward, 30 ms forward+backward per image) that record the threads asked on."""

    def __init__(self) -> None:
        super().__init__(None)
        self.seen: list[tuple[bool, int]] = []

    def get(self, spec, model, shape, batch, device="cpu", *, train=False, gradient=True):  # type: ignore[override]
        self.seen.append((train, torch.get_num_threads()))
        return PassTime(batch, 0.01 * batch, 0.03 * batch, 0.05 * batch, 1000 * batch, 100)


def small(tmp_path: Path, processes: int) -> Any:
    return load_config(
        profile="smoke",
        cache_dir=str(tmp_path / "cache"),
        data={"n_train": 40, "n_test": 8, "size": 16},
        models=[{"name": "m", "arch": "smallcnn", "arch_kwargs": {"widths": [4, 4, 4, 4]}}],
        training={"epochs": 1},
        explain={"n_images": 3, "batch_size": 3},
        manipulation=None,
        executor={"processes": processes},
    )


def test_the_plan_prices_workers_on_one_thread_with_the_executors_schedule(tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    one = estimate_audit(small(tmp_path, 1), timing=ThreadsSeen())
    timing = ThreadsSeen()
    two = estimate_audit(small(tmp_path, 2), timing=timing)
    assert torch.get_num_threads() == threads  # restored
    assert {t for train, t in timing.seen if not train} == {1}  # the units' passes: one thread
    assert all(t == threads for train, t in timing.seen if train)  # training runs in the driver
    assert one.processes == 1 and one.units_wall == 0.0
    assert one.seconds == pytest.approx(sum(s.seconds for s in one.stages))
    assert two.processes == 2
    own = {uid: 2 * s for uid, s in two.unit_seconds.items()}  # unit_seconds are wall shares: ÷ processes
    units = [u for u in plan_units_of(two)]
    assert two.units_wall == pytest.approx(POOL_START_S + makespan(units, own, 2))
    driver = sum(s.seconds for s in two.stages if s.name in ("training", "report"))
    assert two.seconds == pytest.approx(driver + two.units_wall)
    lines = plan_lines(two)
    assert "one thread, as each of 2 workers" in lines[0]
    assert any(
        "wall time of 2 units at once on worker processes of one thread each" in line for line in lines
    )


def plan_units_of(est: Any) -> list[Unit]:
    from robustxai.audit._estimate import Planner

    planner = Planner(est.cfg, timing=ThreadsSeen())
    return [u for u, _ in planner.works(est.cfg)[0]]


def test_the_progress_display_follows_the_workers_start_order() -> None:
    from robustxai.audit._executor import ExecutionContext, run_order

    units = [unit("r1"), unit("m1", "manipulation"), unit("r2")]
    ctx = ExecutionContext(cfg=None, data=None, models={}, unit_seconds={"r1": 1.0, "m1": 5.0, "r2": 2.0})  # type: ignore[arg-type]
    assert [u.id for u in run_order(LocalExecutor(processes=2), units, ctx)] == ["m1", "r2", "r1"]
    assert run_order(LocalExecutor(processes=1), units, ctx) == units  # in-process: the plan's order


def test_the_default_profile_uses_a_worker_per_core() -> None:
    assert load_config(profile="default").executor.processes == "auto"


UNGUARDED = """
import sys
import robustxai as rx
from robustxai.audit import load_config

cfg = load_config(profile="smoke", **{tiny!r}, executor={{"processes": 2}})
rx.run_audit(cfg, sys.argv[1])  # no if __name__ == "__main__": a spawned worker imports this file again
"""


@pytest.mark.slow
def test_an_unguarded_script_stops_at_once_with_the_reason(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = tmp_path / "audit_script.py"
    script.write_text(UNGUARDED.format(tiny=TINY))
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")},
    )
    assert done.returncode != 0
    assert "an audit was started inside a robustxai worker process" in done.stderr  # the worker's reason
    assert "a worker process died while running " in done.stderr  # the driver's one line
    assert 'if __name__ == "__main__":' in done.stderr


# --- what workers cannot see, and container limits ---------------------------------------------------------


def test_plugins_and_models_defined_in_main_keep_the_units_in_this_process() -> None:
    import robustxai.metrics as M
    from robustxai.audit._executor_pool import cannot_ship, plugin_modules

    models = {"a": rx_model()}
    assert cannot_ship(models) == ""  # built-in metrics, explainers and models: workers have them all

    def notebook_rmse(maps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return M.rmse(maps, mask)

    notebook_rmse.__module__ = "__main__"  # as a function defined in a notebook cell
    M.register_metric(M.MetricInfo("nb_rmse", notebook_rmse, False, "mask", "defined in a notebook"))
    try:
        assert plugin_modules() == {"metric 'nb_rmse'": "__main__"}
        assert (
            cannot_ship(models)
            == "metric 'nb_rmse' defined in __main__, which worker processes cannot import"
        )
    finally:
        M.unregister_metric("nb_rmse")

    class Local(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    Local.__module__ = "__main__"
    models["b"] = torch.nn.Sequential(Local())  # type: ignore[assignment]
    assert cannot_ship(models) == "model 'b' defined in __main__, which worker processes cannot import"


@pytest.mark.slow
def test_a_plugin_the_workers_cannot_register_runs_the_units_here_with_the_same_tables(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A metric registered under a new name for robustxai's own function: a worker imports robustxai only.

    Before, the workers' tables silently lacked it (results depended on the number of processes).
    """
    import robustxai.metrics as M

    M.register_metric(M.MetricInfo("alias_rmse", M.rmse, False, "mask", "rmse under another name"))
    try:
        with caplog.at_level("WARNING", logger="robustxai"):
            two = run_audit(tiny(2), tmp_path / "two")
        one = run_audit(tiny(1), tmp_path / "one")
    finally:
        M.unregister_metric("alias_rmse")
    assert "worker processes lack the plug-ins metric 'alias_rmse'" in caplog.text
    with Store(tmp_path / "two" / "results.sqlite", readonly=True) as s:
        assert (s.table("metrics")["metric"] == "alias_rmse").any()
    for name in ("robustness", "alignment"):
        a = (one.run_dir / "tables" / f"{name}.csv").read_bytes()
        assert (two.run_dir / "tables" / f"{name}.csv").read_bytes() == a, name


def test_a_script_read_from_standard_input_keeps_the_units_here(monkeypatch: pytest.MonkeyPatch) -> None:
    from robustxai.audit._executor_pool import cannot_ship

    monkeypatch.setattr(sys.modules["__main__"], "__file__", "<stdin>", raising=False)
    assert "the main script (<stdin>) is no file" in cannot_ship({"a": rx_model()})


def test_the_worker_environment_is_set_only_while_a_worker_starts() -> None:
    from robustxai.audit._executor_pool import WORKER_ENV, _worker_environment

    before = os.environ.get(WORKER_ENV)
    with _worker_environment():
        assert os.environ[WORKER_ENV] == "1" and os.environ["OMP_NUM_THREADS"] == "1"
    assert os.environ.get(WORKER_ENV) == before  # another audit in this program is not taken for a worker


def rx_model() -> Any:
    import robustxai as rx

    return rx.create_model("smallcnn", widths=[4, 8, 8, 8])


@pytest.mark.parametrize(
    ("files", "cpus"),
    [
        ({"cpu.max": "200000 100000\n"}, 2),
        ({"cpu.max": "150000 100000\n"}, 2),  # 1.5 CPUs: rounded up
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "100000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({"cpu.max": "garbage\n"}, None),
        ({}, None),
    ],
)
def test_a_containers_cpu_quota_caps_auto(tmp_path: Path, files: dict[str, str], cpus: int | None) -> None:
    from robustxai.audit._executor import _cgroup_cpus

    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert _cgroup_cpus(tmp_path) == cpus
    expected = min(usable_cores(tmp_path / "none"), cpus) if cpus else usable_cores(tmp_path / "none")
    assert usable_cores(tmp_path) == expected


def test_the_processes_option_reads_numbers_and_words() -> None:
    from robustxai._cli_plan import processes_option

    assert processes_option(" 3 ") == 3 and processes_option("auto") == "auto"
    assert processes_option("²") == "²"  # not a number: the config refuses it in one line
    with pytest.raises(ConfigError, match="executor.processes"):
        load_config(profile="smoke", executor={"processes": processes_option("²")})


def test_a_full_disk_under_the_store_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """SQLite's 'database or disk is full' (not an OSError) ends as one line and status 2, not a traceback."""
    import sqlite3

    import typer
    from rich.console import Console

    from robustxai._cli_errors import user_errors

    console = Console(width=200)
    with pytest.raises(typer.Exit) as stop, user_errors(console, debug=False):
        raise sqlite3.OperationalError("database or disk is full")
    assert stop.value.exit_code == 2
    assert "error: database or disk is full" in capsys.readouterr().out


def test_more_processes_than_cores_is_warned(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="robustxai"):
        LocalExecutor(processes=usable_cores() + 1)
    assert "is more than the" in caplog.text and "usable cores" in caplog.text


def test_a_pool_whose_manager_thread_died_is_an_error_not_a_hang(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under ``ulimit -v`` the pool could not start its manager thread and the driver waited for ever."""
    import threading
    from concurrent.futures import Future

    import robustxai.audit._executor_pool as pool_mod

    dead = threading.Thread(target=lambda: None)
    dead.start()
    dead.join()

    class Pool:
        _executor_manager_thread = dead

    monkeypatch.setattr(pool_mod, "ALIVE_CHECK_S", 0.01)
    never: Future[Any] = Future()
    with pytest.raises(RobustXAIError, match="stopped handing back results while running 'u1'"):
        pool_mod._wait(Pool(), {never: unit("u1")})  # type: ignore[arg-type]
    ended: Future[Any] = Future()
    ended.set_exception(RuntimeError("a dead worker, noticed by the manager before it ended"))
    assert pool_mod._wait(Pool(), {never: unit("u1"), ended: unit("u2")}) == {ended}  # type: ignore[arg-type]
