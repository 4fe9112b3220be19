"""Reading what claims need from a run's results: per-image matrices paired on the same images.

Only :mod:`robustxai.results` is read. Predictions give 0/1 ``correct`` per model × condition × image;
metrics give one value per model × condition × explainer × metric × image. Every matrix here is
``[models, images]`` over the images every listed model has (sorted ids), so the columns pair up.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Iterable

import numpy as np
import pandas as pd

from robustxai._types import JsonObject
from robustxai.results._run import RunData
from robustxai.results._schema import CLEAN, Condition, is_manipulation

__all__ = [
    "attack_conditions",
    "correct_matrix",
    "eps_text",
    "metric_matrix",
    "model_configs",
    "model_names",
    "primary_condition",
]

#: Explainers that are controls, not methods whose behaviour a paper describes.
CONTROL_EXPLAINERS = frozenset({"random"})


def eps_text(eps: float) -> str:
    """An L∞ budget as the papers write it: ``4/255`` when it is a whole number of grey levels."""
    levels = eps * 255
    if eps > 0 and abs(levels - round(levels)) < 1e-6:
        return f"{round(levels)}/255"
    return f"{eps:g}"


def condition_text(condition: Condition) -> str:
    """``"pgd ε = 4/255"`` (or ``"clean"``)."""
    name, eps = condition
    return CLEAN if name == CLEAN else f"{name} ε = {eps_text(eps)}"


def model_names(run: RunData) -> list[str]:
    """The run's models in the order of its config (else sorted)."""
    configured = [str(m.get("name")) for m in _config_models(run)]
    stored = sorted({str(m) for m in run.predictions["model"]})
    return [m for m in configured if m in stored] + [m for m in stored if m not in configured]


def _config_models(run: RunData) -> list[JsonObject]:
    config = run.meta.get("config")
    models = config.get("models") if isinstance(config, dict) else None
    return [m for m in models if isinstance(m, dict) and "name" in m] if isinstance(models, list) else []


def model_configs(run: RunData) -> dict[str, dict[str, object]]:
    """Per model: ``arch``, ``training``, ``init_from``, ``eps`` from the config, else the ``models`` row.

    ``eps`` is the resolved training budget: 0 for standard training; for PGD the model's own ``eps``, else
    the run's ``training.eps``; ``None`` when the store does not say (a PGD model of a store without config).
    """
    out: dict[str, dict[str, object]] = {}
    if not run.models.empty:
        for row in run.models.to_dict("records"):
            out[str(row["model"])] = {"arch": row.get("arch"), "training": row.get("training")}
    for m in _config_models(run):
        out.setdefault(str(m["name"]), {}).update(
            {k: m.get(k) for k in ("arch", "training", "init_from", "eps") if m.get(k) is not None}
        )
    default = _number(_config_section(run, "training").get("eps"))
    for cfg in out.values():
        own = _number(cfg.get("eps"))
        cfg["eps"] = 0.0 if cfg.get("training") == "standard" else own if own is not None else default
    return out


def _config_section(run: RunData, name: str) -> JsonObject:
    """One table of the run's stored config (``{}`` when absent or not a table)."""
    config = run.meta.get("config")
    section = config.get(name) if isinstance(config, dict) else None
    return section if isinstance(section, dict) else {}


def _number(value: object) -> float | None:
    """``value`` as a finite float, else ``None`` (a missing or hand-edited entry)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def primary_condition(run: RunData) -> Condition | None:
    """The run's primary attack and budget (``meta.primary_attack``).

    ``None`` when it is not recorded, or its ε is not a number (a hand-edited store): the claims that need it
    are then inconclusive instead of failing.
    """
    primary = run.meta.get("primary_attack")
    if isinstance(primary, dict) and primary.get("attack"):
        eps = primary.get("epsilon") or 0.0
        if isinstance(eps, int | float | str):
            try:
                return (str(primary["attack"]), float(eps))
            except ValueError:
                return None
    return None


def attack_conditions(run: RunData) -> list[Condition]:
    """Every attacked condition of the predictions (no clean, no manipulation), sorted."""
    pairs = run.predictions[["condition", "epsilon"]].drop_duplicates()
    return sorted(
        (str(c), float(e)) for c, e in pairs.itertuples(index=False) if c != CLEAN and not is_manipulation(c)
    )


# The metrics split by metric name and the predictions by condition, for the latest run seen (a run can hold
# a million metric rows, and the claims read a few of them many times): ``id(frame) → (weak ref, split)``.
_SPLIT: dict[int, tuple[weakref.ref[pd.DataFrame], dict[str, pd.DataFrame]]] = {}


def _split(frame: pd.DataFrame, column: str) -> dict[str, pd.DataFrame]:
    """``frame``'s rows by the value of ``column``, computed once per frame (the latest two are kept)."""
    hit = _SPLIT.get(id(frame))
    if hit is None or hit[0]() is not frame:
        if len(_SPLIT) >= 2:
            clear_cache()
        hit = (weakref.ref(frame), {str(k): rows for k, rows in frame.groupby(column, sort=False)})
        _SPLIT[id(frame)] = hit
    return hit[1]


def metric_rows(run: RunData, metric: str) -> pd.DataFrame:
    """The run's ``metrics`` rows of one metric name (split once per metrics frame, then looked up)."""
    return _split(run.metrics, "metric").get(metric, run.metrics.iloc[0:0])


def metric_names(run: RunData) -> list[str]:
    """Every metric name stored in the run, sorted."""
    return sorted(_split(run.metrics, "metric"))


def clear_cache() -> None:
    """Forget the split metrics table (:func:`robustxai.claims.evaluate_claims` calls it when done)."""
    _SPLIT.clear()


def _at(frame: pd.DataFrame, condition: Condition) -> pd.DataFrame:
    name, eps = condition
    keep = (frame["condition"] == name) & np.isclose(frame["epsilon"].astype(np.float64), eps, atol=1e-9)
    return frame[keep]


def _matrix(rows: pd.DataFrame, models: list[str], value: str) -> tuple[list[str], np.ndarray]:
    """``[models, images]`` of ``value`` over the images every model has (mean over duplicates)."""
    if rows.empty:
        return [], np.empty((len(models), 0))
    wide = rows.groupby(["model", "sample_id"])[value].mean().unstack("sample_id")
    present = rows.groupby("sample_id")["model"].nunique()
    ids = sorted(str(s) for s in present.index[present == len(models)])
    return ids, wide.reindex(index=models, columns=ids).to_numpy(dtype=np.float64)


def correct_matrix(run: RunData, condition: Condition, models: list[str]) -> tuple[list[str], np.ndarray]:
    """0/1 correct ``[models, images]`` under ``condition`` on the images every model was evaluated on."""
    rows = _at(_split(run.predictions, "condition").get(condition[0], run.predictions.iloc[0:0]), condition)
    rows = rows[rows["model"].isin(models)].assign(correct=lambda f: f["correct"].astype(np.float64))
    return _matrix(rows, models, "correct")


def metric_matrix(
    run: RunData, condition: Condition, metric: str, models: list[str], explainers: list[str]
) -> tuple[list[str], np.ndarray]:
    """Per model × image: ``metric`` under ``condition``, averaged over ``explainers`` (NaN: undefined).

    Averaging over the explainers per image keeps the image the unit of resampling; an image counts when
    every model has a row for it (a NaN value, e.g. an image without points, stays NaN).
    """
    rows = _at(metric_rows(run, metric), condition)
    rows = rows[rows["model"].isin(models) & rows["explainer"].isin(explainers)]
    return _matrix(rows, models, "value")


def explainers_of(run: RunData, metric: str, conditions: Iterable[Condition] | None = None) -> list[str]:
    """The map methods (controls left out) that have ``metric`` rows, sorted.

    With ``conditions``, only rows under one of them count: the manipulation stage stores ``map_ssim`` of
    the methods it attacked, which say nothing about which methods explained the FGSM/BIM images.
    """
    rows = metric_rows(run, metric)
    if conditions is not None:
        rows = pd.concat([rows.iloc[0:0], *(_at(rows, c) for c in conditions)])
    return sorted({str(e) for e in rows["explainer"].unique()} - CONTROL_EXPLAINERS - {""})


def conditions_with(run: RunData, metric: str, conditions: Iterable[Condition]) -> list[Condition]:
    """Those of ``conditions`` (in order) under which the run stored ``metric`` rows (an explained budget)."""
    rows = metric_rows(run, metric)
    return [c for c in conditions if not _at(rows, c).empty]


def nan_mean(values: np.ndarray) -> float:
    """Mean of the finite values (NaN when there is none)."""
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    return float(arr.mean()) if arr.size else math.nan
