"""The timing cache measures again what was measured under other conditions (load, threads, age).

The machine's load average and clock are faked (monkeypatched ``os.getloadavg`` / ``time.time``), so these
tests do not depend on what else runs here.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from robustxai.audit import load_config
from robustxai.audit._estimate import estimate_audit
from robustxai.audit._estimate_text import plan_lines
from robustxai.audit._timing import TimingCache

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = (
    "tests internals of robustxai.audit._estimate, robustxai.audit._estimate_text, robustxai.audit._timing"
)

HOUR = 3600.0


class Machine:
    """A fake load average (per core, on 2 cores) and clock."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, load: float, at: float = 1.0e9) -> None:
        self.load, self.at = load, at
        monkeypatch.setattr(os, "cpu_count", lambda: 2)
        monkeypatch.setattr(os, "getloadavg", lambda: (2 * self.load, 0.0, 0.0))
        monkeypatch.setattr(time, "time", lambda: self.at)


@dataclass(frozen=True)
class Took:
    seconds: float


def _get(cache: TimingCache, seconds: float = 1.0) -> Took:
    return cache.remember({}, "k", Took, lambda: Took(seconds))


def test_a_timing_measured_under_load_is_measured_again_when_the_load_has_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    machine = Machine(monkeypatch, load=4.1)
    assert _get(TimingCache(tmp_path), 9.0) == Took(9.0)  # measured under load: slow
    machine.load, machine.at = 0.3, machine.at + HOUR
    cache = TimingCache(tmp_path)
    assert _get(cache, 1.0) == Took(1.0)  # measured again, not the loaded 9 s
    assert cache.measured == 1
    assert cache.remeasured_text() == "1 re-measured: measured under load 4.10/core, now 0.30"
    again = TimingCache(tmp_path)
    assert _get(again, 5.0) == Took(1.0) and again.measured == 0  # the idle time is kept now


@pytest.mark.parametrize(
    ("load", "later", "kept"),
    [
        (1.0, 1.4, True),  # within 0.5 per core
        (1.0, 1.6, False),  # the load grew: the idle time would under-predict
        (1.0, 0.4, False),
        (4.0, 0.2, True),  # five minutes later: the plan's own passes raised the load, keep it
    ],
)
def test_the_load_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, load, later, kept) -> None:
    machine = Machine(monkeypatch, load=load)
    _get(TimingCache(tmp_path))
    machine.load = later
    machine.at += 300.0 if load == 4.0 else HOUR
    cache = TimingCache(tmp_path)
    _get(cache)
    assert cache.measured == (0 if kept else 1)
    assert (cache.remeasured_text() == "") == kept


def test_an_old_timing_and_one_dated_in_the_future_are_measured_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    machine = Machine(monkeypatch, load=0.2)
    _get(TimingCache(tmp_path))
    machine.at += 29 * 24 * HOUR
    kept = TimingCache(tmp_path)
    _get(kept)
    assert kept.measured == 0
    machine.at += 2 * 24 * HOUR  # 31 days after it was measured
    old = TimingCache(tmp_path)
    _get(old)
    assert old.measured == 1 and "measured over 30 days ago" in old.remeasured_text()
    machine.at -= 365 * 24 * HOUR  # the clock went back a year: a timing from the future
    future = TimingCache(tmp_path)
    _get(future)
    assert future.measured == 1


def test_a_timing_cached_before_conditions_were_recorded_or_at_other_threads_is_measured_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Machine(monkeypatch, load=0.2)
    _get(TimingCache(tmp_path))
    (path,) = (tmp_path / "timing").glob("*.json")
    stored = json.loads(path.read_text())
    assert set(stored["conditions"]) == {"load", "threads", "at"}
    path.write_text(json.dumps({"seconds": 1.0}))  # the format before conditions were recorded
    legacy = TimingCache(tmp_path)
    _get(legacy)
    assert legacy.remeasured_text() == "1 re-measured: cached before the load was recorded"
    stored["conditions"]["threads"] += 7
    path.write_text(json.dumps(stored))
    threads = TimingCache(tmp_path)
    _get(threads)
    assert threads.measured == 1 and "threads, now" in threads.remeasured_text()


@pytest.mark.parametrize(
    "conditions",
    [
        '"x"',
        "[]",
        '{"load": "high", "threads": 1, "at": 1}',
        '{"load": 0.1, "threads": 0, "at": 1}',
        '{"load": -1, "threads": 1, "at": 1}',
        '{"load": 0.1, "threads": 1, "at": NaN}',
        '{"load": 0.1}',
        # hostile: integers no float holds (an OverflowError, not a ValueError, once subtracted), absurd sizes
        '{"load": 0.1, "threads": 1, "at": 1' + "0" * 400 + "}",
        '{"load": 1' + "0" * 400 + ', "threads": 1, "at": 1}',
        '{"load": 1e7, "threads": 1, "at": 1}',
        '{"load": 0.1, "threads": 1' + "0" * 30 + ', "at": 1}',
    ],
)
def test_damaged_conditions_are_a_damaged_file_measured_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, conditions: str
) -> None:
    Machine(monkeypatch, load=0.2)
    _get(TimingCache(tmp_path))
    (path,) = (tmp_path / "timing").glob("*.json")
    path.write_text('{"seconds": 1.0, "conditions": ' + conditions + "}")
    cache = TimingCache(tmp_path)
    with caplog.at_level(logging.WARNING):
        assert _get(cache, 2.0) == Took(2.0)
    assert cache.measured == 1 and cache.remeasured == []  # damaged, not stale: warned as before
    assert "ignoring unreadable timing cache" in caplog.text


def test_the_plan_header_says_how_many_were_measured_again_and_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The defect: times measured under load priced every later plan, on an idle machine too."""
    path = tmp_path / "small.toml"
    path.write_text(
        f'cache_dir = "{tmp_path / "cache"}"\n'
        "[data]\nn_train = 40\nn_test = 8\nsize = 16\n"
        '[[models]]\nname = "m"\narch = "smallcnn"\narch_kwargs = { widths = [4, 4, 4, 4] }\n'
        "[training]\nepochs = 1\n[explain]\nn_images = 2\nbatch_size = 2\n"
        "[manipulation]\nn_images = 2\niterations = 2\nbatch_size = 2\n"
        'methods = ["saliency"]\ntransfer_from = []\n'
    )
    cfg = load_config(path, profile="smoke")
    machine = Machine(monkeypatch, load=4.1)
    first = estimate_audit(cfg)
    assert first.measured >= 2  # pass times and manipulation steps
    machine.load, machine.at = 0.3, machine.at + HOUR
    timing = TimingCache(Path(str(cfg.cache_dir)))
    second = estimate_audit(cfg, timing=timing)
    assert timing.measured == first.measured  # every loaded timing measured again
    header = plan_lines(second)[0]
    n = first.measured
    assert f"{n} new measurements ({n} re-measured: measured under load 4.10/core, now 0.30)" in header
    assert "load 0.30/core" in header
