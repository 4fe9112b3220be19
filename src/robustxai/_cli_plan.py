"""The command line's cost plan: ``robustxai plan`` and the plan ``robustxai audit`` prints first."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from robustxai._cli_errors import cli_errors, console
from robustxai.audit._estimate_text import plan_lines
from robustxai.audit._progress import Progress, ProgressTracker

ASSUMED_GPU_SPEEDUP = 20.0  # the default of --gpu-speedup (robustxai.audit._estimate.ASSUMED_GPU_SPEEDUP)

if TYPE_CHECKING:
    from robustxai.audit._config import AuditConfig
    from robustxai.audit._estimate import AuditEstimate

MaxMinutes = Annotated[
    float | None,
    typer.Option(
        min=0.01,
        help="Trim the explained and manipulated images so the predicted time fits (refused if it cannot).",
    ),
]
#: The config argument and profile option that ``audit`` and ``plan`` share.
ConfigArg = Annotated[Path | None, typer.Argument(help="TOML config; its keys override the profile's.")]
ProfileOpt = Annotated[
    str, typer.Option(help="Built-in base settings: default, smoke or paper (robustxai list profiles).")
]
Workers = Annotated[int, typer.Option(min=1, help="Ray workers of the cluster projection in the plan.")]
GpuSpeedup = Annotated[
    float, typer.Option(min=1.0, help="Assumed GPU speed-up per pass when no GPU is present to measure it.")
]


def processes_option(text: str) -> int | str:
    """``--processes``: a whole number, or the word as given (``auto``; the config refuses anything else)."""
    word = text.strip()
    return int(word) if word.isdecimal() and word.isascii() else word


def show_plan(
    console: Console, cfg: AuditConfig, max_minutes: float | None, workers: int, gpu_speedup: float
) -> AuditEstimate:
    """Estimate the audit (timing passes here, cached) and print the plan; refuse what cannot fit."""
    from robustxai.audit._estimate import estimate_audit

    with console.status("planning: timing a few passes of each model (cached afterwards)"):
        est = estimate_audit(cfg, workers=workers, max_minutes=max_minutes, gpu_speedup=gpu_speedup)
    for line in plan_lines(est):
        console.print(line, highlight=False, soft_wrap=True, markup=False)
    return est


def plan_first(
    console: Console, cfg: AuditConfig, max_minutes: float | None
) -> tuple[AuditConfig, dict[str, float]]:
    """``robustxai audit``'s first step: print the plan; return the (trimmed) config and unit predictions."""
    est = show_plan(console, cfg, max_minutes, workers=4, gpu_speedup=ASSUMED_GPU_SPEEDUP)
    return est.cfg, est.unit_seconds


def with_predictions(progress: Progress, predicted: dict[str, float]) -> Progress:
    """The progress display with the plan's per-unit predictions, from which its ETAs start."""
    if isinstance(progress, ProgressTracker):
        progress.predicted = predicted
    return progress


def plan_command(
    config: ConfigArg = None,
    profile: ProfileOpt = "default",
    cache_dir: Annotated[Path | None, typer.Option(help="Cache of data, trained models and timings.")] = None,
    max_minutes: MaxMinutes = None,
    workers: Workers = 4,
    gpu_speedup: GpuSpeedup = ASSUMED_GPU_SPEEDUP,
) -> None:
    """Predict an audit's cost before running it: passes, wall time and peak memory per stage.

    Per-pass times are measured on this machine with the real models (a few passes, cached), so a second
    plan is instant. Also says what a GPU and an N-worker Ray cluster would take.
    """
    from robustxai.audit._config import load_config

    with cli_errors():
        cfg = load_config(config, profile=profile, cache_dir=str(cache_dir) if cache_dir else None)
        show_plan(console, cfg, max_minutes, workers, gpu_speedup)
