"""Fixtures of the hostile-input corpus (the harness itself is in ``_cases.py``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from _cases import CLASSES, SPLITS, Workspace, base_config

import robustxai as rx
from robustxai.data import SyntheticFracture
from robustxai.data._folder import write_folder

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = "tests internals of robustxai.data._folder"


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Data folder and saved model, built once and copied into each case's workspace."""
    root = tmp_path_factory.mktemp("hostile_template")
    write_folder(SyntheticFracture(8, size=16, seed=1), root / "data", split=SPLITS)
    torch.manual_seed(0)
    model = rx.create_model("smallcnn", widths=(4, 8, 8, 8), class_names=CLASSES)
    rx.save_model(model, root / "ckpt")
    sentinel = root / "sentinel"
    (sentinel / "figures").mkdir(parents=True)
    (sentinel / "figures" / "mine.png").write_bytes(b"\x89PNG not really")
    (sentinel / "config.toml").write_text('name = "my own notes"\n')
    (sentinel / "notes.txt").write_text("a user's file that no audit may touch\n")
    return root


@pytest.fixture
def ws(template: Path, tmp_path: Path) -> Workspace:
    """A fresh workspace for one case."""
    for name in ("data", "ckpt", "sentinel"):
        shutil.copytree(template / name, tmp_path / name, symlinks=True)
    space = Workspace(tmp_path)
    space.cfg = base_config(space)
    return space


@pytest.fixture(autouse=True)
def _one_thread(one_thread: None) -> None:
    """Every hostile case runs on one thread (the root conftest's ``one_thread``)."""
