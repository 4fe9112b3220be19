"""The command line's error printing: every error is one line, and user text is shown literally.

Messages repeat user text (paths, config values, model names). Two things in such text would break the
one-line, literal rule: Rich markup (``[/x]`` crashes the printer, ``[nan]`` vanishes) and control characters
(a newline in a file name splits the error over two lines; an escape sequence could rewrite the terminal).
:func:`one_line` turns both into visible text, in one place, for every line the CLI prints.
"""

from __future__ import annotations

import signal
import sqlite3
import threading
import unicodedata
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from types import FrameType

import typer
from rich.console import Console
from rich.markup import escape

from robustxai._errors import RobustXAIError

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _visible(ch: str) -> str:
    r"""A control, line- or paragraph-separator character as its escape (``\n``, ``\x1b``, ``\u2028``)."""
    if unicodedata.category(ch) not in ("Cc", "Zl", "Zp"):
        return ch
    return _NAMED.get(ch) or (f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")


def one_line(text: object) -> str:
    """``text`` as one line of literal console text: control characters escaped, Rich markup escaped."""
    return escape("".join(_visible(ch) for ch in str(text)))


#: The CLI's one console (stderr; long lines are never hard-wrapped, so piped output and logs stay whole) and
#: its debug switch, here rather than in ``cli`` so the command modules share them without importing ``cli``.
console = Console(stderr=True, soft_wrap=True)
state = {"debug": False}


def cli_errors() -> AbstractContextManager[None]:
    """:func:`user_errors` on the CLI's console with its ``--debug`` setting."""
    return user_errors(console, state["debug"])


@contextmanager
def user_errors(console: Console, debug: bool) -> Iterator[None]:
    """Turn a user's error into one line on ``console`` and exit status 2 (``debug``: the traceback)."""
    try:
        yield
    except (RobustXAIError, OSError, sqlite3.OperationalError) as err:  # the store's disk full, say
        if debug:
            raise
        console.print(f"[bold red]error:[/] {one_line(err)}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        raise typer.Exit(130) from None


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def sigterm_as_interrupt() -> None:
    """Let ``kill`` stop an audit as Ctrl-C does: finished units stay saved and the run lock is released."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupt)
