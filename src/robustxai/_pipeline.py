"""The one place that chains the audit and the report: above both layers, which never import each other.

:func:`run_audit` runs :func:`robustxai.audit._runner.run_audit` and builds the report of the run with
:func:`robustxai.report.build_report`; ``rx.run_audit`` and ``robustxai audit`` call it.
"""

from __future__ import annotations

from pathlib import Path

from robustxai.audit._config import AuditConfig
from robustxai.audit._executor import Executor
from robustxai.audit._progress import Progress
from robustxai.audit._runner import AuditResult, run_audit as _run_audit_only
from robustxai.report import build_report

__all__ = ["run_audit"]


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
    """Run (or resume) the audit described by ``cfg`` and build its report (``report.html``, tables, figures).

    Args:
        cfg: A validated configuration (see :func:`robustxai.audit.load_config`).
        run_dir: Output directory (default ``runs/<cfg.name>``); finished units of an earlier run are kept.
        progress: Receives progress of the long stages (default: log lines).
        fresh: Replace the outputs of an earlier run in ``run_dir`` instead of resuming it.
        executor: Runs the units (default: from ``cfg.executor``).
        trust_checkpoint: Honour ``arch_kwargs.trust_checkpoint = true`` in the config (full pickles, which
            can run code); only the caller grants it (:mod:`robustxai.audit._grants`).
        allow_download: Honour ``arch_kwargs.allow_download = true`` in the config (the same rule).

    Returns:
        The paths of the outputs (``report`` is set), the wall time, warnings and unit counts.

    Raises:
        ConfigError: For an invalid config, a foreign run directory or an incompatible earlier run.
        AuditInterrupted: On Ctrl-C; the store keeps every finished unit.
    """
    return _run_audit_only(
        cfg,
        run_dir,
        progress,
        fresh=fresh,
        executor=executor,
        report=build_report,
        trust_checkpoint=trust_checkpoint,
        allow_download=allow_download,
    )
