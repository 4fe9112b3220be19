"""The audit runner: config → data → models → plan → executor → store (→ report, through a callback).

``run_audit`` runs the audit; it never imports the report layer. The report is built by the function passed
as ``report`` — :func:`robustxai._pipeline.run_audit` (what ``rx.run_audit`` and the CLI call) passes
:func:`robustxai.report.build_report`. Every name and keyword in the
config is checked before any expensive work starts, so a typo fails in a second, not after training.

Resume is the default: the config is recorded in the run directory, each finished unit of work is recorded in
the store with its rows (one transaction), and re-running the same config into the same directory skips the
finished units. A run directory holding a different config is refused with the keys that differ (use another
``--out`` or ``fresh=True`` / ``--fresh``). An interrupt (Ctrl-C) leaves the store consistent and raises
:class:`AuditInterrupted`, whose message says how to resume. What counts as a run directory, and the lock
that keeps a second audit out of it, are in :mod:`robustxai.audit._rundir` and
:mod:`robustxai.audit._runlock`.
A model that cannot be audited (non-finite weights or outputs) is recorded as failed and the others go on.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from robustxai._atomic import write_text
from robustxai._errors import ConfigError, DataError, RobustXAIError, UnknownNameError
from robustxai._version import __version__
from robustxai.attacks import create_attack
from robustxai.audit._applicability import skipped_warnings
from robustxai.audit._batching import settle_for_run
from robustxai.audit._cache import cache_root
from robustxai.audit._config import AuditConfig
from robustxai.audit._config_toml import dump_toml
from robustxai.audit._data_checks import DATA_CODE, data_warnings
from robustxai.audit._executor import ExecutionContext, Executor, run_order
from robustxai.audit._executor_pool import refuse_in_worker
from robustxai.audit._executors import create_executor
from robustxai.audit._failures import ModelsFailedError
from robustxai.audit._grants import Grants, check_grants
from robustxai.audit._kinds import UNIT_KINDS  # noqa: F401  (registers every unit kind)
from robustxai.audit._plan import (
    AuditData,
    Unit,
    UnitResult,
    inapplicable,
    plan_units,
    primary_condition,
    save_arrays,
)
from robustxai.audit._progress import LogProgress, Progress, UnitStages, predictions
from robustxai.audit._rundir import config_differences, prepare_run_dir, refuse_foreign
from robustxai.audit._runlock import RunLock
from robustxai.audit._stages_data import build_datasets, build_transform_list
from robustxai.audit._stages_eval import label_code
from robustxai.audit._stages_manip import check_manipulation_config
from robustxai.audit._stages_models import get_models, nonfinite_weights
from robustxai.audit._stages_sanity import masking_warnings
from robustxai.audit._truth_checks import truth_warnings
from robustxai.explain import create_explainer
from robustxai.models import MODELS
from robustxai.models._registry import MODEL_FAMILIES
from robustxai.results._schema import Condition, SampleRow, WarningRow
from robustxai.results._store import FAILED_CODE, STORE_FILE, TRUTH_CODE, Store, warning_lines

log = logging.getLogger(__name__)

__all__ = [
    "AuditInterrupted",
    "AuditResult",
    "Condition",
    "check_config",
    "config_differences",
    "primary_condition",
    "run_audit",
]


@dataclass
class AuditResult:
    """Where a finished audit put its outputs."""

    run_dir: Path
    report: Path | None
    store: Path
    seconds: float
    warnings: list[str]
    units_run: int = 0
    units_skipped: int = 0
    #: Models that could not be audited (name → one-line reason); their results are missing from the report.
    failed: dict[str, str] = field(default_factory=dict)


class AuditInterrupted(KeyboardInterrupt):
    """An audit stopped by Ctrl-C; finished units are kept and the message says how to resume."""


RESERVED_MODEL_KEYS = ("num_classes", "class_names", "in_channels", "task")


def check_config(cfg: AuditConfig) -> list[str]:
    """Instantiate every named plug-in once so unknown names and keywords fail before any work.

    Returns:
        Warnings about settings that were adjusted (e.g. a primary attack that is not configured).
    """
    warnings = []
    for m in cfg.models:
        if m.checkpoint:
            continue
        if ":" in m.arch:  # a zoo name <family>:<arch>; its keywords are the family factory's
            family = m.arch.split(":", 1)[0]
            allowed = [k for k in MODEL_FAMILIES.parameters(family) if k != "arch"]
        else:
            allowed = MODELS.parameters(m.arch)
        reserved = sorted(set(m.arch_kwargs) & set(RESERVED_MODEL_KEYS))
        if reserved:
            raise ConfigError(
                f"model {m.name!r}: arch_kwargs may not set {', '.join(reserved)} (the data do)"
            )
        unknown = sorted(set(m.arch_kwargs) - set(allowed))
        if unknown:
            raise UnknownNameError(
                f"model {m.name!r}: {m.arch} got unknown keyword(s) {', '.join(unknown)}; "
                f"it accepts: {', '.join(k for k in allowed if k not in RESERVED_MODEL_KEYS)}"
            )
        ckpt = m.arch_kwargs.get("checkpoint")
        if ckpt is not None and not Path(str(ckpt)).exists():
            raise ConfigError(f"model {m.name!r}: arch_kwargs.checkpoint not found: {ckpt}")
        if m.training == "none" and ":" not in m.arch and not m.init_from:
            warnings.append(
                f"model {m.name!r}: training = 'none' on the built-in {m.arch!r} evaluates random weights"
            )
    try:
        build_transform_list(cfg.data.transforms)
    except (TypeError, ValueError, DataError) as err:
        raise ConfigError(f"data.transforms: {err}") from None
    for a in cfg.attacks:
        if "eps" in a.params:
            raise ConfigError(f"attack {a.name!r}: set the budget with epsilons = [...], not params.eps")
        for eps in a.epsilons:
            create_attack(a.name, eps=eps, **a.params)
    for method in cfg.explain.methods:
        create_explainer(method, **cfg.explain.params.get(method, {}))
    check_manipulation_config(cfg)
    unknown = sorted(set(cfg.explain.attacks or []) - {a.name for a in cfg.attacks})
    if unknown:  # a profile's list may outlive a user's [[attacks]] override: warn, do not refuse
        warnings.append(
            f"explain.attacks names attacks that are not configured, ignored: {', '.join(unknown)}"
        )
    budgets = {e for a in cfg.attacks for e in a.epsilons}
    stray = [e for e in cfg.explain.epsilons or [] if not any(abs(e - b) <= 1e-9 for b in budgets)]
    if stray:
        warnings.append(f"explain.epsilons names budgets no attack is run at, ignored: {stray}")
    if cfg.attacks and cfg.report.primary_attack not in {a.name for a in cfg.attacks}:
        warnings.append(
            f"report.primary_attack {cfg.report.primary_attack!r} is not among the configured attacks; "
            f"using {cfg.attacks[0].name!r} for ΔAcc, the rank and the figures"
        )
    return warnings


def _versions() -> dict[str, str]:
    import captum

    return {
        "robustxai": __version__,
        "torch": torch.__version__,
        "captum": captum.__version__,
        "python": platform.python_version(),
    }


def _write_setup(
    store: Store,
    cfg: AuditConfig,
    resolved: dict[str, object],
    data: AuditData,
    infos: dict[str, dict[str, object]],
) -> None:
    """Meta, samples, models and figure images: idempotent rows every (re-)run writes before its units."""
    store.set_meta("config", resolved)
    store.set_meta("run_name", cfg.name)
    store.set_meta("versions", _versions())
    primary = primary_condition(cfg)
    store.set_meta("primary_attack", {"attack": primary[0], "epsilon": primary[1]})
    n_points = dict(zip(data.subset, (len(p) for p in data.points), strict=True))
    store.add_samples(
        SampleRow(sid, i, label_code(y), int(i in n_points), n_points.get(i, 0))
        for i, (sid, y) in enumerate(zip(data.ids, data.labels.tolist(), strict=True))
    )
    for i in data.subset[: cfg.report.n_figure]:
        s = data.dataset[i]
        store.add_figure_sample(s.id, s.image.numpy(), s.truth.mask, s.truth.points)
    for mc in cfg.models:  # a resumed run keeps the first run's account of how each model was obtained
        info = json.loads(json.dumps(infos[mc.name], default=str))
        info["precision"] = mc.precision  # this run's, never a checkpoint's (the report names non-float32)
        store.add_model(mc.name, mc.arch, mc.training, info, keep_existing=True)


def run_audit(
    cfg: AuditConfig,
    run_dir: str | Path | None = None,
    progress: Progress | None = None,
    *,
    fresh: bool = False,
    executor: Executor | None = None,
    report: Callable[[Path], Path] | None = None,
    trust_checkpoint: bool = False,
    allow_download: bool = False,
) -> AuditResult:
    """Run (or resume) the audit described by ``cfg``: write the store, then build the report via ``report``.

    Args:
        cfg: A validated configuration (see :func:`robustxai.audit.load_config`).
        run_dir: Output directory (default ``runs/<cfg.name>``). Finished units of an earlier run of the same
            config there are kept and skipped.
        progress: Receives progress of the long stages (default: log lines).
        fresh: Replace the outputs of an earlier run in ``run_dir`` instead of resuming it.
        executor: Runs the units (default: from ``cfg.executor``).
        report: Builds the report from the run directory and returns its path (``None``: no report; the
            result's ``report`` is ``None`` then). The audit layer never imports the report layer itself.
        trust_checkpoint: Honour ``arch_kwargs.trust_checkpoint = true`` in the config (full-pickle
            checkpoints, which can run code). Only the caller grants it; a config that asks without it is
            refused (:mod:`robustxai.audit._grants`).
        allow_download: Honour ``arch_kwargs.allow_download = true`` in the config (the same rule).

    Returns:
        The paths of the outputs, the wall time, warnings, how many units ran and were skipped, and the
        models that could not be audited (``failed``: non-finite weights or outputs; the others are audited
        and reported, and the report names the failed ones).

    Raises:
        ConfigError: For an invalid config, a foreign run directory (not a robustxai run: nothing in it is
            touched), a damaged store (only ``fresh`` replaces it) or an incompatible earlier run.
        RobustXAIError: For a symbolic link among the outputs, another audit writing to ``run_dir``
            (:class:`robustxai.audit._runlock.RunLockedError`), or when no model at all could be audited.
        AuditInterrupted: On Ctrl-C; the store keeps every finished unit.
    """
    refuse_in_worker()
    t_start = time.perf_counter()
    prog = progress or LogProgress()
    grants = Grants(trust_checkpoint=trust_checkpoint, allow_download=allow_download)
    warnings = check_grants(cfg, grants) + check_config(cfg)
    e = cfg.executor
    ex = executor or create_executor(e.kind, e.address, e.num_cpus, e.num_gpus, e.device, e.processes)
    out = Path(run_dir) if run_dir is not None else Path("runs") / cfg.name
    resolved = cfg.model_dump()
    refuse_foreign(out, fresh)  # before anything, even the lock file, is written there
    with RunLock(out) as lock:
        warnings += [lock.warning] if lock.warning else []
        resumed = prepare_run_dir(out, resolved, fresh=fresh)
        result = _audit(cfg, out, resolved, ex, prog, resumed, report, grants)
    result.warnings = warnings + result.warnings
    result.seconds = time.perf_counter() - t_start
    log.info("audit %s finished in %.1f s: %s", cfg.name, result.seconds, result.report or out)
    return result


def _audit(
    cfg: AuditConfig,
    out: Path,
    resolved: dict[str, object],
    ex: Executor,
    prog: Progress,
    resumed: bool,
    report: Callable[[Path], Path] | None,
    grants: Grants,
) -> AuditResult:
    """Everything after the run directory is prepared: data, models, units, ``report`` (the lock is held)."""
    t_start = time.perf_counter()
    warnings: list[str] = []
    write_text(out / "config.toml", dump_toml(resolved))
    torch.manual_seed(cfg.seed)
    timings: dict[str, float] = {}
    cache = cache_root(cfg.cache_dir)

    t = time.perf_counter()
    train_ds, test_ds, data_info = build_datasets(cfg, cache, prog)
    data = AuditData(test_ds, cfg.explain.n_images, out)
    if not data.subset:
        warnings.append("no test image has ground-truth points or a mask: alignment metrics were skipped")
    truth_lines = truth_warnings(data)
    data_lines = data_warnings(train_ds, test_ds, data.labels)
    timings["data"] = time.perf_counter() - t

    t = time.perf_counter()
    models, model_infos = get_models(cfg, train_ds, data_info, cache, prog, grants)
    timings["models"] = time.perf_counter() - t

    not_run = inapplicable(cfg, models)  # model × method pairs that cannot run: listed, never fatal
    for pair in not_run:
        log.warning("%s: %s", pair.model, pair.line())
    store = Store(out / STORE_FILE)
    try:
        cfg = settle_for_run(cfg, models, test_ds[0].image.shape, cache, store)
        units = plan_units(cfg, data, not_run)
        store.set_meta("dataset", data_info)
        _write_setup(store, cfg, resolved, data, model_infos)
        store.replace_warnings(TRUTH_CODE, truth_lines)
        store.add_warnings(skipped_warnings(not_run))
        store.replace_warnings(DATA_CODE, data_lines)
        finished = store.done_units()
        todo = [u for u in units if u.id not in finished]
        skipped = len(units) - len(todo)
        if resumed:
            log.info("resuming %s: %d of %d units already finished", out, skipped, len(units))
        log.info("running %d units on the %s executor", len(todo), ex.name)
        t = time.perf_counter()
        keys = {name: str(info.get("cache_key", name)) for name, info in model_infos.items()}
        ctx = ExecutionContext(cfg, data, models, keys, predictions(prog))
        n_done, failed = _run_units(ex, todo, ctx, store, prog, skipped, len(units))
        timings["units"] = time.perf_counter() - t
        store.add_warnings(masking_warnings(store.table("predictions"), cfg))
        checks = warning_lines(store.warnings())
        store.set_meta("warnings", warnings)
        store.set_meta("units", {"planned": len(units), "run": n_done, "skipped": skipped})
        timings["total_before_report"] = time.perf_counter() - t_start
        store.set_meta("timings", {k: round(v, 2) for k, v in timings.items()})
    finally:
        store.close()
    if failed and len(failed) == len(cfg.models):
        raise RobustXAIError(f"no model could be audited: {'; '.join(failed.values())}")
    report_path = None
    if report is not None:
        task = prog.start("report", 1)
        report_path = report(out)
        prog.advance(task)
        prog.finish(task)
    return AuditResult(
        run_dir=out,
        report=report_path,
        store=out / STORE_FILE,
        seconds=0.0,
        warnings=warnings + checks,
        units_run=n_done,
        units_skipped=skipped,
        failed=failed,
    )


def _run_units(
    ex: Executor, todo: list[Unit], ctx: ExecutionContext, store: Store, prog: Progress, skipped: int, n: int
) -> tuple[int, dict[str, str]]:
    """Run and commit ``todo``; return the units run and the failed models (name → one-line reason).

    A model that cannot be audited — non-finite weights, or a unit that raises a :class:`RobustXAIError`
    (e.g. non-finite outputs) — is recorded as failed (a ``failed`` warning in the store, shown in the
    report) and its remaining units are skipped; every other model's units still run. Failed units are not
    marked done, so a later run tries them again.
    """
    store.delete_warnings(FAILED_CODE)  # this run decides afresh which models fail
    failed = nonfinite_weights(ctx.models)
    committed: set[str] = set()
    stages = UnitStages(prog, run_order(ex, todo, ctx))  # one progress task per model × stage

    def commit(unit: Unit, result: UnitResult) -> None:
        if result.error is not None:
            raise ModelsFailedError({unit.model: f"unit {unit.id} failed: {result.error}"})
        if result.arrays:  # persisted first: a unit is only marked done once its tensors exist
            save_arrays(ctx.data.adv_path(unit.id), result.arrays)
        store.write_unit(unit.id, result.rows)
        committed.add(unit.id)
        stages.done(unit)

    remaining, reported = todo, set[str]()
    while True:
        for name in sorted(set(failed) - reported):
            store.add_warnings(
                [WarningRow(name, FAILED_CODE, f"not audited: {failed[name]}; its results are missing")]
            )
            log.error("model %r not audited: %s", name, failed[name])
            reported.add(name)
        remaining = [u for u in remaining if u.model not in failed and u.id not in committed]
        try:
            ex.run(remaining, ctx, commit)
            break
        except ModelsFailedError as stop:
            failed.update(stop.failures)
        except KeyboardInterrupt:
            raise AuditInterrupted(
                f"interrupted: {skipped + len(committed)} of {n} units are finished and saved in "
                f"{ctx.data.run_dir}; {n - skipped - len(committed)} remain. Run the same command again "
                "to resume."
            ) from None
    return len(committed), {name: f"model {name!r}: {why}" for name, why in failed.items()}
