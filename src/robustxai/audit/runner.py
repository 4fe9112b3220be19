"""The audit runner: config → data → models → plan → executor → store → report.

``run_audit`` is the public entry point (the CLI is a thin layer over it). Every name and keyword in the
config is checked before any expensive work starts, so a typo fails in a second, not after training.

Resume is the default: the config is recorded in the run directory, each finished unit of work is recorded in
the store with its rows (one transaction), and re-running the same config into the same directory skips the
finished units. A run directory holding a different config is refused with the keys that differ (use another
``--out`` or ``fresh=True`` / ``--fresh``). An interrupt (Ctrl-C) leaves the store consistent and raises
:class:`AuditInterrupted`, whose message says how to resume.
"""

from __future__ import annotations

import json
import logging
import platform
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import robustxai
from robustxai.attacks import create_attack
from robustxai.audit.applicability import skipped_warnings
from robustxai.audit.cache import cache_root
from robustxai.audit.config import AuditConfig, dump_toml
from robustxai.audit.data_checks import DATA_CODE, data_warnings
from robustxai.audit.executor import ExecutionContext, Executor, create_executor
from robustxai.audit.kinds import UNIT_KINDS  # noqa: F401  (registers every unit kind)
from robustxai.audit.plan import (
    ADV_DIR,
    AuditData,
    Unit,
    UnitResult,
    inapplicable,
    plan_units,
    primary_condition,
    save_arrays,
)
from robustxai.audit.progress import LogProgress, Progress, UnitStages
from robustxai.audit.stages_data import build_datasets, build_transform_list
from robustxai.audit.stages_eval import CLEAN, Condition, label_code
from robustxai.audit.stages_manip import check_manipulation_config
from robustxai.audit.stages_models import get_models
from robustxai.audit.stages_sanity import masking_warnings
from robustxai.audit.store import STORE_FILE, TRUTH_CODE, Store, warning_lines
from robustxai.audit.truth_checks import truth_warnings
from robustxai.errors import ConfigError, DataError, UnknownNameError
from robustxai.explain import create_explainer
from robustxai.models import MODELS
from robustxai.models.registry import MODEL_FAMILIES
from robustxai.report import build_report

log = logging.getLogger(__name__)

__all__ = [
    "CLEAN",
    "AuditInterrupted",
    "AuditResult",
    "Condition",
    "check_config",
    "primary_condition",
    "run_audit",
]


@dataclass
class AuditResult:
    """Where a finished audit put its outputs."""

    run_dir: Path
    report: Path
    store: Path
    seconds: float
    warnings: list[str]
    units_run: int = 0
    units_skipped: int = 0


class AuditInterrupted(KeyboardInterrupt):
    """An audit stopped by Ctrl-C; finished units are kept and the message says how to resume."""


RESERVED_MODEL_KEYS = ("num_classes", "class_names", "in_channels", "task")
#: Config keys that never change results: a run may resume with other values.
RESUME_NEUTRAL_KEYS = ("cache_dir", "executor")


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
    if cfg.attacks and cfg.report.primary_attack not in {a.name for a in cfg.attacks}:
        warnings.append(
            f"report.primary_attack {cfg.report.primary_attack!r} is not among the configured attacks; "
            f"using {cfg.attacks[0].name!r} for ΔAcc, the rank and the figures"
        )
    return warnings


RUN_MARKERS = ("config.toml", STORE_FILE)


def _results_config(resolved: dict[str, Any]) -> dict[str, Any]:
    """The part of a resolved config that determines the results (what a resume must match)."""
    return {k: v for k, v in resolved.items() if k not in RESUME_NEUTRAL_KEYS}


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        out = {}
        for i, v in enumerate(value):
            out.update(_flatten(v, f"{prefix}[{i}]"))
        return out
    return {prefix: value}


def config_differences(old: dict[str, Any], new: dict[str, Any], limit: int = 8) -> list[str]:
    """Dotted keys whose values differ between two resolved configs, as ``key: old → new`` (at most limit)."""
    # Compare as stored (JSON): tuples and lists, or ints and floats that JSON merges, are not differences.
    old, new = (json.loads(json.dumps(c, sort_keys=True, default=str)) for c in (old, new))
    a, b = _flatten(_results_config(old)), _flatten(_results_config(new))
    missing = object()
    diffs = [
        f"{k}: {a.get(k, '(unset)')!r} → {b.get(k, '(unset)')!r}"
        for k in sorted(set(a) | set(b))
        if a.get(k, missing) != b.get(k, missing)
    ]
    return diffs[:limit] + ([f"… and {len(diffs) - limit} more"] if len(diffs) > limit else [])


def _stored_config(run_dir: Path) -> dict[str, Any] | None:
    """The resolved config recorded in a run directory's store, or None without one."""
    path = run_dir / STORE_FILE
    if not path.is_file():
        return None
    try:
        with Store(path, readonly=True) as store:
            value = store.get_meta("config")
    except Exception:  # a store torn before its first commit holds nothing worth resuming
        return None
    return value if isinstance(value, dict) else None


def _clear_outputs(run_dir: Path) -> None:
    for name in (STORE_FILE, f"{STORE_FILE}-wal", f"{STORE_FILE}-shm", "report.html", "config.toml"):
        (run_dir / name).unlink(missing_ok=True)
    for sub in ("tables", "figures", ADV_DIR):
        shutil.rmtree(run_dir / sub, ignore_errors=True)


def prepare_run_dir(run_dir: Path, resolved: dict[str, Any], fresh: bool = False) -> bool:
    """Create or reopen a run directory; return whether an earlier run of the same config is resumed.

    A non-empty directory that holds no earlier run is refused, so ``--out .`` or a typo can never delete a
    user's own files. An earlier run of another config is refused with the keys that differ, unless
    ``fresh``, which replaces its outputs.

    Raises:
        ConfigError: For a foreign directory or an incompatible earlier run.
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"run directory {run_dir} exists and is not a directory")
    if run_dir.is_dir() and any(run_dir.iterdir()) and not any((run_dir / m).is_file() for m in RUN_MARKERS):
        raise ConfigError(
            f"run directory {run_dir} is not empty and holds no earlier robustxai run; choose another --out"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    stored = None if fresh else _stored_config(run_dir)
    if stored is not None:
        diffs = config_differences(stored, resolved)
        if diffs:
            raise ConfigError(
                f"run directory {run_dir} holds a run of a different config ({'; '.join(diffs)}); "
                "use a new --out, or --fresh to replace it"
            )
    else:
        _clear_outputs(run_dir)
    for sub in ("tables", "figures"):  # the report is rebuilt from the store at the end
        shutil.rmtree(run_dir / sub, ignore_errors=True)
    (run_dir / "report.html").unlink(missing_ok=True)
    return stored is not None


def _versions() -> dict[str, str]:
    import captum

    return {
        "robustxai": robustxai.__version__,
        "torch": torch.__version__,
        "captum": captum.__version__,
        "python": platform.python_version(),
    }


def _write_setup(
    store: Store, cfg: AuditConfig, resolved: dict[str, Any], data: AuditData, infos: Any
) -> None:
    """Meta, samples, models and figure images: idempotent rows every (re-)run writes before its units."""
    store.set_meta("config", resolved)
    store.set_meta("run_name", cfg.name)
    store.set_meta("versions", _versions())
    primary = primary_condition(cfg)
    store.set_meta("primary_attack", {"attack": primary[0], "epsilon": primary[1]})
    n_points = dict(zip(data.subset, (len(p) for p in data.points), strict=True))
    store.add_samples(
        (sid, i, label_code(y), int(i in n_points), n_points.get(i, 0))
        for i, (sid, y) in enumerate(zip(data.ids, data.labels.tolist(), strict=True))
    )
    for i in data.subset[: cfg.report.n_figure]:
        s = data.dataset[i]
        store.add_figure_sample(s.id, s.image.numpy(), s.truth.mask, s.truth.points)
    for mc in cfg.models:  # a resumed run keeps the first run's account of how each model was obtained
        info = json.loads(json.dumps(infos[mc.name], default=str))
        store.add_model(mc.name, mc.arch, mc.training, info, keep_existing=True)


def run_audit(
    cfg: AuditConfig,
    run_dir: str | Path | None = None,
    progress: Progress | None = None,
    *,
    fresh: bool = False,
    executor: Executor | None = None,
) -> AuditResult:
    """Run (or resume) the audit described by ``cfg`` and write the store, tables, figures and report.

    Args:
        cfg: A validated configuration (see :func:`robustxai.audit.config.load_config`).
        run_dir: Output directory (default ``runs/<cfg.name>``). Finished units of an earlier run of the same
            config there are kept and skipped.
        progress: Receives progress of the long stages (default: log lines).
        fresh: Replace the outputs of an earlier run in ``run_dir`` instead of resuming it.
        executor: Runs the units (default: from ``cfg.executor``).

    Returns:
        The paths of the outputs, the wall time, warnings, and how many units ran and were skipped.

    Raises:
        ConfigError: For an invalid config, a foreign run directory or an incompatible earlier run.
        AuditInterrupted: On Ctrl-C; the store keeps every finished unit.
    """
    t_start = time.perf_counter()
    prog = progress or LogProgress()
    warnings = check_config(cfg)
    e = cfg.executor
    ex = executor or create_executor(e.kind, e.address, e.num_cpus, e.num_gpus, e.device)
    out = Path(run_dir) if run_dir is not None else Path("runs") / cfg.name
    resolved = cfg.model_dump()
    resumed = prepare_run_dir(out, resolved, fresh=fresh)
    (out / "config.toml").write_text(dump_toml(resolved))
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
    models, model_infos = get_models(cfg, train_ds, data_info, cache, prog)
    timings["models"] = time.perf_counter() - t

    not_run = inapplicable(cfg, models)  # model × method pairs that cannot run: listed, never fatal
    for pair in not_run:
        log.warning("%s: %s", pair.model, pair.line())
    units = plan_units(cfg, data, not_run)
    store = Store(out / STORE_FILE)
    n_done = 0
    try:
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
        stages = UnitStages(prog, todo)  # one progress task per model × stage
        t = time.perf_counter()

        def commit(unit: Unit, result: UnitResult) -> None:
            nonlocal n_done
            if result.arrays:  # persisted first: a unit is only marked done once its tensors exist
                save_arrays(data.adv_path(unit.id), result.arrays)
            store.write_unit(unit.id, result.rows)
            n_done += 1
            stages.done(unit)

        keys = {name: str(info.get("cache_key", name)) for name, info in model_infos.items()}
        try:
            ex.run(todo, ExecutionContext(cfg, data, models, keys), commit)
        except KeyboardInterrupt:
            left = len(todo) - n_done
            raise AuditInterrupted(
                f"interrupted: {skipped + n_done} of {len(units)} units are finished and saved in {out}; "
                f"{left} remain. Run the same command again to resume."
            ) from None
        timings["units"] = time.perf_counter() - t
        store.add_warnings(masking_warnings(store.table("predictions"), cfg))
        checks = warning_lines(store.warnings())
        store.set_meta("warnings", warnings)
        store.set_meta("units", {"planned": len(units), "run": n_done, "skipped": skipped})
        timings["total_before_report"] = time.perf_counter() - t_start
        store.set_meta("timings", {k: round(v, 2) for k, v in timings.items()})
    finally:
        store.close()
    task = prog.start("report", 1)
    report = build_report(out)
    prog.advance(task)
    prog.finish(task)
    seconds = time.perf_counter() - t_start
    log.info("audit %s finished in %.1f s: %s", cfg.name, seconds, report)
    return AuditResult(
        run_dir=out,
        report=report,
        store=out / STORE_FILE,
        seconds=seconds,
        warnings=warnings + checks,
        units_run=n_done,
        units_skipped=skipped,
    )
