"""The studio's commands, registered onto the ``robustxai`` app: ``serve`` and ``study create``.

Kept apart from ``cli.py`` so the studio's commands change without touching the rest of the command line.
FastAPI and uvicorn (the ``web`` extra) are imported only when a command runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from robustxai._cli_help import PlainHelpCommand, PlainHelpGroup
from robustxai._errors import RobustXAIError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
DEFAULT_BASE_URL = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"
_console = Console(stderr=True, soft_wrap=True)

study_app = typer.Typer(
    cls=PlainHelpGroup, no_args_is_help=True, help="Blinded rating studies of a run's maps."
)


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except (RobustXAIError, OSError) as err:
        _console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except ImportError as err:
        _console.print(
            f"[bold red]error:[/] the studio needs the web extra ({err.name}): pip install 'robustxai[web]'",
            highlight=False,
        )
        raise typer.Exit(2) from None


def _need_run(run_dir: Path) -> None:
    if not (run_dir / "results.sqlite").is_file():
        raise RobustXAIError(f"no results.sqlite in {run_dir}: run the audit first")


def serve(
    run_dir: Annotated[Path, typer.Argument(help="A run directory holding results.sqlite.")],
    data: Annotated[Path | None, typer.Option(help="A data folder to annotate.")] = None,
    host: Annotated[str, typer.Option(help="Address to bind (loopback by default).")] = DEFAULT_HOST,
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = DEFAULT_PORT,
) -> None:
    """Start the expert studio for a run; prints the admin link (keep it secret)."""
    with _errors():
        _need_run(run_dir)
        if data is not None and not data.is_dir():
            raise RobustXAIError(f"--data {data} is not a folder")
        import uvicorn

        from robustxai.audit._reload import open_run_context
        from robustxai.web import create_app

        app = create_app(run_dir, data_dir=data, reopen=open_run_context)
        if host not in ("127.0.0.1", "localhost", "::1"):
            _console.print(
                f"[bold yellow]warning:[/] serving on {host}: anyone who can reach this address and port can "
                "try to connect; the admin token and the rater links are the only protection (no TLS)."
            )
        shown = f"[{host}]" if ":" in host else host
        typer.echo(f"admin link (keep it secret): http://{shown}:{port}/?token={app.state.auth.admin_token}")
        uvicorn.run(app, host=host, port=port, log_level="warning")


@study_app.command("create", cls=PlainHelpCommand)
def study_create(
    run_dir: Annotated[Path, typer.Argument(help="A run directory holding results.sqlite.")],
    raters: Annotated[int, typer.Option(help="Number of raters (one secret link each).")] = 2,
    images: Annotated[int, typer.Option(help="Number of single-map (Likert) items.")] = 10,
    methods: Annotated[list[str] | None, typer.Option(help="Only these explainers (repeatable).")] = None,
    pairs: Annotated[int | None, typer.Option(help="Number of two-map items (default: images / 2).")] = None,
    base_url: Annotated[
        str, typer.Option(help="The server's address as raters reach it.")
    ] = DEFAULT_BASE_URL,
    seed: Annotated[int | None, typer.Option(help="Sampling seed (default: random).")] = None,
) -> None:
    """Create a blinded rating study and print one secret link per rater."""
    with _errors():
        _need_run(run_dir)
        from robustxai.web._study import create_study

        study_id, tokens = create_study(
            run_dir, raters, images, methods=methods or None, pairs=pairs, seed=seed
        )
        _console.print(f"study {study_id}: {len(tokens)} rater links (each is secret to its rater)")
        for token in tokens:
            typer.echo(f"{base_url.rstrip('/')}/r/{token}")


def register(app: typer.Typer) -> None:
    """Add ``serve`` and ``study`` to the ``robustxai`` command line."""
    app.command("serve", cls=PlainHelpCommand)(serve)
    app.add_typer(study_app, name="study")
