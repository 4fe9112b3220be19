"""Regression tests (issue 13): run directories — a user's files are never deleted, nothing leaves ``--out``.

Covers: a folder is a run only by robustxai's store marker; a damaged store is refused, not deleted; links
among the outputs are refused and never followed; one writer per run (lock file with owner pid and host);
user text in console messages is not read as Rich markup; a model with NaN weights fails alone, named.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import robustxai as rx
from robustxai import ConfigError, RobustXAIError
from robustxai._export import export_run
from robustxai._pipeline import run_audit
from robustxai.audit import AuditConfig, load_config
from robustxai.audit._runlock import LOCK_FILE, RunLock
from robustxai.audit._stages_eval import robustness_shard
from robustxai.cli import app
from robustxai.results import CLEAN_CONDITION, Store

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = (
    "tests internals of robustxai._cli_progress, robustxai._export, robustxai._pipeline, "
    "robustxai.audit._runlock, robustxai.audit._runner, robustxai.audit._stages_eval"
)

runner = CliRunner()
CLASSES = ["normal", "fracture"]


def _checkpoint(folder: Path, nan: bool = False, fill: float = float("nan")) -> str:
    torch.manual_seed(0)
    model = rx.create_model("smallcnn", widths=(4, 8, 8, 8), class_names=CLASSES)
    if nan:
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(fill)
    return str(rx.save_model(model, folder))


def _settings(tmp: Path, nan_second: bool = False) -> dict[str, Any]:
    """A tiny audit of two saved models (no training): about a second."""
    return {
        "name": "tiny",
        "batch_size": 4,
        "data": {"n_train": 10, "n_test": 8, "size": 32, "write_to_disk": False},
        "models": [
            {"name": "good", "checkpoint": _checkpoint(tmp / "ckpt-good")},
            {"name": "bad" if nan_second else "other", "checkpoint": _checkpoint(tmp / "ckpt-2", nan_second)},
        ],
        "attacks": [{"name": "fgsm", "epsilons": [4 / 255]}],
        "explain": {"methods": ["saliency"], "n_images": 4, "batch_size": 2, "attacks": ["fgsm"]},
        "report": {"n_figure": 1, "primary_attack": "fgsm"},
        "sanity": {"enabled": False},
        "manipulation": {"models": []},
    }


def _tiny(tmp: Path, **kw: Any) -> AuditConfig:
    return load_config(profile="smoke", **_settings(tmp, **kw))


def _toml(tmp: Path) -> str:
    s = _settings(tmp)
    models = "".join(
        f'[[models]]\nname = "{m["name"]}"\ncheckpoint = "{m["checkpoint"]}"\n' for m in s["models"]
    )
    return (
        'name = "tiny"\nbatch_size = 4\n[data]\nn_train = 10\nn_test = 8\nsize = 32\nwrite_to_disk = false\n'
        '[[attacks]]\nname = "fgsm"\nepsilons = [0.0156]\n[explain]\nmethods = ["saliency"]\nn_images = 4\n'
        'batch_size = 2\nattacks = ["fgsm"]\n[report]\nn_figure = 1\nprimary_attack = "fgsm"\n'
        "[sanity]\nenabled = false\n[manipulation]\nmodels = []\n" + models
    )


def _snapshot(root: Path) -> dict[str, Any]:
    """Every path under ``root`` (links not followed) with its bytes or link target."""
    out: dict[str, Any] = {}
    for p in sorted(root.rglob("*")):
        key = str(p.relative_to(root))
        out[key] = ("link", os.readlink(p)) if p.is_symlink() else (p.read_bytes() if p.is_file() else "dir")
    return out


def _one_line_error(result: Any) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "error:" in result.output
    return " ".join(result.output.split())


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, AuditConfig]:
    tmp = tmp_path_factory.mktemp("finished")
    cfg = _tiny(tmp)
    run_audit(cfg, tmp / "run")
    return tmp / "run", cfg


def _copy_run(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


# -- a folder is a run only by robustxai's store marker -----------------------------------------------------
def _user_folder(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "tables").mkdir()
    (root / "tables" / "results.csv").write_text("my,own\n1,2\n")
    (root / "figures").mkdir()
    (root / "figures" / "fig1.png").write_bytes(b"\x89PNG mine")
    (root / "notes.txt").write_text("thesis notes")
    return root


def test_audit_into_a_user_folder_with_config_toml_touches_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = _user_folder(tmp_path / "user")
    (user / "config.toml").write_text(_toml(tmp_path))
    before = _snapshot(user)
    monkeypatch.chdir(user)
    for extra in ([], ["--fresh"]):
        result = runner.invoke(app, ["audit", "config.toml", "--profile", "smoke", "--out", ".", *extra])
        msg = _one_line_error(result)
        assert "is not empty and holds no earlier robustxai run" in msg
        assert _snapshot(user) == before
    with pytest.raises(ConfigError, match="holds no earlier robustxai run"):
        run_audit(_tiny(tmp_path), user, fresh=True)
    assert _snapshot(user) == before and not (user / LOCK_FILE).exists()


def test_a_foreign_sqlite_named_results_is_not_a_run(tmp_path: Path) -> None:
    import sqlite3

    user = _user_folder(tmp_path / "user")
    con = sqlite3.connect(user / "results.sqlite")
    con.execute("CREATE TABLE patients(id TEXT)")
    con.commit()
    con.close()
    before = _snapshot(user)
    with pytest.raises(ConfigError, match="results.sqlite is damaged or not a robustxai store") as err:
        run_audit(_tiny(tmp_path), user)
    assert "--fresh" in str(err.value)
    with pytest.raises(ConfigError, match="holds other files"):
        run_audit(_tiny(tmp_path), user, fresh=True)
    assert _snapshot(user) == before


# -- a damaged store is refused, never deleted without --fresh ----------------------------------------------
@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_damaged_store_is_refused_then_replaced_only_with_fresh(
    finished: tuple[Path, AuditConfig], tmp_path: Path, damage: str
) -> None:
    run = _copy_run(finished[0], tmp_path / "run")
    store = run / "results.sqlite"
    for side in ("-wal", "-shm"):
        Path(f"{store}{side}").unlink(missing_ok=True)
    data = store.read_bytes()
    store.write_bytes(
        {"truncate": data[: len(data) // 3], "garbage": b"not a database " * 64, "empty": b""}[damage]
    )
    before = _snapshot(run)
    with pytest.raises(ConfigError) as err:
        run_audit(finished[1], run)
    msg = str(err.value)
    assert str(store) in msg and "--fresh" in msg and "nothing was deleted" in msg and "\n" not in msg
    assert _snapshot(run) == before
    result = run_audit(finished[1], run, fresh=True)
    assert result.units_skipped == 0 and result.units_run > 0
    with Store(run, readonly=True) as s:
        assert s.get_meta("store_format") == "robustxai-store/1"


# -- nothing the audit writes may leave the run directory ---------------------------------------------------
@pytest.mark.parametrize(
    "name", ["figures", "tables", "adv", "report.html", "config.toml", "tables/robustness.csv"]
)
def test_linked_outputs_are_refused_and_never_followed(
    finished: tuple[Path, AuditConfig], tmp_path: Path, name: str
) -> None:
    run = _copy_run(finished[0], tmp_path / "run")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep me")
    target = outside if (run / name).is_dir() else outside / "precious.txt"
    path = run / name
    if path.is_dir():
        import shutil

        shutil.rmtree(path)
    else:
        path.unlink()
    path.symlink_to(target)
    before_outside, before_run = _snapshot(outside), _snapshot(run)
    with pytest.raises(RobustXAIError, match="is a symbolic link") as err:
        run_audit(finished[1], run)
    assert str(path) in str(err.value)
    assert _snapshot(outside) == before_outside and _snapshot(run) == before_run
    if name not in ("adv", "config.toml"):  # what `robustxai report` writes
        result = runner.invoke(app, ["report", str(run)])
        assert "is a symbolic link" in _one_line_error(result)
        assert _snapshot(outside) == before_outside


def test_export_refuses_a_linked_folder(finished: tuple[Path, AuditConfig], tmp_path: Path) -> None:
    run = _copy_run(finished[0], tmp_path / "run")
    outside = tmp_path / "outside"
    outside.mkdir()
    (run / "export").symlink_to(outside)
    with pytest.raises(RobustXAIError, match="is a symbolic link"):
        export_run(run, format="csv")
    assert list(outside.iterdir()) == []
    result = runner.invoke(app, ["export", str(run), "--format", "csv"])
    assert "is a symbolic link" in _one_line_error(result)


# -- one writer per run directory ----------------------------------------------------------------------------
# A second process that holds the lock as robustxai's RunLock does (O_EXCL file naming pid and host, plus
# flock), written without importing robustxai so that it starts in milliseconds.
HOLDER = (
    "import fcntl, json, os, socket, sys, time\n"
    "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)\n"
    "owner = {'pid': os.getpid(), 'host': socket.gethostname(), 'started': 'now'}\n"
    "os.write(fd, json.dumps(owner).encode())\n"
    "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB); print('held', flush=True); time.sleep(60)\n"
)


def test_second_writer_is_refused_while_a_process_holds_the_lock(
    finished: tuple[Path, AuditConfig], tmp_path: Path
) -> None:
    run = _copy_run(finished[0], tmp_path / "run")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run / LOCK_FILE)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        before = _snapshot(run)
        with pytest.raises(RobustXAIError, match=f"in use by another audit \\(pid {holder.pid} on host"):
            run_audit(finished[1], run)
        assert _snapshot(run) == before
        result = runner.invoke(app, ["report", str(run)])
        assert f"pid {holder.pid}" in _one_line_error(result)
    finally:
        holder.kill()
        holder.wait()
    result = run_audit(finished[1], run)  # the killed holder's lock is stale now: taken over
    assert any("took over the run lock" in w for w in result.warnings)
    assert not (run / LOCK_FILE).exists()


def test_stale_lock_of_a_dead_process_is_taken_over_with_a_warning(
    finished: tuple[Path, AuditConfig], tmp_path: Path
) -> None:
    run = _copy_run(finished[0], tmp_path / "run")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    owner = {"pid": dead.pid, "host": socket.gethostname(), "started": "2026-01-01T00:00:00"}
    (run / LOCK_FILE).write_text(json.dumps(owner))
    result = run_audit(finished[1], run)
    assert any("took over the run lock" in w and f"pid {dead.pid}" in w for w in result.warnings)
    assert not (run / LOCK_FILE).exists()


def test_lock_from_another_host_is_refused_with_its_owner(
    finished: tuple[Path, AuditConfig], tmp_path: Path
) -> None:
    run = _copy_run(finished[0], tmp_path / "run")
    owner = {"pid": 4242, "host": "scanner-room-pc", "started": "2026-12-01T08:00:00"}
    (run / LOCK_FILE).write_text(json.dumps(owner))
    with pytest.raises(RobustXAIError) as err:
        run_audit(finished[1], run)
    msg = str(err.value)
    assert "pid 4242 on host scanner-room-pc" in msg and "remove" in msg and "by hand" in msg
    assert json.loads((run / LOCK_FILE).read_text()) == owner


def test_lock_is_released_when_the_audit_fails(finished: tuple[Path, AuditConfig], tmp_path: Path) -> None:
    run = _copy_run(finished[0], tmp_path / "run")
    changed = finished[1].model_copy(update={"seed": 7})
    with pytest.raises(ConfigError, match="different config"):
        run_audit(changed, run)
    assert not (run / LOCK_FILE).exists()
    with RunLock(run):
        assert (run / LOCK_FILE).exists()
        with pytest.raises(RobustXAIError, match="in use by another audit"):
            RunLock(run).acquire()
    assert not (run / LOCK_FILE).exists()


# -- user text is never read as Rich markup ------------------------------------------------------------------
def test_markup_in_user_text_is_printed_literally(tmp_path: Path) -> None:
    odd = tmp_path / "[/bold]x[red]"
    result = runner.invoke(app, ["report", str(odd)])
    assert str(odd) in _one_line_error(result)
    result = runner.invoke(app, ["list", "[nan]"])
    assert "unknown kind '[nan]'" in _one_line_error(result)


def test_markup_in_a_progress_description_is_drawn_literally() -> None:
    import io

    from rich.console import Console

    from robustxai._cli_progress import progress_display

    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=120)
    with progress_display(console) as prog:
        task = prog.start("training [/bold]model[nan] (standard)", 2)
        prog.advance(task)
        prog.finish(task)
    assert "[/bold]model[nan]" in buffer.getvalue()


# -- a model with NaN weights fails alone, named; the others are audited ------------------------------------
def test_nan_model_is_named_and_the_other_model_is_still_audited(tmp_path: Path) -> None:
    cfg = _tiny(tmp_path, nan_second=True)
    result = run_audit(cfg, tmp_path / "run")
    assert set(result.failed) == {"bad"} and "non-finite" in result.failed["bad"]
    assert "model 'bad'" in result.failed["bad"]
    rob = pd.read_csv(tmp_path / "run" / "tables" / "robustness.csv")
    assert set(rob["model"]) == {"good"}
    with Store(tmp_path / "run", readonly=True) as store:
        failed = store.warnings().query("code == 'failed'")
    assert list(failed["model"]) == ["bad"]
    assert "bad: not audited" in (tmp_path / "run" / "report.html").read_text()
    assert any(w.startswith("bad: not audited") for w in result.warnings)


def test_nan_model_makes_the_cli_exit_non_zero_after_the_report(tmp_path: Path) -> None:
    cfg_path = tmp_path / "c.toml"
    cfg_path.write_text(
        _toml(tmp_path).replace(str(tmp_path / "ckpt-2"), _checkpoint(tmp_path / "nan", True))
    )
    result = runner.invoke(app, ["audit", str(cfg_path), "--profile", "smoke", "--out", str(tmp_path / "r")])
    assert result.exit_code == 1, result.output
    out = " ".join(result.output.split())
    assert "failed: model 'other'" in out and "could not be audited: other" in out
    assert (tmp_path / "r" / "report.html").is_file() and "Traceback" not in result.output


def test_model_with_finite_weights_but_overflowing_outputs_fails_alone(tmp_path: Path) -> None:
    """Weights of 1e30 are finite, but the logits overflow: the unit fails, the model is named and skipped."""
    cfg = _tiny(tmp_path)
    huge = _checkpoint(tmp_path / "huge", nan=True, fill=1e30)
    cfg.models[1] = cfg.models[1].model_copy(update={"checkpoint": huge})
    result = run_audit(cfg, tmp_path / "run")
    assert set(result.failed) == {"other"}
    assert (
        "unit robustness/other/clean@0.0/0 failed: model 'other' gives non-finite outputs"
        in result.failed["other"]
    )
    rob = pd.read_csv(tmp_path / "run" / "tables" / "robustness.csv")
    assert set(rob["model"]) == {"good"} and (rob["n"] == 8).all()
    again = run_audit(cfg, tmp_path / "run")  # failed units were not marked done: tried (and failing) again
    assert set(again.failed) == {"other"} and again.units_run == 0


class _NaNNet(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], 2), float("nan"))


def test_non_finite_outputs_name_the_model_instead_of_scoring_class_0() -> None:
    model = rx.wrap_model(_NaNNet(), class_names=CLASSES, in_channels=1, net_channels=1, cam_layer=None)
    cfg = load_config(profile="smoke")
    with pytest.raises(RobustXAIError, match="model 'mine' gives non-finite outputs .* for 4 of 4 images"):
        robustness_shard(
            "mine",
            model,
            cfg,
            CLEAN_CONDITION,
            torch.rand(4, 1, 32, 32),
            torch.tensor([0, 1, 0, 1]),
            list("abcd"),
        )


def test_stopped_before_the_store_was_written_is_still_a_run(tmp_path: Path) -> None:
    """The marker is written first: a run killed while training models is resumed, not refused."""
    run = tmp_path / "run"
    cfg = _tiny(tmp_path)
    from robustxai.audit import _runner as runner_mod

    def stop(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(runner_mod, "get_models", stop)
        with pytest.raises(KeyboardInterrupt):
            run_audit(cfg, run)
    assert (run / "results.sqlite").is_file() and not (run / LOCK_FILE).exists()
    assert run_audit(cfg, run).units_run > 0


@pytest.mark.slow
def test_killed_audit_releases_its_lock_and_says_how_to_resume(tmp_path: Path) -> None:
    """SIGTERM (``kill``) stops an audit like Ctrl-C: exit 130, one line, the lock file removed."""
    cfg_path = tmp_path / "c.toml"
    cfg_path.write_text(_toml(tmp_path))
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "robustxai.cli",
        "audit",
        str(cfg_path),
        "--profile",
        "smoke",
        "--out",
        str(out),
    ]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (out / LOCK_FILE).exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert proc.poll() is None, "the audit ended before the lock could be seen"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert not (out / LOCK_FILE).exists()
