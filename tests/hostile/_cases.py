"""Harness of the hostile-input corpus: a workspace per case, the CLI run in-process, outcome checks.

Every case builds a small workspace (a data folder of 8 images of 16 px with a manifest and ground truth, a
saved tiny model, a config, and a ``sentinel/`` folder of a user's own files), breaks one thing, runs the
CLI and asserts the outcome class:

* ``error``: exit status 2 from the CLI's error handler, no traceback, and exactly one ``error:`` line, the
  last one printed, holding the expected text;
* ``usage``: a command-line usage error from click (exit status 2, no traceback);
* ``warn``: the run completes (report written) and a warning holding the expected text was printed or logged;
* ``either``: one of ``error`` and ``warn`` (a bad image of the test set may stop the run with one line naming
  it, or be left out with a warning naming it: both are the issue's accepted outcomes);
* ``partial``: one model cannot be audited (NaN weights): the others complete, the report is written, the
  failed model is named, and the exit status is 1;
* ``ok``: the input is valid after all (16-bit PNG, RGBA …) and the run completes.

For every case, every file of the workspace outside ``--out`` (and the model/data cache) is hashed with its
mtime before and after: nothing outside the run directory may change.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import struct
import threading
import time
import zlib
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from typer.testing import CliRunner, Result

from robustxai import _pipeline as pipeline_module  # where the audit is chained to build_report
from robustxai.audit._config_toml import dump_toml
from robustxai.cli import app

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = "tests internals of robustxai._pipeline, robustxai.audit._config_toml"

SPLITS = ["train", "test"] * 4
TARGET = "fracture/synth-1-000003.png"
CLASSES = ["normal", "fracture"]
OUTCOMES = ("error", "usage", "warn", "either", "partial", "ok")
PENDING_H1 = None  # h1 merged into main


@dataclass
class Case:
    """One hostile input: how to build it, and the outcome class it must end in.

    Attributes:
        id: Unique name (the pytest id).
        build: Breaks the workspace; returns the CLI arguments (``None``: audit the workspace's config).
        outcome: One of :data:`OUTCOMES`.
        expect: Text that the error line (``error``), the output (``usage``) or a warning (``warn``) holds.
        pending: Reason of a strict xfail while the fix is on another branch, or ``None``.
        check: Extra assertions on the workspace and the result after the run.
        full_report: Build the real HTML report (≈ 1 s); otherwise a stand-in writes ``report.html``, since
            the report is rebuilt from the store and sees no input file (DICOM cases keep the real one, to
            show that no identifier reaches it).
    """

    id: str
    build: Callable[[Workspace], list[str] | None]
    outcome: str
    expect: str = ""
    pending: str | None = None
    check: Callable[[Workspace, Result], None] | None = None
    full_report: bool = False


def params(cases: list[Case]) -> list[Any]:
    """Cases as pytest params: ids, and a strict xfail for those whose fix is pending elsewhere."""
    ids = [c.id for c in cases]
    assert len(set(ids)) == len(ids), "case ids must be unique"
    assert all(c.outcome in OUTCOMES for c in cases)
    marks = {c.id: [pytest.mark.xfail(strict=True, reason=c.pending)] if c.pending else [] for c in cases}
    return [pytest.param(c, id=c.id, marks=marks[c.id]) for c in cases]


def base_config(ws: Workspace) -> dict[str, Any]:
    """The smallest audit that runs every stage cheaply (≈ 1 s): one checkpoint, FGSM, saliency."""
    return {
        "name": "hostile",
        "batch_size": 8,
        "cache_dir": str(ws.cache),
        "data": {"source": "folder", "path": str(ws.data), "size": 16},
        "models": [{"name": "m", "checkpoint": str(ws.ckpt)}],
        "attacks": [{"name": "fgsm", "epsilons": [0.01]}],
        "explain": {"methods": ["saliency"], "attacks": ["fgsm"], "n_images": 4},
        "report": {"primary_attack": "fgsm", "primary_epsilon": 0.01, "n_figure": 1},
        "sanity": {"enabled": False},
        "manipulation": {"methods": ["saliency"], "transfer_from": [], "models": [], "iterations": 1},
    }


@dataclass
class Workspace:
    """One case's folder: data/, ckpt/, c.toml, sentinel/ (inputs); out/ and cache/ (the run's)."""

    root: Path
    cfg: dict[str, Any] = field(default_factory=dict)
    max_seconds: float | None = None  # a case that could block (a FIFO) must end sooner than this

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def ckpt(self) -> Path:
        return self.root / "ckpt"

    @property
    def out(self) -> Path:
        return self.root / "out"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def sentinel(self) -> Path:
        return self.root / "sentinel"

    @property
    def config(self) -> Path:
        return self.root / "c.toml"

    def write_config(self, cfg: dict[str, Any] | None = None) -> Path:
        """Write ``cfg`` (default: the workspace's, as changed by the case) to ``c.toml``."""
        self.config.write_text(dump_toml(cfg if cfg is not None else self.cfg), encoding="utf-8")
        return self.config

    def audit_args(self, *extra: str) -> list[str]:
        """``audit c.toml --profile smoke --out out`` (the config is written first)."""
        self.write_config()
        return ["audit", str(self.config), "--profile", "smoke", "--out", str(self.out), *extra]

    def rows(self) -> list[list[str]]:
        """The manifest's rows (without the header), as cells."""
        return [r.split(",") for r in (self.data / "manifest.csv").read_text().splitlines()[1:]]

    def write_rows(self, rows: list[list[str]], header: str = "path,label,split") -> None:
        """Replace the manifest by ``header`` and ``rows``."""
        text = "\n".join([header, *(",".join(r) for r in rows)]) + "\n"
        (self.data / "manifest.csv").write_text(text, encoding="utf-8")

    @property
    def target(self) -> str:
        """A test image with a mask and expert points (the one most cases break)."""
        return TARGET

    def annotations(self) -> dict[str, Any]:
        """The data folder's ``annotations.json``."""
        doc: dict[str, Any] = json.loads((self.data / "annotations.json").read_text())
        return doc

    def write_annotations(self, doc: Any, name: str = "annotations.json") -> Path:
        """Write ``doc`` as JSON into the data folder."""
        path = self.data / name
        path.write_text(json.dumps(doc), encoding="utf-8")
        return path

    def run_first(self, full_report: bool = False) -> None:
        """Run the workspace's audit once (a finished run in ``out/`` for the run-directory cases)."""
        with ExitStack() as stack:
            if not full_report:
                stack.enter_context(mock.patch.object(pipeline_module, "build_report", stand_in_report))
            result = CliRunner().invoke(app, self.audit_args())
        assert result.exit_code == 0, result.output


def snapshot(root: Path, skip: tuple[Path, ...]) -> dict[str, tuple[str, int]]:
    """Path → (sha256, mtime_ns) of every file under ``root`` outside ``skip`` (links: their target)."""
    found: dict[str, tuple[str, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if here / d not in skip]
        for name in filenames:
            p = here / name
            if p.is_symlink():
                found[str(p)] = (f"link:{os.readlink(p)}", 0)
            elif p.is_file():
                found[str(p)] = (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            else:
                found[str(p)] = ("special", 0)
        for d in dirnames:
            if (here / d).is_symlink():
                found[str(here / d)] = (f"link:{os.readlink(here / d)}", 0)
    return found


def flat(text: str) -> str:
    """Whitespace collapsed, so lines wrapped by the console still match."""
    return " ".join(text.split())


def check_outcome(case: Case, result: Result, logged: str, ws: Workspace) -> None:
    """Assert the outcome class of ``case`` (see the module docstring)."""
    out = result.output
    exc = result.exception
    shown = f"exit {result.exit_code}, {type(exc).__name__}: {exc}\n{out}\n{logged}"
    assert exc is None or isinstance(exc, SystemExit), shown  # an exception escaped the CLI's handler
    assert "Traceback" not in out, shown
    if case.outcome == "either":
        outcome = "error" if result.exit_code == 2 else "warn"
        check_outcome(Case(case.id, case.build, outcome, case.expect), result, logged, ws)
        return
    if case.outcome == "error":
        assert result.exit_code == 2, shown
        lines = [line for line in out.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("error:")]
        assert len(errors) == 1 and lines[-1] == errors[0], shown  # one line, and nothing after it
        assert case.expect in errors[0], shown
    elif case.outcome == "usage":
        assert result.exit_code == 2, shown
        assert flat(case.expect) in flat(out), shown
    elif case.outcome == "partial":
        assert result.exit_code == 1 and (ws.out / "report.html").is_file(), shown
        assert flat(case.expect) in flat(out), shown
    else:
        assert result.exit_code == 0, shown
        assert (ws.out / "report.html").is_file(), shown
        if case.outcome == "warn":
            assert flat(case.expect) in flat(out + "\n" + logged), shown


def stand_in_report(run_dir: Path) -> Path:
    """Write a placeholder ``report.html`` into the run directory (the cheap stand-in of ``build_report``)."""
    path = Path(run_dir) / "report.html"
    path.write_text("<html>stand-in report of the hostile corpus</html>\n", encoding="utf-8")
    return path


def run_case(case: Case, ws: Workspace, caplog: pytest.LogCaptureFixture) -> None:
    """Build, snapshot, run the CLI in-process, check the outcome and that nothing outside --out changed."""
    argv = case.build(ws)
    if argv is None:
        argv = ws.audit_args()
    before = snapshot(ws.root, (ws.out, ws.cache))
    caplog.clear()
    start = time.monotonic()
    with caplog.at_level(logging.WARNING), ExitStack() as stack:
        if not case.full_report:
            stack.enter_context(mock.patch.object(pipeline_module, "build_report", stand_in_report))
        result = CliRunner().invoke(app, argv)
    seconds = time.monotonic() - start
    assert ws.max_seconds is None or seconds < ws.max_seconds, f"blocked for {seconds:.1f} s"
    logged = "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    check_outcome(case, result, logged, ws)
    if case.check is not None:
        case.check(ws, result)
    after = snapshot(ws.root, (ws.out, ws.cache))
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"files outside --out changed: {changed}"


def unblock_fifo_after(fifo: Path, seconds: float, until: float = 120.0) -> threading.Thread:
    """From ``seconds`` on, keep opening ``fifo`` for writing (and closing it), so a blocked reader gets EOF.

    Keeps a case that hangs on a FIFO from hanging the test run: each open that would block forever returns
    after about ``seconds`` instead, and the case fails (or xfails) on its outcome.
    """

    def release() -> None:
        time.sleep(seconds)
        end = time.monotonic() + until
        while time.monotonic() < end and os.path.exists(fifo):
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # nobody is reading right now
                pass
            else:
                os.close(fd)
            time.sleep(0.05)

    thread = threading.Thread(target=release, daemon=True)
    thread.start()
    return thread


def one_line(text: str) -> bool:
    """Whether ``text`` is a single non-empty line."""
    return bool(text.strip()) and not re.search(r"[\r\n]", text.strip())


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` × ``height`` 8-bit gray pixels and holds one empty IDAT chunk."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )
