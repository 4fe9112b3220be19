"""Hostile corpus: run directories (resumed runs with linked outputs, damaged stores, locks)."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable

import pytest
from _cases import PENDING_H1, Case, Workspace, params, run_case
from typer.testing import Result

LOCK = ".robustxai.lock"


def finished(
    then: Callable[[Workspace], list[str] | None], full_report: bool = False
) -> Callable[..., list[str]]:
    """A finished run in ``out/``, then ``then(ws)`` breaks it; the same audit is run again (resume)."""

    def build(ws: Workspace) -> list[str]:
        ws.run_first(full_report)
        return then(ws) or ws.audit_args()

    return build


def linked(sub: str) -> Callable[[Workspace], None]:
    """The run's ``sub`` folder replaced by a link to the user's sentinel folder."""

    def change(ws: Workspace) -> None:
        target = ws.out / sub
        if target.is_dir():
            for p in sorted(target.rglob("*"), reverse=True):
                p.unlink() if p.is_file() else p.rmdir()
            target.rmdir()
        target.symlink_to(ws.sentinel / "figures", target_is_directory=True)

    return change


def store_bytes(make: Callable[[bytes], bytes]) -> Callable[[Workspace], None]:
    def change(ws: Workspace) -> None:
        path = ws.out / "results.sqlite"
        path.write_bytes(make(path.read_bytes()))

    return change


def store_sql(sql: str) -> Callable[[Workspace], None]:
    def change(ws: Workspace) -> None:
        con = sqlite3.connect(ws.out / "results.sqlite")
        con.executescript(sql)
        con.close()

    return change


def lock(owner: dict[str, object] | str, hold: bool = False) -> Callable[[Workspace], None]:
    """A lock file in the run directory; owner values ``PID``, ``HOST``, ``DEAD`` are filled in.

    ``hold``: this process also holds the file's advisory lock meanwhile (a live writer).
    """

    def change(ws: Workspace) -> None:
        if isinstance(owner, str):
            text = owner
        else:
            fill = {"PID": os.getpid(), "HOST": socket.gethostname(), "DEAD": dead_pid()}
            text = json.dumps({k: fill.get(v, v) if isinstance(v, str) else v for k, v in owner.items()})
        (ws.out / LOCK).write_text(text)
        if hold:
            fd = os.open(ws.out / LOCK, os.O_RDWR)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            ws.cfg["_held"] = fd  # never written: the case's config was written before this change

    return change


def dead_pid() -> int:
    """The pid of a process that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def release(ws: Workspace, result: Result) -> None:
    fd = ws.cfg.pop("_held", None)
    if isinstance(fd, int):
        os.close(fd)


def report_of(ws: Workspace) -> list[str]:
    return ["report", str(ws.out)]


def resume(change: Callable[[Workspace], None], *extra: str) -> Callable[[Workspace], list[str]]:
    def then(ws: Workspace) -> list[str]:
        change(ws)
        return ["audit", str(ws.config), "--profile", "smoke", "--out", str(ws.out), *extra]

    return then


def then_report(change: Callable[[Workspace], None]) -> Callable[[Workspace], list[str]]:
    def then(ws: Workspace) -> list[str]:
        change(ws)
        return report_of(ws)

    return then


def seed_changed(ws: Workspace) -> list[str]:
    ws.cfg["seed"] = 7
    return ws.audit_args()


RUN_CASES = [
    Case("run-resume-changed-config", finished(seed_changed), "error", "different config (seed: 0 → 7)"),
    Case(
        "run-symlinked-figures",
        finished(resume(linked("figures")), True),
        "error",
        "symbolic link",
        PENDING_H1,
        full_report=True,
    ),
    Case(
        "run-symlinked-tables",
        finished(resume(linked("tables")), True),
        "error",
        "symbolic link",
        PENDING_H1,
        full_report=True,
    ),
    Case(
        "run-symlinked-adv", finished(resume(linked("adv"), "--fresh")), "error", "symbolic link", PENDING_H1
    ),
    Case(
        "run-store-truncated",
        finished(resume(store_bytes(lambda b: b[:1000]))),
        "error",
        "--fresh",
        PENDING_H1,
    ),
    Case(
        "run-store-not-sqlite",
        finished(resume(store_bytes(lambda b: b"not a database" * 100))),
        "error",
        "--fresh",
        PENDING_H1,
    ),
    Case("run-store-zero-byte", finished(resume(store_bytes(lambda b: b""))), "error", "--fresh", PENDING_H1),
    Case(
        "run-store-foreign-db",
        finished(resume(store_sql("DROP TABLE meta;"))),
        "error",
        "--fresh",
        PENDING_H1,
    ),
    Case("run-store-damaged-fresh", finished(resume(store_bytes(lambda b: b[:1000]), "--fresh")), "ok"),
    Case(
        "run-report-damaged-store",
        finished(then_report(store_bytes(lambda b: b"garbage" * 300))),
        "error",
        "results.sqlite",
    ),
    Case(
        "run-lock-held",
        finished(resume(lock({"pid": "PID", "host": "HOST"}, hold=True))),
        "error",
        "in use by another audit",
        PENDING_H1,
        release,
    ),
    Case(
        "run-lock-live-pid",
        finished(resume(lock({"pid": 1, "host": "HOST"}))),
        "error",
        "in use by another audit",
        PENDING_H1,
    ),
    Case(
        "run-lock-other-host",
        finished(resume(lock({"pid": 1, "host": "elsewhere.invalid"}))),
        "error",
        "on another host",
        PENDING_H1,
    ),
    Case("run-lock-garbage", finished(resume(lock("\x00not json"))), "error", "unreadable", PENDING_H1),
    Case(
        "run-lock-stale",
        finished(resume(lock({"pid": "DEAD", "host": "HOST"}))),
        "warn",
        "took over the run lock",
        PENDING_H1,
    ),
]


@pytest.mark.parametrize("case", params(RUN_CASES))
def test_run_directories(case: Case, ws: Workspace, caplog: pytest.LogCaptureFixture) -> None:
    run_case(case, ws, caplog)
