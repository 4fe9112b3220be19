"""robustxai: audit image classifiers for adversarial robustness, explanation alignment and explanation trust.

The public API mirrors DESIGN.md: plug-ins are created by name from registries, data follow one set of
conventions (images ``[B, C, H, W]`` in [0, 1], logits out, maps ``[B, H, W]``), and ``run_audit`` combines
them into a report.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from robustxai import metrics
from robustxai._errors import ConfigError, DataError, NotApplicableError, RobustXAIError, UnknownNameError
from robustxai._runtime import keep_freed_memory
from robustxai._version import __version__
from robustxai.attacks import Attack, create_attack, list_attacks
from robustxai.data._base import ImageDataset, Sample
from robustxai.data._truth import Truth
from robustxai.explain import Explainer, Explanation, create_explainer, list_explainers
from robustxai.manipulate import create_manipulation, list_manipulations
from robustxai.metrics import list_metrics
from robustxai.models import ModelWrapper, create_model, list_models, load_model, save_model, wrap_model
from robustxai.training import FitConfig, fit

if TYPE_CHECKING:
    from robustxai._export import Run
    from robustxai.audit._config import AuditConfig
    from robustxai.audit._executor import Executor
    from robustxai.audit._progress import Progress
    from robustxai.audit._runner import AuditResult


def open_run(path: str | Path) -> Run:
    """Open a finished run's rows and tables as DataFrames (see :func:`robustxai._export.open_run`)."""
    from robustxai._export import open_run as _open

    return _open(path)


def load_config(path: str | None = None, profile: str = "default", **overrides: object) -> AuditConfig:
    """Resolve an audit configuration (see :func:`robustxai.audit.load_config`)."""
    from robustxai.audit._config import load_config as _load

    return _load(path, profile=profile, **overrides)


def run_audit(
    cfg: AuditConfig,
    run_dir: str | Path | None = None,
    progress: Progress | None = None,
    *,
    fresh: bool = False,
    executor: Executor | None = None,
    trust_checkpoint: bool = False,
    allow_download: bool = False,
) -> AuditResult:
    """Run an audit and build its report (see :func:`robustxai._pipeline.run_audit`)."""
    from robustxai._pipeline import run_audit as _run

    return _run(
        cfg,
        run_dir,
        progress,
        fresh=fresh,
        executor=executor,
        trust_checkpoint=trust_checkpoint,
        allow_download=allow_download,
    )


__all__ = [
    "Attack",
    "ConfigError",
    "DataError",
    "Explainer",
    "Explanation",
    "FitConfig",
    "ImageDataset",
    "ModelWrapper",
    "NotApplicableError",
    "RobustXAIError",
    "Sample",
    "Truth",
    "UnknownNameError",
    "__version__",
    "create_attack",
    "create_explainer",
    "create_manipulation",
    "create_model",
    "fit",
    "keep_freed_memory",
    "list_attacks",
    "list_explainers",
    "list_manipulations",
    "list_metrics",
    "list_models",
    "load_config",
    "load_model",
    "metrics",
    "open_run",
    "run_audit",
    "save_model",
    "wrap_model",
]
