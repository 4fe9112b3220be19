"""The command line's progress display: rich bars on a terminal, plain lines when the output is piped.

Piped output (``make audit | tee log``, CI, ``nohup``) never sees rich's live bars, which it would only get at
the end; it gets :class:`robustxai.audit._progress.LineProgress` lines instead. On a terminal each task is a
bar whose ETA column asks the tracker at every refresh, so it counts down while a long unit runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from robustxai.audit._progress import DEFAULT_INTERVAL, LineProgress, ProgressTracker


class RichProgress(ProgressTracker):
    """A :class:`robustxai.audit._progress.Progress` drawn as rich bars, one per task, each with an ETA."""

    def __init__(self) -> None:
        super().__init__()
        self.bars: Progress | None = None
        self._ids: list[TaskID] = []

    def start(self, description: str, total: int) -> int:
        """Add a bar."""
        task = super().start(description, total)
        assert self.bars is not None
        label = escape(description)  # model names are user text: never Rich markup
        self._ids.append(self.bars.add_task(label, total=max(total, 1), index=task))
        return task

    def advance(self, task: int, steps: int = 1) -> None:
        """Advance a bar."""
        super().advance(task, steps)
        assert self.bars is not None
        self.bars.update(self._ids[task], advance=steps)

    def finish(self, task: int) -> None:
        """Complete a bar."""
        super().finish(task)
        assert self.bars is not None
        self.bars.update(self._ids[task], completed=max(self.tasks[task].total, 1))


class EtaColumn(ProgressColumn):
    """A bar's ETA as the tracker estimates it now (it counts down while a long unit runs)."""

    def __init__(self, tracker: ProgressTracker) -> None:
        super().__init__()
        self._tracker = tracker

    def render(self, task: Task) -> Text:
        """``ETA 0:01:23``, ``ETA —`` or ``done``."""
        state = self._tracker.tasks[task.fields["index"]]
        return Text("done" if state.finished is not None else state.eta_text())


@contextmanager
def progress_display(
    console: Console, interval: float = DEFAULT_INTERVAL
) -> Iterator[RichProgress | LineProgress]:
    """Rich bars on a terminal; plain lines every ``interval`` seconds when the output is piped or logged.

    Args:
        console: Where the bars or lines go (the CLI's stderr console).
        interval: Seconds between the plain status lines.
    """
    if not console.is_terminal:

        def line(text: str) -> None:
            stream = console.file
            stream.write(text + "\n")
            stream.flush()

        with LineProgress(line, interval) as lines:
            yield lines
        return
    bars = RichProgress()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, EtaColumn(bars), console=console, transient=False) as p:
        bars.bars = p
        yield bars
