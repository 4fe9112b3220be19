"""Regression tests (issue 13 follow-ups): trust from a config file, hard links, resume across updates, and
control characters in error lines.

- A config file may *ask* for ``trust_checkpoint`` / ``allow_download``; only the caller grants them
  (``--trust-checkpoint`` / ``run_audit(..., trust_checkpoint=True)``), and nothing saved in a run re-grants.
- Every output of the audit, ``report`` and ``export`` replaces its file (new file, then rename), so a planted
  hard link keeps its bytes: nothing outside the run changes.
- A run recorded before a setting existed resumes when the new setting has its default.
- An error that repeats user text with a newline or escape character is still one line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

import robustxai as rx
from robustxai import ConfigError, RobustXAIError
from robustxai._cli_errors import one_line
from robustxai._export import export_run
from robustxai._pipeline import run_audit
from robustxai.audit import AuditConfig, load_config, validate_config
from robustxai.audit._grants import Grants
from robustxai.audit._rundir import config_differences
from robustxai.audit._stages_models import build_untrained
from robustxai.cli import app
from robustxai.results import STORE_FILE, Store

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = (
    "tests internals of robustxai._cli_errors, robustxai._export, robustxai._pipeline, "
    "robustxai.audit._grants, robustxai.audit._rundir, robustxai.audit._stages_models"
)

runner = CliRunner()
CLASSES = ["normal", "fracture"]


class _Plant:
    """Pickles to ``open(path, "w")``: unpickling it with the full loader creates the file."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


def _evil(tmp: Path) -> tuple[Path, Path]:
    marker, evil = tmp / "pwned", tmp / "evil.pt"
    torch.save({"state_dict": _Plant(marker)}, evil)
    return evil, marker


def _benign(path: Path) -> Path:
    """A real-world full pickle: a state dict saved beside the training arguments (argparse.Namespace)."""
    net = rx.create_model("timm:resnet10t", random_init=True, num_classes=2).net
    torch.save({"state_dict": net.state_dict(), "args": argparse.Namespace(lr=0.1)}, path)
    return path


_COMMON = (
    'name = "trust"\nbatch_size = 4\n[data]\nn_train = 10\nn_test = 4\nsize = 32\nwrite_to_disk = false\n'
    '[[attacks]]\nname = "fgsm"\nepsilons = [0.0156]\n[explain]\nmethods = ["saliency"]\nn_images = 2\n'
    'batch_size = 2\nattacks = ["fgsm"]\n[report]\nn_figure = 1\nprimary_attack = "fgsm"\n'
    "[sanity]\nenabled = false\n[manipulation]\nmodels = []\n"
)


def _zoo_toml(tmp: Path, checkpoint: Path | None, **asks: bool) -> Path:
    kw = {"checkpoint": str(checkpoint)} if checkpoint else {}
    kw |= asks
    table = ", ".join(f"{k} = {json.dumps(v)}" for k, v in kw.items())
    path = tmp / "config.toml"
    path.write_text(
        _COMMON + f'[[models]]\nname = "colleague"\narch = "timm:resnet10t"\ntraining = "none"\n'
        f"arch_kwargs = {{ {table} }}\n"
    )
    return path


def _error_lines(result: Any) -> list[str]:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    return [line for line in result.output.splitlines() if line.strip()]


# -- 1. a config may ask for trust; only the caller grants it ------------------------------------------
def test_config_asking_for_trust_never_unpickles_without_the_flag(tmp_path: Path) -> None:
    evil, marker = _evil(tmp_path)
    config = _zoo_toml(tmp_path, evil, trust_checkpoint=True)
    result = runner.invoke(app, ["audit", str(config), "--profile", "smoke", "--out", str(tmp_path / "run")])
    assert not marker.exists(), "a config file made robustxai unpickle (and run) a planted checkpoint"
    (line,) = _error_lines(result)
    assert f"models[0].arch_kwargs.trust_checkpoint = true in {config}" in line
    assert "a config file cannot grant trust; pass --trust-checkpoint" in line and str(evil) in line
    assert not (tmp_path / "run").exists()


def test_config_asking_for_downloads_is_refused_without_the_flag(tmp_path: Path) -> None:
    config = _zoo_toml(tmp_path, None, allow_download=True)
    result = runner.invoke(app, ["audit", str(config), "--profile", "smoke", "--out", str(tmp_path / "run")])
    (line,) = _error_lines(result)
    assert "models[0].arch_kwargs.allow_download = true" in line and "pass --allow-download" in line


def test_python_caller_grants_trust_and_the_builder_never_takes_the_file_word(tmp_path: Path) -> None:
    evil, marker = _evil(tmp_path)
    cfg = load_config(_zoo_toml(tmp_path, evil, trust_checkpoint=True), profile="smoke")
    with pytest.raises(ConfigError, match=r"models\[0\]\.arch_kwargs\.trust_checkpoint = true"):
        run_audit(cfg, tmp_path / "run")
    with pytest.raises(ConfigError, match="cannot grant trust"):  # the stage itself, called directly
        build_untrained(cfg.models[0], CLASSES, 1)
    assert not marker.exists()
    good = load_config(_zoo_toml(tmp_path, _benign(tmp_path / "ok.pt"), trust_checkpoint=True), "smoke")
    model = build_untrained(good.models[0], CLASSES, 1, grants=Grants(trust_checkpoint=True))
    assert model.class_names == CLASSES
    odd = {"name": "x", "arch": "timm:resnet10t", "arch_kwargs": {"trust_checkpoint": "yes"}}
    with pytest.raises(ConfigError, match="must be true or false"):
        build_untrained(validate_config({"models": [odd]}).models[0], CLASSES, 1, grants=Grants(True))


def test_flag_grants_trust_and_the_saved_config_never_regrants(tmp_path: Path) -> None:
    weights = _benign(tmp_path / "colleague.pt")
    config = _zoo_toml(tmp_path, weights, trust_checkpoint=True)
    run = tmp_path / "run"
    args = ["audit", str(config), "--profile", "smoke", "--out", str(run)]
    result = runner.invoke(app, [*args, "--trust-checkpoint"])
    assert result.exit_code == 0, result.output
    saved = run / "config.toml"
    assert "trust_checkpoint = true" in saved.read_text()  # the ask is recorded …
    evil, marker = _evil(tmp_path)
    shutil.copyfile(evil, weights)  # … and the file behind it is swapped for a planted one
    for again in (args, ["audit", str(saved), "--profile", "smoke", "--out", str(run)]):
        result = runner.invoke(app, again)  # resume, from the user's config or the run's own copy
        (line,) = _error_lines(result)
        assert "cannot grant trust" in line
    assert not marker.exists()


def test_a_grant_nobody_asks_for_is_named(tmp_path: Path) -> None:
    from robustxai.audit._grants import check_grants

    cfg = load_config(_zoo_toml(tmp_path, _benign(tmp_path / "ok.pt")), "smoke")
    assert check_grants(cfg, Grants()) == []
    (warning,) = check_grants(cfg, Grants(trust_checkpoint=True))
    assert "--trust-checkpoint was given but no model" in warning


# -- 2. outputs replace their files: a planted hard link keeps its bytes ------------------------------------
def _checkpoint(folder: Path) -> str:
    torch.manual_seed(0)
    return str(rx.save_model(rx.create_model("smallcnn", widths=(4, 8, 8, 8), class_names=CLASSES), folder))


def _tiny(tmp: Path, **data: Any) -> AuditConfig:
    return load_config(
        profile="smoke",
        name="tiny",
        batch_size=4,
        data={"n_train": 10, "n_test": 8, "size": 32, "write_to_disk": False, **data},
        models=[{"name": "good", "checkpoint": _checkpoint(tmp / "ckpt")}],
        attacks=[{"name": "fgsm", "epsilons": [4 / 255]}],
        explain={"methods": ["saliency"], "n_images": 4, "batch_size": 2, "attacks": ["fgsm"]},
        report={"n_figure": 1, "primary_attack": "fgsm"},
        sanity={"enabled": False},
        manipulation={"models": []},
    )


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, AuditConfig]:
    tmp = tmp_path_factory.mktemp("finished")
    cfg = _tiny(tmp)
    run_audit(cfg, tmp / "run")
    return tmp / "run", cfg


def _plant_hard_link(run: Path, name: str, outside: Path) -> None:
    outside.write_bytes(b"a file of the user's, outside the run")
    (run / name).unlink()
    os.link(outside, run / name)


@pytest.mark.parametrize("name", ["tables/robustness.csv", "report.html", "figures/robustness.png"])
def test_report_never_writes_through_a_hard_link(
    finished: tuple[Path, AuditConfig], tmp_path: Path, name: str
) -> None:
    run = shutil.copytree(finished[0], tmp_path / "run")
    outside = tmp_path / "outside.bin"
    _plant_hard_link(run, name, outside)
    result = runner.invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output
    assert outside.read_bytes() == b"a file of the user's, outside the run"
    assert (run / name).stat().st_ino != outside.stat().st_ino and (run / name).stat().st_size > 100
    assert not list(run.rglob("*.tmp")), "a temporary file was left behind"


def test_resume_and_export_never_write_through_a_hard_link(
    finished: tuple[Path, AuditConfig], tmp_path: Path
) -> None:
    run = shutil.copytree(finished[0], tmp_path / "run")
    config_outside, export_outside = tmp_path / "config.keep", tmp_path / "export.keep"
    _plant_hard_link(run, "config.toml", config_outside)
    run_audit(finished[1], run)  # resumes: rewrites config.toml and the report
    export_run(run, format="csv")
    _plant_hard_link(run, "export/predictions.csv", export_outside)
    export_run(run, format="csv")
    for outside in (config_outside, export_outside):
        assert outside.read_bytes() == b"a file of the user's, outside the run"
    assert (run / "config.toml").read_text().startswith('name = "tiny"')


def test_resume_refuses_a_store_with_another_hard_link(
    finished: tuple[Path, AuditConfig], tmp_path: Path
) -> None:
    run = shutil.copytree(finished[0], tmp_path / "run")
    backup = tmp_path / "backup.sqlite"
    os.link(run / STORE_FILE, backup)  # e.g. a snapshot made with hard links (cp -al, rsync --link-dest)
    before = backup.read_bytes()
    with pytest.raises(RobustXAIError, match="has 2 hard links"):
        run_audit(finished[1], run)
    assert backup.read_bytes() == before
    run_audit(finished[1], run, fresh=True)  # --fresh unlinks the name in the run and starts a new store
    assert backup.read_bytes() == before


# -- 3. a run made before a setting existed resumes when the new setting has its default --------------------
def _drop_stored(run: Path, *keys: str) -> None:
    with Store(run / STORE_FILE) as store:
        config = store.get_meta("config")
        for key in keys:
            del config["data"][key]
        store.set_meta("config", config)


def test_resume_across_an_update_that_added_config_keys(
    finished: tuple[Path, AuditConfig], tmp_path: Path
) -> None:
    run = shutil.copytree(finished[0], tmp_path / "run")
    _drop_stored(run, "max_pixels", "allow_outside_root")  # as stored before those keys existed
    result = run_audit(finished[1], run)
    assert result.units_run == 0 and result.units_skipped > 0
    _drop_stored(run, "max_pixels", "allow_outside_root")
    data = finished[1].data.model_copy(update={"max_pixels": 5000})
    changed = finished[1].model_copy(update={"data": data})
    with pytest.raises(ConfigError, match=r"data\.max_pixels: '\(unset\)' → 5000"):
        run_audit(changed, run)


def test_config_differences_ignore_only_new_keys_at_their_default() -> None:
    new = validate_config({"models": [{"name": "m"}]}).model_dump()
    old = json.loads(json.dumps(new))
    del old["data"]["max_pixels"], old["sanity"], old["models"][0]["lr"]
    assert config_differences(old, new) == []
    new["models"][0]["lr"] = 0.1
    new["data"]["allow_outside_root"] = False
    del old["data"]["allow_outside_root"]
    assert config_differences(old, new) == [
        "data.allow_outside_root: '(unset)' → False",
        "models[0].lr: '(unset)' → 0.1",
    ]
    new["models"][0]["arch_kwargs"] = {"widths": [4, 8, 8, 8]}  # free-form: no default, always a difference
    assert "models[0].arch_kwargs.widths" in " ".join(config_differences(old, new))


# -- 4. control characters in user text never split the one-line error ---------------------------------------
@pytest.mark.parametrize("odd", ["two\nlines", "carriage\rreturn", "esc\x1b[2Jape", "sep\u2028arator"])
def test_error_repeating_user_text_is_one_line(tmp_path: Path, odd: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[data]\nsource = "folder"\npath = {json.dumps(str(tmp_path / odd))}\n')
    result = runner.invoke(app, ["audit", str(config), "--profile", "smoke", "--out", str(tmp_path / "r")])
    (line,) = _error_lines(result)
    assert one_line(odd) in line and "\x1b" not in line
    manifest = runner.invoke(app, ["report", str(tmp_path / odd)])
    (line,) = _error_lines(manifest)
    assert one_line(odd) in line


def test_one_line_escapes_controls_and_markup() -> None:
    assert one_line("a\nb\tc\x00d\x85e\u2029f") == "a\\nb\\tc\\x00d\\x85e\\u2029f"
    assert one_line("[/bold] µ ε ≥") == "\\[/bold] µ ε ≥"
