"""Progress: one task per model × stage with a measured ETA; plain, unwrapped lines when output is piped."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from robustxai._cli_progress import progress_display
from robustxai.audit._progress import LineProgress, ProgressTracker, UnitStages, format_seconds
from robustxai.cli import app

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = "tests internals of robustxai._cli_progress, robustxai.audit._progress"


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_eta_comes_from_measured_step_durations() -> None:
    clock = FakeClock()
    tracker = ProgressTracker(clock)
    task = tracker.start("explain m", 4)
    state = tracker.tasks[task]
    assert state.eta() is None and state.eta_text() == "ETA —"  # nothing measured yet
    clock.now += 10.0
    tracker.advance(task)
    assert state.eta() == pytest.approx(30.0)  # 10 s per unit × 3 left
    clock.now += 20.0
    tracker.advance(task)
    assert state.eta() == pytest.approx(30.0)  # mean 15 s × 2 left
    assert tracker.status(state) == "explain m: 2/4, elapsed 0:00:30, ETA 0:00:30"
    other = tracker.start("manipulate m", 2)  # a new task's first step counts from its own start
    clock.now += 7.0
    tracker.advance(other)
    assert tracker.tasks[other].eta() == pytest.approx(7.0)
    assert format_seconds(3725.4) == "1:02:05"


def test_line_progress_writes_start_end_and_a_status_line_per_interval() -> None:
    clock, lines = FakeClock(), []
    prog = LineProgress(lines.append, interval=30.0, clock=clock)
    task = prog.start("attack m1 (stage 1/2)", 3)
    clock.now += 10.0
    prog.advance(task)  # 10 s since the last line: no status line yet
    assert lines == ["[0:00:00] attack m1 (stage 1/2): started, 0/3, ETA —"]
    clock.now += 25.0
    prog.advance(task)
    assert lines[-1] == "[0:00:35] attack m1 (stage 1/2): 2/3, elapsed 0:00:35, ETA 0:00:18"
    clock.now += 31.0
    prog.tick()  # the background thread's call while a long unit runs
    assert lines[-1] == "[0:01:06] attack m1 (stage 1/2): 2/3, elapsed 0:01:06, ETA 0:00:18"
    prog.advance(task)
    prog.finish(task)
    assert lines[-1] == "[0:01:06] attack m1 (stage 1/2): done, 3/3 in 0:01:06"
    clock.now += 30.0
    prog.tick()
    assert lines[-1] == "[0:01:36] working (between stages)"


@dataclass(frozen=True)
class U:
    id: str
    kind: str
    model: str
    explainer: str | None = None


class Recorder:
    """A Progress that records calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object, object]] = []
        self.names: list[str] = []

    def start(self, description: str, total: int) -> int:
        self.names.append(description)
        self.calls.append(("start", description, total))
        return len(self.names) - 1

    def advance(self, task: int, steps: int = 1) -> None:
        self.calls.append(("advance", self.names[task], steps))

    def finish(self, task: int) -> None:
        self.calls.append(("finish", self.names[task], None))


def test_unit_stages_one_task_per_model_and_stage_started_when_next() -> None:
    units = [U("r/a/0", "robustness", "a"), U("r/b/0", "robustness", "b"), U("r/a/1", "robustness", "a")]
    units += [U("e/a/0", "explanation", "a"), U("m/a/0", "manipulation", "a")]
    rec = Recorder()
    stages = UnitStages(rec, units)
    assert rec.calls == [("start", "attack a (stage 1/4)", 2)]
    for u in units:
        stages.done(u)
    starts = [(c[1], c[2]) for c in rec.calls if c[0] == "start"]
    assert starts == [
        ("attack a (stage 1/4)", 2),
        ("attack b (stage 2/4)", 1),
        ("explain a (stage 3/4)", 1),
        ("manipulate a (stage 4/4)", 1),
    ]
    finishes = [c[1] for c in rec.calls if c[0] == "finish"]
    assert finishes == [s for s, _ in starts][1:2] + ["attack a (stage 1/4)"] + [s for s, _ in starts][2:]
    out_of_order = Recorder()  # e.g. Ray: a later unit finishes first and starts its stage then
    stages = UnitStages(out_of_order, units[:2])
    stages.done(units[1])
    assert [c[1] for c in out_of_order.calls if c[0] == "start"] == [
        "attack a (stage 1/2)",
        "attack b (stage 2/2)",
    ]


def test_eta_of_interleaved_stages_counts_the_units_run_in_between() -> None:
    clock = FakeClock()
    tracker = ProgressTracker(clock)
    a0, b0, a1, b1 = (U(f"r/{m}/{k}", "robustness", m) for k in (0, 1) for m in ("a", "b"))
    stages = UnitStages(tracker, [a0, b0, a1, b1])  # shard-major: a and b take turns
    clock.now += 10.0
    stages.done(a0)
    task_a, task_b = tracker.tasks
    assert task_a.eta() == pytest.approx(20.0)  # b0 (at a's pace: nothing of b measured yet), then a1
    assert task_b.eta() == pytest.approx(30.0)  # b0, a1, b1
    clock.now += 20.0
    stages.done(b0)
    assert task_a.eta() == pytest.approx(10.0)  # a1 only
    assert task_b.eta() == pytest.approx(30.0)  # a1 (10 s) runs before b1 (20 s)
    assert task_b.eta_text() == "ETA 0:00:30"
    clock.now += 10.0
    stages.done(a1)
    assert task_a.eta() == 0.0 and task_b.eta() == pytest.approx(20.0)
    clock.now += 5.0  # b1 has run for 5 s
    assert task_b.eta() == pytest.approx(15.0)
    clock.now += 36.1  # b1 has run for more than twice its estimate: the estimate is no good
    assert task_b.eta_text() == "ETA —"


def test_eta_estimates_each_unit_from_the_same_work_on_any_model() -> None:
    clock = FakeClock()
    tracker = ProgressTracker(clock)
    units = [U(f"e/{m}/{x}", "explanation", m, x) for m in ("a", "b") for x in ("saliency", "lime")]
    stages = UnitStages(tracker, units)
    assert tracker.tasks[0].eta_text() == "ETA —"
    clock.now += 1.0
    stages.done(units[0])  # saliency on a: 1 s; lime on a is estimated at the stage's mean so far
    assert tracker.tasks[0].eta() == pytest.approx(1.0)
    clock.now += 30.0
    stages.done(units[1])  # lime on a: 30 s
    assert tracker.tasks[1].eta() == pytest.approx(31.0)  # b: saliency (1 s) + lime (30 s), not 2 × 15.5


def test_eta_of_another_architecture_follows_its_prediction_not_the_first_models_times() -> None:
    """The plan predicts model b's units 10× slower (a Swin after a ViT): b's ETA follows the prediction."""
    clock = FakeClock()
    tracker = ProgressTracker(clock)
    units = [U(f"e/{m}/gradcam", "explanation", m, "gradcam") for m in ("a", "b")]
    stages = UnitStages(tracker, units, predicted={"e/a/gradcam": 1.0, "e/b/gradcam": 10.0})
    clock.now += 2.0
    stages.done(units[0])  # twice as slow as predicted: b is estimated at 10 × 2, not at a's 2 s
    assert tracker.tasks[1].eta() == pytest.approx(20.0)


def test_terminal_bars_show_each_task_with_its_eta() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    with progress_display(console) as prog:
        assert isinstance(prog, ProgressTracker)
        task = prog.start("explain m (stage 1/1)", 2)
        prog.advance(task)
        prog.finish(task)
        other = prog.start("report", 1)
    text = out.getvalue()
    assert "explain m (stage 1/1)" in text and "2/2" in text and "done" in text
    assert prog.tasks[other].eta_text() == "ETA —" and "ETA —" in text
    piped = Console(file=io.StringIO(), force_terminal=False)
    with progress_display(piped, interval=30) as lines:
        assert isinstance(lines, LineProgress)
        lines.finish(lines.start("report", 1))
    assert piped.file.getvalue().splitlines()[-1].endswith("report: done, 0/1 in 0:00:00")


@pytest.mark.slow
def test_piped_audit_prints_plain_stage_lines_with_eta_and_never_wraps(tmp_path: Path) -> None:
    long_name = "an_attack_with_a_very_long_name_that_is_not_configured_" * 3
    config = tmp_path / "tiny.toml"
    config.write_text(
        f"""
name = "progress-tiny"
batch_size = 16
[data]
n_train = 24
n_test = 8
write_to_disk = false
[training]
epochs = 1
[[models]]
name = "plain"
arch = "smallcnn"
training = "standard"
arch_kwargs = {{ widths = [4, 8, 8, 8] }}
[[attacks]]
name = "pgd"
epsilons = [0.0156]
params = {{ steps = 2, step_size = 0.0078 }}
[explain]
methods = ["saliency"]
attacks = ["pgd", "{long_name}"]
n_images = 4
[report]
primary_attack = "pgd"
primary_epsilon = 0.0156
[manipulation]
methods = ["saliency"]
transfer_from = []
n_images = 2
iterations = 2
batch_size = 2
[sanity]
enabled = false
"""
    )
    args = ["audit", str(config), "--profile", "smoke", "--out", str(tmp_path / "run")]
    args += ["--cache-dir", str(tmp_path / "cache"), "--progress-interval", "0.05"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    status = re.compile(
        r"^\[\d+:\d\d:\d\d\] (.+?): (\d+)/(\d+), elapsed \d+:\d\d:\d\d, ETA (\d+:\d\d:\d\d|—)$"
    )
    started = re.compile(r"^\[\d+:\d\d:\d\d\] (.+?): started, 0/(\d+), ETA (\d+:\d\d:\d\d|—)$")
    periodic = {m.group(1) for line in lines if (m := status.match(line))}
    assert periodic, result.output  # at least one running stage was reported with done/total, elapsed and ETA
    # A stage shorter than the interval gets only its start line (with the plan's ETA) and its end line.
    stages = periodic | {m.group(1) for line in lines if (m := started.match(line))}
    for stage in ("training plain (standard)", "attack plain (stage 1/3)", "explain plain (stage 2/3)"):
        assert stage in stages, (stage, result.output)
    assert any(re.search(r": started, 0/\d+, ETA —$", line) for line in lines)
    assert any(
        re.search(r"manipulate plain \(stage 3/3\): done, 1/1 in \d+:\d\d:\d\d$", line) for line in lines
    )
    warning = [line for line in lines if "explain.attacks names attacks that are not configured" in line]
    assert len(warning) == 1 and warning[0].endswith(long_name), result.output  # one line, never wrapped
    assert "━" not in result.output  # no rich bars dumped at the end
