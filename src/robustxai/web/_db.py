"""The studio's own SQLite file (``studio.sqlite`` next to the run): studies, raters, items and answers.

Every write is one transaction in WAL mode with ``synchronous=FULL``, so a SIGKILL of the server loses at
most the answer being submitted. The file is opened per call (SQLite connections are cheap), so the CLI can
add a study while the server runs and the server sees it at once.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import NotRequired, TypedDict

from robustxai._types import JsonValue


class StudyRecord(TypedDict):
    """One study as the admin's list shows it."""

    study_id: str
    created_at: float
    settings: JsonValue
    n_items: int
    n_raters: int
    n_answers: int
    links: NotRequired[list[str]]  # the raters' links, added by the admin's page


class Rater(TypedDict):
    """One rater: their study, number, item order (item numbers) and answers so far (item number → value)."""

    token: str
    study_id: str
    rater_no: int
    order: list[int]
    answers: dict[int, int]


class StudyItem(TypedDict):
    """One item of a study: ``likert`` (one map) or ``pair`` (two), each map a stored map's identity."""

    item_no: int
    kind: str
    sample_id: str
    map_a: dict[str, JsonValue]
    map_b: dict[str, JsonValue] | None


STUDIO_FILE = "studio.sqlite"

SCHEMA = """
CREATE TABLE IF NOT EXISTS studies(study_id TEXT PRIMARY KEY, created_at REAL, settings TEXT);
CREATE TABLE IF NOT EXISTS items(study_id TEXT, item_no INTEGER, kind TEXT, sample_id TEXT, map_a TEXT,
    map_b TEXT, PRIMARY KEY(study_id, item_no));
CREATE TABLE IF NOT EXISTS raters(token TEXT PRIMARY KEY, study_id TEXT, rater_no INTEGER, item_order TEXT);
CREATE TABLE IF NOT EXISTS answers(token TEXT, item_no INTEGER, value INTEGER, answered_at REAL,
    PRIMARY KEY(token, item_no));
"""


class StudioDB:
    """Access to one ``studio.sqlite``.

    Args:
        folder: The run directory the file lives in (created there on first use).
    """

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / STUDIO_FILE
        with self._conn() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(SCHEMA)

    @contextmanager
    def _conn(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(str(self.path), timeout=30)
        conn.execute("PRAGMA synchronous=FULL")
        try:
            with conn:  # one transaction: committed on success, rolled back on error
                yield conn
        finally:
            conn.close()

    def add_study(
        self,
        study_id: str,
        settings: Mapping[str, object],
        items: list[tuple[str, str, str, str | None]],
        raters: list[tuple[str, list[int]]],
    ) -> None:
        """Write a study (items ``(kind, sample_id, map_a, map_b)``, raters ``(token, order)``) at once."""
        with self._conn() as conn:
            conn.execute("INSERT INTO studies VALUES (?,?,?)", (study_id, time.time(), json.dumps(settings)))
            conn.executemany(
                "INSERT INTO items VALUES (?,?,?,?,?,?)",
                [(study_id, i, *item) for i, item in enumerate(items)],
            )
            conn.executemany(
                "INSERT INTO raters VALUES (?,?,?,?)",
                [(tok, study_id, n, json.dumps(order)) for n, (tok, order) in enumerate(raters)],
            )

    def studies(self) -> list[StudyRecord]:
        """Every study with its settings, item and rater counts and answers so far."""
        with self._conn() as conn:
            rows = conn.execute(
                "SELECT s.study_id, s.created_at, s.settings, "
                "(SELECT COUNT(*) FROM items i WHERE i.study_id = s.study_id), "
                "(SELECT COUNT(*) FROM raters r WHERE r.study_id = s.study_id), "
                "(SELECT COUNT(*) FROM answers a JOIN raters r ON a.token = r.token "
                " WHERE r.study_id = s.study_id) FROM studies s ORDER BY s.created_at"
            ).fetchall()
        return [
            {
                "study_id": s,
                "created_at": t,
                "settings": json.loads(js),
                "n_items": ni,
                "n_raters": nr,
                "n_answers": na,
            }
            for s, t, js, ni, nr, na in rows
        ]

    def rater(self, token: str) -> Rater | None:
        """The rater of ``token`` (study, number, item order, answers so far) or ``None``."""
        with self._conn() as conn:
            row = conn.execute(
                "SELECT study_id, rater_no, item_order FROM raters WHERE token = ?", (token,)
            ).fetchone()
            if row is None:
                return None
            answers = dict(conn.execute("SELECT item_no, value FROM answers WHERE token = ?", (token,)))
        return {
            "token": token,
            "study_id": row[0],
            "rater_no": row[1],
            "order": json.loads(row[2]),
            "answers": answers,
        }

    def item(self, study_id: str, item_no: int) -> StudyItem | None:
        """One item of a study (its hidden identifiers included) or ``None``."""
        with self._conn() as conn:
            row = conn.execute(
                "SELECT kind, sample_id, map_a, map_b FROM items WHERE study_id = ? AND item_no = ?",
                (study_id, item_no),
            ).fetchone()
        if row is None:
            return None
        return {
            "item_no": item_no,
            "kind": row[0],
            "sample_id": row[1],
            "map_a": json.loads(row[2]),
            "map_b": json.loads(row[3]) if row[3] else None,
        }

    def save_answer(self, token: str, item_no: int, value: int) -> None:
        """Record (or replace) one answer, in its own transaction."""
        with self._conn() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO answers VALUES (?,?,?,?)", (token, item_no, value, time.time())
            )

    def study_rows(self, study_id: str) -> tuple[list[StudyItem], list[tuple[int, int, int]]]:
        """A study's items and its answers as ``(rater_no, item_no, value)``."""
        with self._conn() as conn:
            nos = [r[0] for r in conn.execute("SELECT item_no FROM items WHERE study_id = ?", (study_id,))]
            answers = conn.execute(
                "SELECT r.rater_no, a.item_no, a.value FROM answers a JOIN raters r ON a.token = r.token "
                "WHERE r.study_id = ? ORDER BY r.rater_no, a.item_no",
                (study_id,),
            ).fetchall()
        items = [it for it in (self.item(study_id, n) for n in nos) if it is not None]
        return items, [(int(a), int(b), int(c)) for a, b, c in answers]

    def rater_tokens(self, study_id: str) -> list[str]:
        """The raters' tokens of a study, in rater order (the admin hands them out)."""
        with self._conn() as conn:
            rows = conn.execute("SELECT token FROM raters WHERE study_id = ? ORDER BY rater_no", (study_id,))
            return [r[0] for r in rows]
