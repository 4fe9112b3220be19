"""Audit stages 3–4 on one shard: robustness (predictions under one condition) and explanations (maps).

Each function takes the tensors of one shard and returns rows in the store's layout; only the driver writes
them (see :mod:`robustxai.audit._plan` for how shards become units). Work is batched across the images of a
shard in the same batches a whole-set run would use (shards are whole multiples of the batch size), so the
numbers do not depend on how the test set was sharded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from robustxai._errors import RobustXAIError
from robustxai._validate import check_images
from robustxai.attacks import create_attack
from robustxai.audit._batching import explain_rows, model_batch
from robustxai.audit._config import AuditConfig, ExplainConfig
from robustxai.explain import Explainer, create_explainer
from robustxai.explain._deeplift import DELTA_TOLERANCE
from robustxai.metrics import MapInputs, MetricInfo, evaluate, map_metrics
from robustxai.models import ModelWrapper
from robustxai.results._metric_keys import stored_keys
from robustxai.results._schema import (
    CLEAN_CONDITION,
    LABEL,
    NO_EXPLAINER,
    SCORE,
    Condition,
    FigureMapRow,
    MetricKey,
    MetricRow,
    PredictionRow,
    WarningRow,
)
from robustxai.results._store import APPROXIMATE_CODE, APPROXIMATE_MARK


def conditions_of(cfg: AuditConfig) -> list[Condition]:
    """Clean first, then every configured attack × ε, in config order."""
    return [CLEAN_CONDITION] + [(a.name, float(e)) for a in cfg.attacks for e in a.epsilons]


@dataclass
class ExplainShard:
    """The annotated images of one explanation shard: ids, truth, and the input per condition."""

    ids: list[str]
    images: dict[Condition, torch.Tensor]  # clean and attacked versions, each [S, C, H, W]
    masks: torch.Tensor  # [S, H, W] bool
    points: list[np.ndarray]  # per image, (x, y)
    n_figure: int  # the first n_figure images of the shard are drawn in the report


#: Largest number of labels whose 0/1 row still fits an SQLite integer as a bitmask.
MAX_BITMASK_LABELS = 62


def label_code(label: int | float | list[float] | torch.Tensor) -> int:
    """A label as one integer: the class index, or a multi-label 0/1 row as a bitmask (label k → bit k).

    Rows of more than :data:`MAX_BITMASK_LABELS` labels, or with values other than 0/1, give -1 (the
    per-label values are in the ``metrics`` table then).
    """
    if isinstance(label, torch.Tensor):
        label = label.tolist()
    if not isinstance(label, list):
        return int(label)
    if len(label) > MAX_BITMASK_LABELS or any(v not in (0, 1) for v in label):
        return -1
    return sum(1 << k for k, v in enumerate(label) if v == 1)


def robustness_shard(
    name: str,
    model: ModelWrapper,
    cfg: AuditConfig,
    cond: Condition,
    images: torch.Tensor,
    labels: torch.Tensor,
    ids: list[str],
) -> tuple[list[PredictionRow], torch.Tensor, list[MetricRow]]:
    """Predictions of one model under one condition on one shard, and the (attacked) inputs.

    A multi-label model (``model.task == "multilabel"``, labels 0/1 ``[N, K]``) is attacked on its BCE task
    loss; its prediction row holds the label and the prediction (logit > 0) as bitmasks (:func:`label_code`)
    and ``correct`` means every label is right (exact match). Its per-label logits and targets go to the
    ``metrics`` table (explainer ``""``, metrics ``score@<label>`` and ``label@<label>``), from which the
    report computes per-label AUC and accuracy (:mod:`robustxai.report._multilabel`).

    Args:
        name: The model's name in the config.
        model: The model (set to eval mode).
        cfg: The audit configuration (attack parameters, batch size).
        cond: ``CLEAN_CONDITION`` or ``(attack name, ε)``.
        images: The shard's images ``[N, C, H, W]`` in [0, 1].
        labels: Their labels ``[N]`` (multi-label: ``[N, K]``).
        ids: Their sample ids.

    Returns:
        One prediction row per image, the images the model saw (adversarial unless clean), and metric rows
        (multi-label models only; empty otherwise).
    """
    model.eval()
    bs = model_batch(cfg, name)
    if cond == CLEAN_CONDITION:
        adv = images
    else:
        spec = next(a for a in cfg.attacks if a.name == cond[0])
        attack = create_attack(spec.name, eps=cond[1], **spec.params)
        adv = torch.cat(
            [attack(model, x, y) for x, y in zip(images.split(bs), labels.split(bs), strict=True)]
        )
    if model.task == "multilabel":
        rows, metric_rows = _multilabel_rows(name, model, cond, adv, labels, ids, bs)
        return rows, adv.detach(), metric_rows
    preds = _predictions(name, model, cond, adv, bs)
    rows = [
        PredictionRow(name, cond[0], cond[1], sid, int(y), int(p), int(y == p))
        for sid, y, p in zip(ids, labels.tolist(), preds.tolist(), strict=True)
    ]
    return rows, adv.detach(), []


def _check_finite(name: str, cond: Condition, logits: torch.Tensor) -> None:
    """Refuse NaN or ±inf outputs: ``argmax`` would silently read them as class 0, a wrong accuracy."""
    bad = int((~torch.isfinite(logits).all(dim=1)).sum())
    if bad:
        where = "clean images" if cond == CLEAN_CONDITION else f"{cond[0]} at ε = {cond[1]:.4g}"
        raise RobustXAIError(
            f"model {name!r} gives non-finite outputs (NaN or ±inf) for {bad} of {len(logits)} images "
            f"({where})"
        )


@torch.inference_mode()
def _predictions(
    name: str, model: ModelWrapper, cond: Condition, images: torch.Tensor, bs: int
) -> torch.Tensor:
    """Class indices of a multi-class model (what ``model.predict`` gives), after checking the logits."""
    check_images(images)
    logits = torch.cat([model(x) for x in images.split(bs)])
    _check_finite(name, cond, logits)
    return logits.argmax(dim=1)


@torch.inference_mode()
def _multilabel_rows(
    name: str,
    model: ModelWrapper,
    cond: Condition,
    images: torch.Tensor,
    labels: torch.Tensor,
    ids: list[str],
    bs: int,
) -> tuple[list[PredictionRow], list[MetricRow]]:
    """Exact-match prediction rows (bitmasks) and per-label logit/target rows of a multi-label model."""
    logits = torch.cat([model(x) for x in images.split(bs)]).double().cpu()
    _check_finite(name, cond, logits)
    targets = labels.to(logits.dtype).cpu()
    if targets.shape != logits.shape:
        raise RobustXAIError(
            f"multi-label targets must have shape {tuple(logits.shape)}, got {tuple(targets.shape)}"
        )
    preds = (logits > 0).to(logits.dtype)
    exact = (preds == targets).all(dim=1)
    rows: list[PredictionRow] = [
        PredictionRow(name, cond[0], cond[1], sid, label_code(y), label_code(p), int(ok))
        for sid, y, p, ok in zip(ids, targets.tolist(), preds.tolist(), exact.tolist(), strict=True)
    ]
    metric_rows: list[MetricRow] = []
    for k, label in enumerate(model.class_names):
        for sid, score, y in zip(ids, logits[:, k].tolist(), targets[:, k].tolist(), strict=True):
            score_key, label_key = str(MetricKey(SCORE, str(label))), str(MetricKey(LABEL, str(label)))
            metric_rows.append(MetricRow(name, cond[0], cond[1], NO_EXPLAINER, score_key, sid, float(score)))
            metric_rows.append(MetricRow(name, cond[0], cond[1], NO_EXPLAINER, label_key, sid, float(y)))
    return rows, metric_rows


SUMMATION_WARNING = (
    f"DeepLIFT's attributions do not add up to f(x) − f(x₀) on some images (they miss by more than "
    f"{DELTA_TOLERANCE:g} of it): the model has a non-linearity DeepLIFT's rescale rule does not cover (an "
    "attention product or a softmax, GELU, SiLU, a functional F.relu), so its DeepLIFT maps are not a "
    "decomposition of the output difference; compare them with the other methods' rather than read them alone"
)


#: Why a method's maps are approximate, for the run warning (code
#: :data:`~robustxai.results._store.APPROXIMATE_CODE`, set from
#: :attr:`robustxai.explain.Explanation.approximate`).
APPROXIMATE_MESSAGES = {"deeplift": SUMMATION_WARNING}


def approximate_warning(name: str, method: str) -> WarningRow:
    """The run warning of a model × method whose maps are approximate (code :data:`APPROXIMATE_CODE`)."""
    why = APPROXIMATE_MESSAGES.get(method, "the method reports its maps as approximate on this model")
    return WarningRow(name, APPROXIMATE_CODE, f"{method}: {why} (marked {APPROXIMATE_MARK} in the tables)")


def _maps(
    explainer: Explainer, model: ModelWrapper, images: torch.Tensor, bs: int
) -> tuple[torch.Tensor, bool]:
    """Maps of ``images`` in batches of ``bs``, and whether any batch's maps were approximate."""
    found = [explainer.explain(model, x) for x in images.split(bs)]
    return torch.cat([e.maps for e in found]), any(e.approximate for e in found)


def _settings(info: MetricInfo, explain: ExplainConfig) -> dict[str, object]:
    """The keywords ``info`` fills from the ``explain`` configuration (its declared ``settings``)."""
    out: dict[str, object] = {}
    for keyword, field in info.settings:
        if field not in ExplainConfig.model_fields:
            raise RobustXAIError(f"metric {info.name!r} reads explain.{field}, which the configuration lacks")
        out[keyword] = getattr(explain, field)
    return out


def metric_rows(
    key: tuple[str, str, float, str],
    inputs: MapInputs,
    ids: list[str],
    explain: ExplainConfig,
) -> list[MetricRow]:
    """Per-sample values of every registered map metric on ``inputs.maps`` (one per image of ``ids``).

    The metric registry says what to compute: each per-sample map metric at each of its top-k fractions
    (``explain.tops`` where it asks for the configured ones), with its settings read from ``explain`` (the
    pointing game's radius). A metric that compares two maps (``maps_pair``) is computed only when
    ``inputs.reference`` holds the clean maps. A value that is undefined for an image (no mask, no points) is
    NaN and left out of means by the report.
    """
    model, cond, eps, expl = key
    rows: list[MetricRow] = []
    for info in map_metrics():
        if info.needs == "maps_pair" and inputs.reference is None:
            continue
        settings = _settings(info, explain)
        for metric_key, top in stored_keys(info, explain.tops):
            params = settings if top is None else {**settings, "top": top}
            vals = evaluate(info, inputs, **params)
            name = str(metric_key)
            rows += [
                MetricRow(model, cond, eps, expl, name, sid, float(v))
                for sid, v in zip(ids, vals.tolist(), strict=True)
            ]
    return rows


def explainer_for(cfg: AuditConfig, method: str, model: str | None = None) -> Explainer:
    """The configured explainer ``method`` (the random baseline is seeded by the audit seed).

    With ``model`` set to a model that has its own ``batch_size``, that caps the explainer's rows per pass
    (where it takes a ``batch_size`` keyword the config leaves unset).
    """
    params = {"seed": cfg.seed} if method == "random" else cfg.explain.params.get(method, {})
    explainer = create_explainer(method, **params)
    rows = None if model is None else explain_rows(cfg, model)
    if rows is not None and "batch_size" in explainer.params() and "batch_size" not in params:
        explainer = create_explainer(method, **params, batch_size=rows)
    return explainer


def explain_batch(cfg: AuditConfig, model: str) -> int:
    """Images per explainer call of ``model``: ``explain.batch_size``, at most the model's own batch size."""
    rows = explain_rows(cfg, model)
    return cfg.explain.batch_size if rows is None else min(cfg.explain.batch_size, rows)


def explanation_shard(
    name: str,
    model: ModelWrapper,
    cfg: AuditConfig,
    method: str,
    shard: ExplainShard,
    figure_conditions: set[Condition],
) -> tuple[list[MetricRow], list[FigureMapRow], list[WarningRow]]:
    """Maps of one explainer on every condition of one shard, and every registered map metric on them.

    The clean maps are computed first; each attacked condition's maps are compared with them (the
    ``maps_pair`` metrics, stored as ``map_ssim`` …), which is why one unit holds every condition of an
    explainer × shard. A multi-label model's map explains its highest-logit label on each image (the
    explainers' default target).

    Args:
        name: The model's name in the config.
        model: The model (set to eval mode).
        cfg: The audit configuration.
        method: An explainer name or ``"random"``.
        shard: The images, truth and figure count of the shard.
        figure_conditions: Conditions whose maps the report draws.

    Returns:
        Metric rows (store layout), figure-map rows and warnings: one :data:`APPROXIMATE_CODE` row when
        some of the maps are approximate (DeepLIFT's attributions that do not add up to the output
        difference on this model: :data:`SUMMATION_WARNING`).
    """
    model.eval()
    explainer = explainer_for(cfg, method, name)
    rows: list[MetricRow] = []
    fig_rows: list[FigureMapRow] = []
    clean_maps: torch.Tensor | None = None
    approximate = False
    for cond, images in shard.images.items():
        maps, approx = _maps(explainer, model, images, explain_batch(cfg, name))
        approximate = approximate or approx
        key = (name, cond[0], cond[1], method)
        reference = clean_maps if cond != CLEAN_CONDITION else None
        inputs = MapInputs(maps, masks=shard.masks, points=shard.points, reference=reference)
        rows += metric_rows(key, inputs, shard.ids, cfg.explain)
        if cond == CLEAN_CONDITION:
            clean_maps = maps
        if cond in figure_conditions and method != "random":
            for sid, m in zip(shard.ids[: shard.n_figure], maps[: shard.n_figure], strict=True):
                fig_rows.append(FigureMapRow(name, cond[0], cond[1], method, sid, m.detach().cpu().numpy()))
    warnings = [approximate_warning(name, method)] if approximate else []
    return rows, fig_rows, warnings
