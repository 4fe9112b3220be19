"""The audit runner: config → data → models → robustness → explanations → store → report.

``run_audit`` is the public entry point (the CLI is a thin layer over it). Every name and keyword in the
config is checked before any expensive work starts, so a typo fails in a second, not after training.
"""

from __future__ import annotations

import json
import logging
import platform
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import robustxai
from robustxai.attacks import create_attack
from robustxai.audit.cache import cache_root
from robustxai.audit.config import AuditConfig, dump_toml
from robustxai.audit.progress import LogProgress, Progress
from robustxai.audit.stages_data import build_datasets
from robustxai.audit.stages_eval import CLEAN, Condition, EvalData, run_explanations, run_robustness
from robustxai.audit.stages_models import get_models
from robustxai.audit.store import STORE_FILE, Store
from robustxai.data.base import ImageDataset, stack_images
from robustxai.errors import ConfigError, UnknownNameError
from robustxai.explain import create_explainer
from robustxai.models import MODELS
from robustxai.report import build_report

log = logging.getLogger(__name__)


@dataclass
class AuditResult:
    """Where a finished audit put its outputs."""

    run_dir: Path
    report: Path
    store: Path
    seconds: float
    warnings: list[str]


RESERVED_MODEL_KEYS = ("num_classes", "class_names", "in_channels")


def check_config(cfg: AuditConfig) -> list[str]:
    """Instantiate every named plug-in once so unknown names and keywords fail before any work.

    Returns:
        Warnings about settings that were adjusted (e.g. a primary attack that is not configured).
    """
    for m in cfg.models:
        if m.checkpoint:
            continue
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
    for a in cfg.attacks:
        if "eps" in a.params:
            raise ConfigError(f"attack {a.name!r}: set the budget with epsilons = [...], not params.eps")
        for eps in a.epsilons:
            create_attack(a.name, eps=eps, **a.params)
    for method in cfg.explain.methods:
        create_explainer(method, **cfg.explain.params.get(method, {}))
    warnings = []
    if cfg.attacks and cfg.report.primary_attack not in {a.name for a in cfg.attacks}:
        warnings.append(
            f"report.primary_attack {cfg.report.primary_attack!r} is not among the configured attacks; "
            f"using {cfg.attacks[0].name!r} for ΔAcc, the rank and the figures"
        )
    return warnings


def primary_condition(cfg: AuditConfig) -> Condition:
    """The attack and ε used for ΔAcc, the rank and the figure (nearest configured ε to the requested one).

    Falls back to the first configured attack when the requested one is not configured.
    """
    spec = next((a for a in cfg.attacks if a.name == cfg.report.primary_attack), None)
    if spec is None and cfg.attacks:
        spec = cfg.attacks[0]
    if spec is None:
        return (cfg.report.primary_attack, cfg.report.primary_epsilon)
    eps = min(spec.epsilons, key=lambda e: abs(e - cfg.report.primary_epsilon))
    return (spec.name, float(eps))


RUN_MARKERS = ("config.toml", STORE_FILE)


def _prepare_run_dir(run_dir: Path) -> None:
    """Create the run directory, replacing the outputs of an earlier run there.

    A non-empty directory that holds no earlier run is refused, so ``--out .`` or a typo can never delete a
    user's own ``tables/`` or ``figures/``.
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"run directory {run_dir} exists and is not a directory")
    if run_dir.is_dir() and any(run_dir.iterdir()) and not any((run_dir / m).is_file() for m in RUN_MARKERS):
        raise ConfigError(
            f"run directory {run_dir} is not empty and holds no earlier robustxai run; choose another --out"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in (STORE_FILE, f"{STORE_FILE}-wal", f"{STORE_FILE}-shm", "report.html"):
        (run_dir / name).unlink(missing_ok=True)
    for sub in ("tables", "figures"):
        shutil.rmtree(run_dir / sub, ignore_errors=True)


def _mask_or(mask: np.ndarray | None, default: np.ndarray) -> np.ndarray:
    return default if mask is None else mask


def _eval_data(test_ds: ImageDataset, n_images: int) -> tuple[EvalData, list[str]]:
    samples = [test_ds[i] for i in range(len(test_ds))]
    images, labels = stack_images(samples)
    # Images with any annotation: point metrics need points, mask metrics a mask; the other is NaN.
    subset = [i for i, s in enumerate(samples) if not s.truth.empty][:n_images]
    warnings = []
    if not subset:
        warnings.append("no test image has ground-truth points or a mask: alignment metrics were skipped")
    h, w = images.shape[-2:]
    empty_mask = np.zeros((h, w), dtype=bool)
    masks = (
        torch.stack([torch.from_numpy(_mask_or(samples[i].truth.mask, empty_mask)) for i in subset])
        if subset
        else torch.zeros((0, h, w), dtype=torch.bool)
    )
    points = [
        np.asarray(p) if (p := samples[i].truth.points) is not None else np.zeros((0, 2)) for i in subset
    ]
    data = EvalData(images, labels, [s.id for s in samples], subset, masks, points)
    return data, warnings


def _versions() -> dict[str, str]:
    import captum

    return {
        "robustxai": robustxai.__version__,
        "torch": torch.__version__,
        "captum": captum.__version__,
        "python": platform.python_version(),
    }


def run_audit(
    cfg: AuditConfig, run_dir: str | Path | None = None, progress: Progress | None = None
) -> AuditResult:
    """Run the whole audit described by ``cfg`` and write the store, tables, figures and report.

    Args:
        cfg: A validated configuration (see :func:`robustxai.audit.config.load_config`).
        run_dir: Output directory (default ``runs/<cfg.name>``); earlier outputs there are replaced.
        progress: Receives progress of the long stages (default: log lines).

    Returns:
        The paths of the outputs, the wall time and any warnings raised on the way.
    """
    t_start = time.perf_counter()
    prog = progress or LogProgress()
    config_warnings = check_config(cfg)
    out = Path(run_dir) if run_dir is not None else Path("runs") / cfg.name
    _prepare_run_dir(out)
    resolved = cfg.model_dump()
    (out / "config.toml").write_text(dump_toml(resolved))
    torch.manual_seed(cfg.seed)
    timings: dict[str, float] = {}
    warnings: list[str] = list(config_warnings)
    cache = cache_root(cfg.cache_dir)

    t = time.perf_counter()
    train_ds, test_ds, data_info = build_datasets(cfg, cache, prog)
    data, w = _eval_data(test_ds, cfg.explain.n_images)
    warnings += w
    timings["data"] = time.perf_counter() - t

    t = time.perf_counter()
    models, model_infos = get_models(cfg, train_ds, data_info, cache, prog)
    timings["models"] = time.perf_counter() - t

    store = Store(out / STORE_FILE)
    try:
        store.set_meta("config", resolved)
        store.set_meta("run_name", cfg.name)
        store.set_meta("dataset", data_info)
        store.set_meta("versions", _versions())
        primary = primary_condition(cfg)
        store.set_meta("primary_attack", {"attack": primary[0], "epsilon": primary[1]})
        n_points = dict(zip(data.subset, (len(p) for p in data.points), strict=True))
        store.add_samples(
            (sid, i, int(y), int(i in n_points), n_points.get(i, 0))
            for i, (sid, y) in enumerate(zip(data.ids, data.labels.tolist(), strict=True))
        )
        for i in data.subset[: cfg.report.n_figure]:
            s = test_ds[i]
            store.add_figure_sample(s.id, s.image.numpy(), s.truth.mask, s.truth.points)
        for mc in cfg.models:
            info = model_infos[mc.name]
            store.add_model(mc.name, mc.arch, mc.training, json.loads(json.dumps(info, default=str)))
        t_rob = t_exp = 0.0
        for name, model in models.items():
            t = time.perf_counter()
            rob = run_robustness(name, model, cfg, data, prog)
            store.add_predictions(rob.rows)
            t_rob += time.perf_counter() - t
            if data.subset:
                t = time.perf_counter()
                fig_conditions = {CLEAN, primary}
                rows, fig_rows = run_explanations(
                    name, model, cfg, data, rob.subset_images, prog, fig_conditions, cfg.report.n_figure
                )
                store.add_metrics(rows)
                store.add_figure_maps(fig_rows)
                t_exp += time.perf_counter() - t
        timings["robustness"] = t_rob
        timings["explanations"] = t_exp
        store.set_meta("warnings", warnings)
        timings["total_before_report"] = time.perf_counter() - t_start
        store.set_meta("timings", {k: round(v, 2) for k, v in timings.items()})
    finally:
        store.close()
    report = build_report(out)
    seconds = time.perf_counter() - t_start
    log.info("audit %s finished in %.1f s: %s", cfg.name, seconds, report)
    return AuditResult(run_dir=out, report=report, store=out / STORE_FILE, seconds=seconds, warnings=warnings)
