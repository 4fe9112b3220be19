"""Units, resume and crash safety: a re-run skips finished units and ends with the tables of a full run."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

from robustxai import ConfigError
from robustxai._pipeline import run_audit
from robustxai.audit import AuditConfig, _plan as plan_mod, load_config
from robustxai.audit._executor import ExecutionContext, LocalExecutor
from robustxai.audit._plan import AuditData, Unit, plan_units, shards
from robustxai.audit._runner import AuditInterrupted, config_differences
from robustxai.data import SyntheticFracture
from robustxai.results import Store

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = (
    "tests internals of robustxai._pipeline, robustxai.audit._executor, robustxai.audit._plan, "
    "robustxai.audit._runner"
)

TINY = {
    "name": "tiny",
    "batch_size": 4,
    "data": {"n_train": 60, "n_test": 20, "size": 32, "write_to_disk": False},
    "training": {"epochs": 1, "attack_steps": 1, "eps_warmup_epochs": 0},
    "models": [
        {"name": "a", "arch": "smallcnn", "arch_kwargs": {"widths": [4, 8, 8, 8]}},
        {"name": "b", "arch": "smallcnn", "arch_kwargs": {"widths": [4, 8, 8, 8]}, "lr": 0.01},
    ],
    "attacks": [
        {"name": "fgsm", "epsilons": [4 / 255]},
        {"name": "pgd", "epsilons": [4 / 255], "params": {"steps": 2, "random_start": False}},
    ],
    "explain": {"methods": ["saliency"], "n_images": 4, "batch_size": 2},
    "report": {"n_figure": 1},
    "sanity": {"enabled": False},  # unit counts below are of robustness and explanation units only
    "manipulation": {"models": []},
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Any:
    """Tiny models run fastest on one thread; several spin-wait on a busy shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_config(**changes: Any) -> AuditConfig:
    return load_config(profile="smoke", **{**TINY, **changes})


def tables_of(run_dir: Path) -> dict[str, pd.DataFrame]:
    return {p.stem: pd.read_csv(p) for p in sorted((run_dir / "tables").glob("*.csv"))}


def assert_same_tables(a: Path, b: Path) -> None:
    ta, tb = tables_of(a), tables_of(b)
    assert ta.keys() == tb.keys() and ta
    for name in ta:
        pd.testing.assert_frame_equal(ta[name], tb[name], obj=name)


class CountingExecutor(LocalExecutor):
    """The local executor, counting units run and optionally pressing Ctrl-C before committing unit n."""

    def __init__(self, interrupt_at: int | None = None) -> None:
        self.ran: list[str] = []
        self.interrupt_at = interrupt_at

    def run(self, units: list[Unit], ctx: ExecutionContext, commit: Any) -> None:
        def counted(unit: Unit, result: Any) -> None:
            if self.interrupt_at is not None and len(self.ran) == self.interrupt_at:
                raise KeyboardInterrupt  # the unit ran but is not committed, as with a real Ctrl-C
            self.ran.append(unit.id)
            commit(unit, result)

        super().run(units, ctx, counted)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    out = tmp_path_factory.mktemp("ref") / "run"
    ex = CountingExecutor()
    result = run_audit(tiny_config(), out, executor=ex)
    assert result.units_run == len(ex.ran) and result.units_skipped == 0
    return out, ex.ran


def test_plan_is_deterministic_and_ordered() -> None:
    cfg = tiny_config()
    data = AuditData(SyntheticFracture(20, size=32, seed=1), cfg.explain.n_images, Path("unused"))
    units = plan_units(cfg, data)
    again = plan_units(cfg, AuditData(SyntheticFracture(20, size=32, seed=1), 4, Path("unused")))
    assert [u.id for u in units] == [u.id for u in again]
    assert len({u.id for u in units}) == len(units)
    rob = [u for u in units if u.kind == "robustness"]
    # 20 images in shards of 4 batches × 4 = 16 → 2 shards; 2 models × (clean, fgsm, pgd).
    assert len(rob) == 2 * 2 * 3
    assert all(len(u.indices) % cfg.batch_size == 0 for u in rob if u.indices[-1] != 19)
    covered = sorted(i for u in rob if u.model == "a" and u.condition == ("clean", 0.0) for i in u.indices)
    assert covered == list(range(20))
    exp = [u for u in units if u.kind == "explanation"]
    assert len(exp) == 2 * 2 * 2  # models × (saliency, random) × 2 shards of 2 subset images
    seen: set[str] = set()
    for u in units:
        assert set(u.deps) <= seen
        seen.add(u.id)
    assert all(d.startswith("robustness/" + u.model + "/") for u in exp for d in u.deps)


def test_shards_cover_range() -> None:
    assert shards(5, 2) == [(0, 1), (2, 3), (4,)]
    assert shards(0, 3) == []


def test_resume_skips_finished_units(reference: tuple[Path, list[str]]) -> None:
    out, ran = reference
    before = tables_of(out)
    ex = CountingExecutor()
    result = run_audit(tiny_config(), out, executor=ex)
    assert ex.ran == [] and result.units_run == 0 and result.units_skipped == len(ran)
    after = tables_of(out)
    for name in before:
        pd.testing.assert_frame_equal(before[name], after[name])


def test_interrupt_then_resume_gives_identical_tables(
    reference: tuple[Path, list[str]], tmp_path: Path
) -> None:
    ref_dir, ran = reference
    out = tmp_path / "run"
    with pytest.raises(AuditInterrupted, match="Run the same command again to resume"):
        run_audit(tiny_config(), out, executor=CountingExecutor(interrupt_at=7))
    with Store(out, readonly=True) as store:
        done = store.done_units()
        preds = store.table("predictions")
    assert len(done) == 7 and done == set(ran[:7])
    # Only committed units have rows: 7 robustness units of up to 16 images each, nothing half-written.
    expected = sum(16 if u.endswith("/0") else 4 for u in done)
    assert len(preds) == expected
    ex = CountingExecutor()
    result = run_audit(tiny_config(), out, executor=ex)
    assert result.units_skipped == 7 and ex.ran == ran[7:]
    assert_same_tables(ref_dir, out)


def test_sharding_does_not_change_numbers(
    reference: tuple[Path, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(plan_mod, "ROBUSTNESS_SHARD_BATCHES", 100)
    monkeypatch.setattr(plan_mod, "EXPLANATION_SHARD_BATCHES", 100)
    ex = CountingExecutor()
    run_audit(tiny_config(), tmp_path / "one-shard", executor=ex)
    assert len(ex.ran) == 2 * 3 + 2 * 2  # one shard per series
    assert_same_tables(reference[0], tmp_path / "one-shard")


def test_changed_config_is_refused_with_the_differences(reference: tuple[Path, list[str]]) -> None:
    out, _ = reference
    changed = tiny_config(attacks=[{"name": "fgsm", "epsilons": [0.01]}])
    with pytest.raises(ConfigError) as err:
        run_audit(changed, out)
    msg = str(err.value)
    assert "different config" in msg and "attacks[0].epsilons" in msg and "attacks[1].name" in msg
    assert "--fresh" in msg and "new --out" in msg


def test_executor_and_cache_settings_do_not_block_resume() -> None:
    a = tiny_config().model_dump()
    b = tiny_config(cache_dir="/elsewhere", executor={"kind": "ray", "num_cpus": 2}).model_dump()
    assert config_differences(a, b) == []
    c = tiny_config(seed=3).model_dump()
    assert config_differences(a, c) == ["seed: 0 → 3"]
    assert config_differences({"w": (4, 8)}, {"w": [4, 8]}) == []  # compared as stored (JSON)
    many = config_differences({f"k{i}": i for i in range(12)}, {f"k{i}": -i - 1 for i in range(12)})
    assert len(many) == 9 and many[-1] == "… and 4 more"


def test_fresh_replaces_an_incompatible_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with Store(out / "results.sqlite") as store:  # an earlier run of another config
        store.set_meta("config", tiny_config(seed=5).model_dump())
        store.write_unit("robustness/a/clean@0.0/0", {"predictions": [("a", "clean", 0.0, "x", 0, 0, 1)]})
    with pytest.raises(ConfigError, match="seed: 5 → 0"):
        run_audit(tiny_config(), out, executor=CountingExecutor(interrupt_at=0))
    with pytest.raises(AuditInterrupted):
        run_audit(tiny_config(), out, executor=CountingExecutor(interrupt_at=0), fresh=True)
    with Store(out, readonly=True) as store:
        assert store.done_units() == set() and store.table("predictions").empty
        assert store.get_meta("config")["seed"] == 0


def test_write_unit_is_one_transaction(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite") as store:
        good = ("m", "clean", 0.0, "s1", 0, 0, 1)
        bad = ("m", "clean", 0.0, "s2", 0)  # wrong width: the insert fails half-way through the unit
        with pytest.raises(sqlite3.ProgrammingError):
            store.write_unit("u1", {"predictions": [good, bad]})
        assert store.table("predictions").empty and not store.unit_done("u1")
        store.write_unit("u1", {"predictions": [good]})
        assert store.unit_done("u1") and len(store.table("predictions")) == 1
        with pytest.raises(ValueError, match="cannot write table"):
            store.write_unit("u2", {"meta": [("k", "v")]})
        store.add_warnings([("m", "masking", "PGD beats APGD")])
        assert store.warnings().to_dict("records") == [
            {"model": "m", "code": "masking", "message": "PGD beats APGD"}
        ]


def test_unit_results_do_not_depend_on_global_rng(reference: tuple[Path, list[str]]) -> None:
    cfg = tiny_config()
    data = AuditData(SyntheticFracture(20, size=32, seed=1), 4, Path("unused"))
    unit = plan_units(cfg, data)[0]
    model = __import__("robustxai").create_model("smallcnn", widths=(4, 8, 8, 8)).eval()
    payload = plan_mod.UNIT_KINDS[unit.kind].prepare(unit, cfg, data)
    torch.manual_seed(1)
    r1 = plan_mod.run_unit(unit, model, cfg, payload)
    state = torch.random.get_rng_state()
    torch.manual_seed(2)
    r2 = plan_mod.run_unit(unit, model, cfg, payload)
    assert r1.rows == r2.rows
    torch.manual_seed(1)
    plan_mod.run_unit(unit, model, cfg, payload)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's RNG stream is untouched


CRASH_CONFIG = """
[explain]
n_images = 12
batch_size = 2
[explain.params.integrated_gradients]
n_steps = 40
"""


def _count_units(db: Path) -> int:
    try:
        con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=0.1)
        try:
            return int(con.execute("SELECT COUNT(*) FROM units").fetchone()[0])
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "robustxai.cli", "audit", "--profile", "smoke", *args]


@pytest.mark.slow
def test_sigkill_mid_run_then_rerun_gives_every_unit_once(tmp_path: Path) -> None:
    config = tmp_path / "crash.toml"
    config.write_text(CRASH_CONFIG)
    ref = tmp_path / "ref"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    # The uninterrupted reference (in this process) also trains or loads the smoke models into the test cache.
    run_audit(load_config(config, profile="smoke"), ref)
    with Store(ref, readonly=True) as store:
        planned = store.done_units()
    out = tmp_path / "run"
    proc = subprocess.Popen(_cli(str(config), "--out", str(out)), env=env, stderr=subprocess.DEVNULL)
    db = out / "results.sqlite"
    deadline = time.monotonic() + 120
    while _count_units(db) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = _count_units(db)
    assert 1 <= killed_at < len(planned), "the kill did not land mid-run"
    rerun = subprocess.run(_cli(str(config), "--out", str(out)), env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert "resumed" in rerun.stderr
    con = sqlite3.connect(db)
    units = [row[0] for row in con.execute("SELECT unit FROM units")]
    assert sorted(units) == sorted(planned)  # every unit exactly once
    dup = con.execute(
        "SELECT COUNT(*) FROM (SELECT 1 FROM metrics GROUP BY model, condition, epsilon, explainer, metric, "
        "sample_id HAVING COUNT(*) > 1)"
    ).fetchone()[0]
    assert dup == 0
    assert_same_tables(ref, out)


def _default_sigint() -> None:
    """Give the child SIGINT's default disposition, so Python turns it into KeyboardInterrupt.

    A non-interactive shell starts background jobs (``make test &``, a CI runner) with SIGINT ignored, and
    Python keeps an ignored SIGINT ignored; the test is about Ctrl-C, not about that inheritance.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_says_how_to_resume(tmp_path: Path) -> None:
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    db = out / "results.sqlite"
    for _ in range(3):  # a race: the interrupt must land while units still run
        proc = subprocess.Popen(
            _cli("--out", str(out), "--fresh"),
            env=env,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_default_sigint,  # a shell's background job starts with SIGINT ignored
        )
        deadline = time.monotonic() + 120
        while _count_units(db) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        if proc.poll() is None:
            break
        proc.communicate()  # finished before the interrupt could be sent (the poll missed the units): again
    else:
        pytest.fail("the smoke audit finished three times before it could be interrupted")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Run the same command again to resume" in err and "Traceback" not in err
    with Store(out, readonly=True) as store:  # consistent: rows exactly for the committed units
        done = store.done_units()
        preds = store.table("predictions")
    assert 2 <= len(done) < 21
    committed = {(m, c) for u in done if u.startswith("robustness/") for m, c in [u.split("/")[1:3]]}
    assert {
        (m, f"{c}@{e!r}")
        for m, c, e in zip(preds["model"], preds["condition"], preds["epsilon"], strict=True)
    } <= committed
    assert len(preds) == 40 * len([u for u in done if u.startswith("robustness/")])
