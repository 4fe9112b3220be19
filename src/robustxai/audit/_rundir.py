"""Run directories: what makes a folder a robustxai run, and the rules that keep a user's files safe.

A folder is a run only if it holds robustxai's own marker: a ``results.sqlite`` store with its format row
(:func:`robustxai.results._store.store_problem`). No other file name counts — a user's folder may well hold a
``config.toml``, ``tables/`` or ``figures/`` of its own. The rules:

- A non-empty folder that is not a run is refused, even with ``--fresh``: nothing in it is touched.
- A damaged store (truncated, not a database) is refused with its file named; ``--fresh`` replaces it only
  where the folder holds nothing but robustxai's outputs, so a store is never deleted without that word.
- Nothing robustxai writes may leave the run directory: an output path inside it that is a symbolic link
  (``figures/``, ``tables/``, ``adv/``, the store, ``report.html`` …, or any file below those folders) is
  refused, never followed and never deleted. The run directory itself may be a link (``runs -> /scratch``):
  the user chose that path.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from robustxai._errors import ConfigError, RobustXAIError
from robustxai._types import JsonValue
from robustxai.audit._config import AuditConfig
from robustxai.audit._config_errors import field_default
from robustxai.audit._plan import ADV_DIR
from robustxai.audit._runlock import LOCK_FILE
from robustxai.results._layout import refuse_link, refuse_symlinks
from robustxai.results._store import STORE_FILE, Store, store_problem

#: Every name robustxai writes directly inside a run directory.
RUN_OUTPUTS = (
    STORE_FILE,
    f"{STORE_FILE}-wal",
    f"{STORE_FILE}-shm",
    f"{STORE_FILE}-journal",
    "config.toml",
    "report.html",
    "tables",
    "figures",
    ADV_DIR,
    "export",
    LOCK_FILE,
)
#: Config keys that never change results: a run may resume with other values.
RESUME_NEUTRAL_KEYS = ("cache_dir", "executor")

RunState = Literal["absent", "empty", "run", "damaged", "foreign"]


def run_state(run_dir: Path) -> tuple[RunState, str]:
    """Classify ``run_dir`` without changing it; the second value says why a store is damaged.

    Raises:
        ConfigError: If ``run_dir`` exists and is not a directory, or is a dangling link.
    """
    if run_dir.is_symlink() and not run_dir.exists():
        raise ConfigError(
            f"run directory {run_dir} is a link to {os.readlink(run_dir)}, which does not exist"
        )
    if not run_dir.exists():
        return "absent", ""
    if not run_dir.is_dir():
        raise ConfigError(f"run directory {run_dir} exists and is not a directory")
    if not [p for p in run_dir.iterdir() if p.name != LOCK_FILE]:
        return "empty", ""
    store = run_dir / STORE_FILE
    refuse_link(store)
    if not store.is_file():
        return "foreign", ""
    problem = store_problem(store)
    return ("damaged", problem) if problem else ("run", "")


def refuse_foreign(run_dir: Path, fresh: bool) -> RunState:
    """Refuse a folder robustxai may not write to (before anything, even a lock file, is written there).

    Raises:
        ConfigError: For a non-empty folder that is not a run, or a damaged store (``--fresh`` replaces a
            damaged store only in a folder that holds nothing but robustxai's outputs).
    """
    state, problem = run_state(run_dir)
    if state == "foreign":
        raise ConfigError(
            f"run directory {run_dir} is not empty and holds no earlier robustxai run (no {STORE_FILE} "
            "written by robustxai); nothing in it was changed: choose another --out"
        )
    if state == "damaged":
        store = run_dir / STORE_FILE
        if not fresh:
            raise ConfigError(
                f"the run store {store} is damaged or not a robustxai store ({problem}); nothing was "
                "deleted: run again with --fresh to replace this run, or choose another --out"
            )
        others = sorted(p.name for p in run_dir.iterdir() if p.name not in RUN_OUTPUTS)
        if others:
            raise ConfigError(
                f"{store} is not a readable robustxai store ({problem}) and {run_dir} holds other files "
                f"({', '.join(others[:3])}): it may not be a robustxai run, so nothing was replaced; "
                "choose another --out"
            )
    return state


def _results_config(resolved: Mapping[str, object]) -> dict[str, object]:
    """The part of a resolved config that determines the results (what a resume must match)."""
    return {k: v for k, v in resolved.items() if k not in RESUME_NEUTRAL_KEYS}


def _flatten(value: object, prefix: str = "") -> dict[str, object]:
    if isinstance(value, dict):
        out: dict[str, object] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        out = {}
        for i, v in enumerate(value):
            out.update(_flatten(v, f"{prefix}[{i}]"))
        return out
    return {prefix: value}


def config_differences(old: Mapping[str, object], new: Mapping[str, object], limit: int = 8) -> list[str]:
    """Dotted keys whose values differ between two resolved configs, as ``key: old → new`` (at most limit)."""
    # Compare as stored (JSON): tuples and lists, or ints and floats that JSON merges, are not differences.
    stored_old, stored_new = (json.loads(json.dumps(c, sort_keys=True, default=str)) for c in (old, new))
    a, b = _flatten(_results_config(stored_old)), _flatten(_results_config(stored_new))
    missing = object()
    diffs = [
        f"{k}: {a.get(k, '(unset)')!r} → {b.get(k, '(unset)')!r}"
        for k in sorted(set(a) | set(b))
        if a.get(k, missing) != b.get(k, missing) and not (k not in a and _is_default(k, b[k]))
    ]
    return diffs[:limit] + ([f"… and {len(diffs) - limit} more"] if len(diffs) > limit else [])


def _is_default(key: str, value: object) -> bool:
    """Whether ``value`` is the default of the setting ``key`` (as stored: JSON).

    Why: a run recorded before a setting existed (an update added ``data.max_pixels``) lacks its key; the
    new setting at its default changes nothing, so it must not make the run "a different config".
    """
    known, default = field_default(AuditConfig, key)
    if not known:
        return False
    if isinstance(default, BaseModel):
        default = default.model_dump()
    return bool(json.loads(json.dumps(default, sort_keys=True, default=str)) == value)


def _stored_config(run_dir: Path) -> dict[str, JsonValue] | None:
    """The resolved config recorded in an intact store (``None``: the run stopped before recording it).

    Raises:
        ConfigError: If the store cannot be read (never taken to mean "no earlier run": nothing is deleted).
    """
    try:
        with Store(run_dir / STORE_FILE, readonly=True) as store:
            value = store.get_meta("config")
    except (sqlite3.Error, ValueError) as err:
        raise ConfigError(
            f"cannot read the run store {run_dir / STORE_FILE} ({type(err).__name__}: {err}); nothing was "
            "deleted: run again with --fresh to replace this run, or choose another --out"
        ) from None
    return value if isinstance(value, dict) else None


def _refuse_shared_store(store: Path) -> None:
    """Refuse to resume into a store that has other hard links: SQLite writes in place, so every name changes.

    Raises:
        RobustXAIError: Naming the store and how many names it has.
    """
    links = store.stat().st_nlink
    if links > 1:
        raise RobustXAIError(
            f"{store} has {links} hard links (names); resuming would change the file under every name, some "
            "perhaps outside the run: copy the run (cp, not a hard link) or run again with --fresh"
        )


def _clear_outputs(run_dir: Path) -> None:
    """Delete a run's outputs; only called once the folder is known to be a run and holds no links."""
    for name in RUN_OUTPUTS:
        path = run_dir / name
        if name in (LOCK_FILE, "export"):
            continue
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def prepare_run_dir(run_dir: Path, resolved: Mapping[str, object], fresh: bool = False) -> bool:
    """Create or reopen a run directory; return whether an earlier run of the same config is resumed.

    Call it holding the run's lock (:class:`robustxai.audit._runlock.RunLock`). A folder that is not a run is
    refused (:func:`refuse_foreign`); links among the outputs are refused before anything is deleted. An
    earlier run of another config is refused with the keys that differ, unless ``fresh``, which replaces its
    outputs. The new or reopened store carries robustxai's marker from here on, so a run stopped at any later
    point is recognised as one.

    Raises:
        ConfigError: For a foreign directory, a damaged store or an incompatible earlier run.
        RobustXAIError: For a symbolic link among the outputs.
    """
    state = refuse_foreign(run_dir, fresh)
    refuse_symlinks(run_dir, RUN_OUTPUTS)
    if state == "run" and not fresh:
        _refuse_shared_store(run_dir / STORE_FILE)
    stored = _stored_config(run_dir) if state == "run" and not fresh else None
    if stored is not None:
        diffs = config_differences(stored, resolved)
        if diffs:
            raise ConfigError(
                f"run directory {run_dir} holds a run of a different config ({'; '.join(diffs)}); "
                "use a new --out, or --fresh to replace it"
            )
    elif state in ("run", "damaged"):
        _clear_outputs(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    Store(run_dir / STORE_FILE).close()  # the marker first: from now on the folder is a run
    for sub in ("tables", "figures"):  # the report is rebuilt from the store at the end
        if (run_dir / sub).is_dir():
            shutil.rmtree(run_dir / sub)
    (run_dir / "report.html").unlink(missing_ok=True)
    return stored is not None
