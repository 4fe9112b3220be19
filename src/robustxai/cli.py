"""The ``robustxai`` command line: a thin layer over the public API.

Errors in the user's input (names, keys, files, ranges) end in a one-line message and exit status 2, never a
traceback; ``--debug`` shows the traceback for bug reports.
"""

from __future__ import annotations

import difflib
import logging
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.table import Table

from robustxai._cli_errors import cli_errors, console, one_line, sigterm_as_interrupt, state
from robustxai._cli_help import PlainHelpCommand, PlainHelpGroup
from robustxai._cli_plan import (
    ConfigArg,
    MaxMinutes,
    ProfileOpt,
    plan_command,
    plan_first,
    processes_option,
    with_predictions,
)
from robustxai._cli_progress import progress_display
from robustxai._cli_trust import AllowDownload, TrustCheckpoint, refuse_ungranted
from robustxai._errors import RobustXAIError
from robustxai._runtime import keep_freed_memory
from robustxai.audit._progress import DEFAULT_INTERVAL, Progress

app = typer.Typer(
    cls=PlainHelpGroup,
    add_completion=False,
    no_args_is_help=True,
    help="Audit image classifiers: robustness, explanation alignment and explanation trust.",
)
data_app = typer.Typer(cls=PlainHelpGroup, no_args_is_help=True, help="Write data sets to disk.")
app.add_typer(data_app, name="data")
app.command("plan", cls=PlainHelpCommand)(plan_command)


@contextmanager
def _progress(interval: float = DEFAULT_INTERVAL) -> Iterator[Progress]:
    """Rich bars on a terminal; plain lines every ``interval`` seconds when the output is piped or logged."""
    with progress_display(console, interval) as prog:
        yield prog


def _user_errors() -> AbstractContextManager[None]:
    return cli_errors()


def _log_handler() -> logging.Handler:
    """Rich log lines on a terminal; plain, never wrapped lines when the output is piped or logged."""
    return RichHandler(console=console, show_path=False) if console.is_terminal else logging.StreamHandler()


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log each step.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
) -> None:
    """Configure logging for every command, and let this process reuse freed tensor memory."""
    state["debug"] = debug
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[_log_handler()],  # piped output gets plain, unwrapped log lines; a terminal gets rich's
    )
    keep_freed_memory()  # a batch job: ≈ 15 % faster passes for a resident set kept at its peak (_runtime.py)


@app.command(cls=PlainHelpCommand)
def audit(
    config: ConfigArg = None,
    profile: ProfileOpt = "default",
    out: Annotated[Path | None, typer.Option(help="Run directory (default runs/<name>).")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Cache of data and trained models.")] = None,
    executor: Annotated[
        str | None, typer.Option(help="Where units run: local (default) or ray (needs the ray extra).")
    ] = None,
    address: Annotated[str | None, typer.Option(help="Ray cluster address (--executor ray).")] = None,
    processes: Annotated[
        str | None,
        typer.Option(help="Local executor: N units at once on worker processes of one thread each, or auto."),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume/--fresh",
            help="Resume an earlier run of the same config in --out (default), or replace its outputs.",
        ),
    ] = True,
    progress_interval: Annotated[
        float,
        typer.Option(min=0.01, help="Seconds between progress lines when the output is not a terminal."),
    ] = DEFAULT_INTERVAL,
    max_minutes: MaxMinutes = None,
    trust: TrustCheckpoint = False,
    download: AllowDownload = False,
) -> None:
    """Run an audit and write report.html, tables/*.csv and figures/*.png into the run directory.

    Prints the cost plan first (robustxai plan). Re-running resumes: finished units are kept. Exit status 1: a
    model could not be audited (e.g. NaN weights); it is named, and the other models' report is written.
    """
    from robustxai._pipeline import run_audit
    from robustxai.audit._config import load_config
    from robustxai.audit._runner import AuditInterrupted

    sigterm_as_interrupt()
    with _user_errors():
        ex: dict[str, object] = {k: v for k, v in (("kind", executor), ("address", address)) if v is not None}
        if processes is not None:
            ex["processes"] = processes_option(processes)
        cfg = load_config(
            config, profile=profile, cache_dir=str(cache_dir) if cache_dir else None, executor=ex or None
        )
        refuse_ungranted(cfg, trust, download)  # before the plan: a refused ask costs no measurement
        cfg, predicted = plan_first(console, cfg, max_minutes)
        try:
            with _progress(progress_interval) as prog:
                result = run_audit(
                    cfg,
                    out,
                    progress=with_predictions(prog, predicted),
                    fresh=not resume,
                    trust_checkpoint=trust,
                    allow_download=download,
                )
        except AuditInterrupted as stop:
            console.print(f"[yellow]{one_line(str(stop))}[/]", highlight=False, soft_wrap=True)
            raise typer.Exit(130) from None
    for w in result.warnings:
        console.print(f"[yellow]warning:[/] {one_line(w)}", highlight=False, soft_wrap=True)
    if result.units_skipped:
        console.print(f"resumed: {result.units_skipped} finished units kept, {result.units_run} run now")
    for why in result.failed.values():
        console.print(f"[bold red]failed:[/] {one_line(why)}", highlight=False, soft_wrap=True)
    done = "with failed models" if result.failed else "in"
    console.print(f"[{'red' if result.failed else 'green'}]audit finished {done} {result.seconds:.0f} s[/]")
    assert result.report is not None  # the pipeline always builds the report
    console.print(f"report: {one_line(str(result.report.resolve()))}", highlight=False, soft_wrap=True)
    typer.echo(str(result.report.resolve()))
    if result.failed:  # the report is written, but a pipeline must not mistake it for a complete audit
        console.print(
            f"[bold red]{len(result.failed)} model(s) could not be audited: "
            f"{one_line(', '.join(result.failed))}; exit status 1[/]",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1)


@app.command(cls=PlainHelpCommand)
def report(run_dir: Annotated[Path, typer.Argument(help="A run directory holding results.sqlite.")]) -> None:
    """Rebuild the report of a finished run from its store."""
    from robustxai.audit._runlock import RunLock
    from robustxai.report import build_report

    with _user_errors():
        if not (run_dir / "results.sqlite").is_file():
            raise RobustXAIError(f"no results.sqlite in {run_dir}")
        with RunLock(run_dir):  # never while an audit writes the same run
            path = build_report(run_dir)
        typer.echo(str(path.resolve()))


@app.command(cls=PlainHelpCommand)
def export(
    run_dir: Annotated[Path, typer.Argument(help="A run directory holding results.sqlite.")],
    fmt: Annotated[str, typer.Option("--format", help="parquet (needs the export extra) or csv.")] = (
        "parquet"
    ),
    out: Annotated[Path | None, typer.Option(help="Output folder (default RUN/export).")] = None,
) -> None:
    """Export a run's per-sample rows and aggregate tables as Parquet or CSV files."""
    from robustxai._export import export_run

    with _user_errors():
        paths = export_run(run_dir, format=fmt, out=out)
    for path in paths.values():
        typer.echo(str(path))


@app.command(cls=PlainHelpCommand)
def train(
    out: Annotated[Path, typer.Option(help="Directory to save the model (safetensors + JSON).")],
    model: Annotated[
        str,
        typer.Option(
            help="Registered architecture, or a zoo name: torchvision:<arch>, timm:<name>, robustbench:<id>."
        ),
    ] = "smallcnn",
    data: Annotated[str, typer.Option(help="'synthetic-fracture' or a folder written by 'data synth'.")] = (
        "synthetic-fracture"
    ),
    training: Annotated[str, typer.Option(help="standard or pgd (adversarial training).")] = "standard",
    head: Annotated[
        str,
        typer.Option(
            help="Zoo models: keep (own classifier), linear, linear-probe (frozen backbone) or attention."
        ),
    ] = "keep",
    checkpoint: Annotated[
        Path | None, typer.Option(help="Local weights of a zoo model (file or directory).")
    ] = None,
    allow_download: Annotated[
        bool, typer.Option("--allow-download", help="Let torchvision/timm/RobustBench download weights.")
    ] = False,
    trust_checkpoint: Annotated[
        bool,
        typer.Option("--trust-checkpoint", help="Allow a full-pickle checkpoint (runs code from the file)."),
    ] = False,
    model_option: Annotated[
        list[str] | None,
        typer.Option(
            help="Extra model keyword KEY=VALUE, repeatable (e.g. dataset=cifar10 for robustbench)."
        ),
    ] = None,
    n: Annotated[int, typer.Option(help="Synthetic images to train on.")] = 2000,
    size: Annotated[int, typer.Option(help="Image size in pixels.")] = 64,
    epochs: Annotated[int, typer.Option(help="Maximum epochs (early stopping may end sooner).")] = 8,
    batch_size: Annotated[int, typer.Option(help="Training batch size (16 suits big models on CPU).")] = 64,
    eps: Annotated[
        float,
        typer.Option(help="ε of adversarial training in [0, 1] units (default 4/255).", show_default=False),
    ] = 4 / 255,
    attack_steps: Annotated[int, typer.Option(help="PGD steps of adversarial training.")] = 7,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 2e-3,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Train a model on the synthetic benchmark or an image folder and save it.

    Zoo models start from --checkpoint (or --allow-download) and take grayscale data as it is: the wrapper
    repeats the channel for a 3-channel backbone.
    """
    from robustxai._cli_train import TrainOptions, run_train

    opts = TrainOptions(
        out, model, data, training, head, checkpoint, allow_download, trust_checkpoint, model_option,
        n, size, epochs, batch_size, eps, attack_steps, lr, seed,
    )  # fmt: skip
    with _user_errors():
        result = run_train(opts, _progress)
    console.print(
        f"validation accuracy {result.val_accuracy:.3f} (epoch {result.best_epoch}); saved to "
        f"{one_line(str(out))}",
        highlight=False,
    )


@data_app.command("synth", cls=PlainHelpCommand)
def data_synth(
    out: Annotated[Path, typer.Option(help="Output folder (PNG class folders, manifest.csv, annotations).")],
    n: Annotated[int, typer.Option(help="Number of images.")] = 500,
    size: Annotated[int, typer.Option(help="Image size in pixels (16–224).")] = 64,
    seed: Annotated[int, typer.Option(help="Seed; image i depends only on (seed, i).")] = 0,
    shortcut: Annotated[float, typer.Option(help="Marker–label correlation in [0, 1].")] = 0.0,
    test_fraction: Annotated[
        float, typer.Option(help="Share of images marked 'test' in the manifest's split column.")
    ] = 0.2,
) -> None:
    """Write the synthetic fracture benchmark to disk in the folder format the loader reads.

    The manifest's split column marks a fixed test share, so `robustxai train` (which uses the train rows)
    and an audit of the folder (which tests on the test rows) never share images.
    """
    from robustxai.data._base import split_indices
    from robustxai.data._folder import write_folder
    from robustxai.data._synthetic import SyntheticFracture

    with _user_errors():
        if not 0 < test_fraction < 1:
            raise RobustXAIError(f"--test-fraction must lie in (0, 1), got {test_fraction}")
        ds = SyntheticFracture(n, size=size, seed=seed, shortcut=shortcut)
        splits = ["train"] * n
        if n >= 2:
            for i in split_indices(n, test_fraction, seed)[1]:
                splits[i] = "test"
        with _progress() as prog:
            task = prog.start("writing images", n)
            write_folder(ds, out, progress=lambda k: prog.advance(task, k), split=splits)
            prog.finish(task)
    console.print(
        f"wrote {n} images to {one_line(str(out))} ({splits.count('test')} marked test)", highlight=False
    )


@app.command("list", cls=PlainHelpCommand)
def list_plugins(
    kind: Annotated[
        str,
        typer.Argument(
            help="profiles, attacks, manipulations, explainers, models, model-families or metrics"
        ),
    ] = "all",
) -> None:
    """List the built-in profiles and the registered attacks, explainers, models and metrics."""
    import robustxai as rx
    from robustxai.audit._config import PROFILES, profile_description
    from robustxai.models._registry import list_model_families

    listing = {
        "profiles": [f"{p}: {profile_description(p)}" for p in PROFILES],
        "attacks": rx.list_attacks(),
        "manipulations": rx.list_manipulations(),
        "explainers": rx.list_explainers(),
        "models": rx.list_models(),
        "model-families": [f"{f}:<name>" for f in list_model_families()],
        "metrics": rx.list_metrics(),
    }
    with _user_errors():
        if kind != "all" and kind not in listing:
            close = difflib.get_close_matches(kind, list(listing), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise RobustXAIError(f"unknown kind {kind!r}{hint}; known: {', '.join(listing)}")
    table = Table("kind", "names")
    for k, names in listing.items():
        if kind in ("all", k):
            table.add_row(k, escape("\n".join(names) if k == "profiles" else ", ".join(names)))
    Console().print(table)


# The expert studio's commands (`serve`, `study create`) live in their own module.
from robustxai._cli_web import register as _register_web  # noqa: E402

_register_web(app)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
