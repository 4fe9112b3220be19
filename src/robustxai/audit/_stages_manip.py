"""Audit stage: the explanation-manipulation attack, its metrics and its figure material (issue 5).

For every attacked method the stage steers the maps of ``n_images`` annotated test images to the default
target (a square in the corner farthest from the ground truth) and scores the result with maps computed
by the *registered explainers on the original ReLU model* — never with the attack's smooth surrogate.
Rows use the store's ``metrics`` layout ``(model, condition, epsilon, explainer, metric, sample_id, value)``
with ``condition = "manipulate:<attacked method>"``, ``epsilon`` the L∞ bound (0 when unbounded) and
``explainer`` the method whose map is scored (``""`` for metrics of the image or the prediction):

- ``target_ssim``: SSIM(target, attacked map); ``unsuccessful`` = 1 when it is below 0.6 (the paper);
- ``map_ssim``, ``map_mse``, ``map_pearson``: original vs attacked map (min-max normalised), i.e. every
  registered ``maps_pair`` metric under its stored name, computed through the metric registry;
- ``image_ssim`` and ``prediction_unchanged`` (explainer ``""``);
- ``label@k``, ``clean_score@k``, ``adv_score@k`` (explainer ``""``): 0/1 target and probability of
  label/class k on the clean and attacked image, from which the report computes the AUC change.

Transfer: on the images attacked through a method in ``transfer_from`` (the paper: Integrated Gradients
and Grad-CAM), every other configured method and every ``evaluate`` method (e.g. occlusion, LIME, XRAI) is
scored too, giving the rows × columns of the transfer matrix.

Figure rows (the store's ``figure_maps``) for the first ``report.n_figure`` images: condition
``"manipulate:original"`` holds the original maps and the ``target``; each ``"manipulate:<method>"``
holds the attacked image (explainer ``adv_image``) and the maps evaluated on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from robustxai._errors import ConfigError, NotApplicableError
from robustxai.audit._applicability import Skipped, skipped_for
from robustxai.audit._config import AuditConfig, ManipulationConfig
from robustxai.audit._plan import (
    UNIT_KINDS,
    AuditData,
    Unit,
    UnitKind,
    UnitResult,
    register_unit_kind,
    shards,
)
from robustxai.explain import Explainer, create_explainer
from robustxai.manipulate import Manipulate, MaskOrPoints, create_manipulation, explained_class
from robustxai.metrics import MapInputs, evaluate, map_metrics as registered_map_metrics, peak_in_region, ssim
from robustxai.models import ModelWrapper
from robustxai.models._losses import is_multilabel
from robustxai.results._metric_keys import stored_keys
from robustxai.results._schema import (
    ADV_SCORE,
    CLEAN_SCORE,
    LABEL,
    MANIPULATION_IMAGE,
    MANIPULATION_ORIGINAL,
    MANIPULATION_TARGET,
    MANIPULATION_UNIT,
    NO_EXPLAINER,
    FigureMapRow,
    MetricKey,
    MetricRow,
    manipulation_condition,
)

ORIGINAL_CONDITION = MANIPULATION_ORIGINAL
TARGET_EXPLAINER = MANIPULATION_TARGET
IMAGE_EXPLAINER = MANIPULATION_IMAGE
#: The paper's failure threshold on SSIM(target, attacked map).
SUCCESS_SSIM = 0.6


def check_manipulation_config(cfg: AuditConfig) -> None:
    """Create every attack and explainer the stage will use once, so bad names fail before any work."""
    mc = cfg.manipulation
    if mc is None:
        return
    unknown = sorted(set(mc.models or []) - {m.name for m in cfg.models})
    if unknown:
        raise ConfigError(
            f"manipulation.models names unknown model(s) {', '.join(unknown)}; "
            f"configured: {', '.join(m.name for m in cfg.models)}"
        )
    stray = sorted(set(mc.method_params) - set(mc.methods))
    if stray:
        raise ConfigError(
            f"manipulation.method_params names method(s) not attacked: {', '.join(stray)}; "
            f"attacked: {', '.join(mc.methods)}"
        )
    for method in mc.methods:
        _attack(mc, method)
    for method in {*mc.methods, *mc.evaluate}:
        create_explainer(method, **cfg.explain.params.get(method, {}))


def _attack(mc: ManipulationConfig, method: str) -> Manipulate:
    """The attack on ``method``: the table's settings, then ``method_params[method]`` on top.

    Saliency and Grad-CAM maps respond to the step size and the image-similarity weight in opposite
    directions, so one setting rarely suits both; per-method overrides keep one config honest for each.
    """
    override = dict(mc.method_params.get(method, {}))
    extra = override.pop("params", {})
    if not isinstance(extra, dict):
        raise ConfigError(f"manipulation.method_params.{method}.params must be a table, got {extra!r}")
    params = {**mc.params, **extra}
    keywords = {
        "method": method,
        "iterations": mc.iterations,
        "lr": mc.lr,
        "alpha_map": mc.alpha_map,
        "alpha_pred": mc.alpha_pred,
        "eps": mc.eps,
        "target_size": mc.target_size,
        **override,
        **params,
    }
    return create_manipulation("manipulate", **keywords)


def _truths(masks: torch.Tensor, points: list[np.ndarray]) -> list[MaskOrPoints]:
    """Per image: its mask when it has one, else its points (``None`` when neither)."""
    out: list[MaskOrPoints] = []
    for mask, pts in zip(masks, points, strict=True):
        if bool(mask.any()):
            out.append(mask.cpu().numpy().astype(bool))
        elif len(pts):
            out.append(np.asarray(pts, dtype=np.float64))
        else:
            out.append(None)
    return out


def _scores(model: ModelWrapper, logits: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(logits) if is_multilabel(model) else torch.softmax(logits, dim=1)


def _label_columns(model: ModelWrapper, labels: torch.Tensor, k: int) -> torch.Tensor:
    if is_multilabel(model):
        return labels.float()
    return torch.nn.functional.one_hot(labels.long(), k).float()


@dataclass
class ManipulationShard:
    """The annotated images of one manipulation shard.

    Attributes:
        ids: Sample ids.
        images: Clean images ``[S, C, H, W]`` in [0, 1].
        labels: Labels ``[S]`` (or ``[S, K]`` 0/1 for multi-label models).
        masks: Ground-truth masks ``[S, H, W]`` (all-false where an image has none).
        points: Ground-truth points per image, (x, y).
        n_figure: The first ``n_figure`` images are drawn in the report.
    """

    ids: list[str]
    images: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor
    points: list[np.ndarray]
    n_figure: int


def manipulation_shard(
    name: str, model: ModelWrapper, cfg: AuditConfig, method: str, shard: ManipulationShard
) -> tuple[list[MetricRow], list[FigureMapRow]]:
    """Manipulate the maps of one method on one shard and score the result (see the module docstring).

    Pure: the output depends only on the config, the model and the shard.

    Args:
        name: The model's name in the run.
        model: The audited model (its ReLU version is what maps and predictions come from).
        cfg: The audit configuration (``cfg.manipulation`` must be set).
        method: The attacked method (one of ``cfg.manipulation.methods``).
        shard: The images and their truth.

    Returns:
        Metric rows for the store's ``metrics`` table and figure rows for ``figure_maps``.
    """
    mc = cfg.manipulation
    if mc is None:
        return [], []
    model.eval()
    bs = mc.batch_size
    x, y, ids = shard.images, shard.labels, shard.ids
    eps = float(mc.eps or 0.0)
    fig_ids = ids[: shard.n_figure]
    classes = torch.cat([explained_class(model, xb) for xb in x.split(bs)])
    with torch.no_grad():
        clean_logits = torch.cat([model(xb) for xb in x.split(bs)])
    attack = _attack(mc, method)
    targets = attack.target_maps(x, None, _truths(shard.masks, shard.points))
    adv = torch.cat(
        [
            attack(model, xb, yb, target_maps=tb)
            for xb, yb, tb in zip(x.split(bs), y.split(bs), targets.split(bs), strict=True)
        ]
    )
    with torch.no_grad():
        adv_logits = torch.cat([model(xb) for xb in adv.split(bs)])
    cond = manipulation_condition(method)
    per_sample = {
        "image_ssim": ssim(x.mean(dim=1), adv.mean(dim=1), normalize=False),
        "prediction_unchanged": _same_prediction(model, clean_logits, adv_logits),
    }
    k = clean_logits.shape[1]
    label_cols = _label_columns(model, y, k)
    clean_scores, adv_scores = _scores(model, clean_logits), _scores(model, adv_logits)
    for j in range(k):
        per_sample[str(MetricKey(LABEL, str(j)))] = label_cols[:, j]
        per_sample[str(MetricKey(CLEAN_SCORE, str(j)))] = clean_scores[:, j]
        per_sample[str(MetricKey(ADV_SCORE, str(j)))] = adv_scores[:, j]
    rows = _rows(name, cond, eps, NO_EXPLAINER, ids, per_sample)
    fig_rows: list[FigureMapRow] = [
        FigureMapRow(name, ORIGINAL_CONDITION, eps, TARGET_EXPLAINER, s, t.cpu().numpy())
        for s, t in zip(fig_ids, targets, strict=False)
    ]
    fig_rows += [
        FigureMapRow(name, cond, eps, IMAGE_EXPLAINER, s, a.mean(dim=0).cpu().numpy())
        for s, a in zip(fig_ids, adv, strict=False)
    ]
    evaluated = [method]
    if method in mc.transfer_from:
        evaluated += [m for m in dict.fromkeys([*mc.methods, *mc.evaluate]) if m != method]
    for ev in evaluated:
        explainer = create_explainer(ev, **cfg.explain.params.get(ev, {}))
        if explainer.applicable(model) is not None:  # a transfer column this model cannot have
            continue
        original = _maps(explainer, model, x, classes, bs)
        attacked = _maps(explainer, model, adv, classes, bs)
        rows += _rows(name, cond, eps, ev, ids, map_metrics(original, attacked, targets))
        fig_rows += [
            FigureMapRow(name, ORIGINAL_CONDITION, eps, ev, s, m.cpu().numpy())
            for s, m in zip(fig_ids, original, strict=False)
        ]
        fig_rows += [
            FigureMapRow(name, cond, eps, ev, s, m.cpu().numpy())
            for s, m in zip(fig_ids, attacked, strict=False)
        ]
    return rows, fig_rows


def _maps(
    explainer: Explainer, model: ModelWrapper, images: torch.Tensor, classes: torch.Tensor, bs: int
) -> torch.Tensor:
    """Maps of the real (ReLU) model from the registered explainer, for the attacked class."""
    out = [
        explainer.explain(model, xb, target=cb).maps
        for xb, cb in zip(images.split(bs), classes.split(bs), strict=True)
    ]
    return torch.cat(out).detach()


def map_metrics(
    original: torch.Tensor, attacked: torch.Tensor, targets: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Per-image similarities of one explainer's maps (the paper's protocol: min-max normalised maps).

    Args:
        original: Maps of the clean images ``[B, H, W]``.
        attacked: Maps of the manipulated images ``[B, H, W]``.
        targets: Target maps ``[B, H, W]``.

    Returns:
        ``target_ssim``, ``unsuccessful`` (SSIM(target, map) < 0.6 as 0/1), ``peak_in_target`` (0/1: the
        attacked map's maximum lies inside the target region; with tied maxima, most of them — see
        :func:`~robustxai.metrics.peak_in_region`), and every registered ``maps_pair`` metric
        of original vs attacked under its stored name (``map_ssim``, ``map_mse``, ``map_pearson``: the metric
        registry says what to compute, as in the explanation stage), each ``[B]``. ``peak_in_target`` is not
        the paper's criterion; it is reported beside it because SSIM against a small target is dominated by
        the area outside it, so a sparse map can pass the 0.6 threshold without pointing at the target.
    """
    target_ssim = ssim(targets.to(attacked.dtype), attacked)
    out = {
        "target_ssim": target_ssim,
        "unsuccessful": (target_ssim < SUCCESS_SSIM).to(torch.float64),
        "peak_in_target": peak_in_region(attacked, targets > 0.5),
    }
    pair = MapInputs(maps=attacked, reference=original)
    for info in registered_map_metrics():
        if info.needs == "maps_pair":
            for key, _ in stored_keys(info, ()):
                out[str(key)] = evaluate(info, pair)
    return out


def _same_prediction(model: ModelWrapper, clean: torch.Tensor, adv: torch.Tensor) -> torch.Tensor:
    if is_multilabel(model):
        return ((clean > 0) == (adv > 0)).all(dim=1).to(torch.float64)
    return (clean.argmax(dim=1) == adv.argmax(dim=1)).to(torch.float64)


def _rows(
    model: str, cond: str, eps: float, explainer: str, ids: list[str], values: dict[str, torch.Tensor]
) -> list[MetricRow]:
    return [
        MetricRow(model, cond, eps, explainer, metric, sid, float(v))
        for metric, vals in values.items()
        for sid, v in zip(ids, vals.tolist(), strict=True)
    ]


# -- the unit kind (registered with the audit plan when this module is imported) -------------------------
def manipulation_units(cfg: AuditConfig, data: AuditData) -> list[Unit]:
    """Units model × attacked method × shard of the first ``n_images`` annotated test images.

    Only the models named in ``manipulation.models`` are attacked when it is set.
    """
    mc = cfg.manipulation
    if mc is None:
        return []
    n = min(mc.n_images, len(data.subset))
    eps = float(mc.eps or 0.0)
    units = []
    for m in cfg.models:
        if not mc.attacks(m.name):
            continue
        for method in mc.methods:
            for k, positions in enumerate(shards(n, mc.batch_size)):
                uid = f"{MANIPULATION_UNIT}/{m.name}/{method}/{k}"
                cond = (manipulation_condition(method), eps)
                units.append(Unit(uid, MANIPULATION_UNIT, m.name, k, positions, cond, method))
    return units


def prepare_manipulation(unit: Unit, cfg: AuditConfig, data: AuditData) -> ManipulationShard:
    """Load a unit's clean images, labels and truth (driver side)."""
    test_idx = [data.subset[p] for p in unit.indices]
    images, labels = data.load(tuple(test_idx))
    return ManipulationShard(
        ids=[data.ids[i] for i in test_idx],
        images=images,
        labels=labels,
        masks=data.masks[list(unit.indices)],
        points=[data.points[p] for p in unit.indices],
        n_figure=sum(1 for p in unit.indices if p < cfg.report.n_figure),
    )


def run_manipulation_unit(
    unit: Unit, model: ModelWrapper, cfg: AuditConfig, shard: ManipulationShard
) -> UnitResult:
    """Run one manipulation unit (worker side, pure); a method that fails on the model skips the pair."""
    assert unit.explainer is not None
    try:
        rows, fig_rows = manipulation_shard(unit.model, model, cfg, unit.explainer, shard)
    except NotApplicableError as err:  # e.g. a Grad-CAM layer named in the config with no grid on this model
        skipped = skipped_for(Skipped(MANIPULATION_UNIT, unit.model, unit.explainer, str(err)))
        return UnitResult({"metrics": [], "figure_maps": [], "warnings": skipped})
    return UnitResult({"metrics": list(rows), "figure_maps": list(fig_rows)})


def manipulation_applicable(cfg: AuditConfig, model: ModelWrapper) -> dict[str, str]:
    """The attacked methods whose maps cannot be computed, or steered, on ``model``, with the reason."""
    mc = cfg.manipulation
    out: dict[str, str] = {}
    if mc is None:
        return out
    for method in mc.methods:
        explainer = create_explainer(method, **cfg.explain.params.get(method, {}))
        reason = explainer.applicable(model) or _attack(mc, method).applicable(model)
        if reason is not None:
            out[method] = reason
    return out


MANIPULATION_KIND = UnitKind(
    MANIPULATION_UNIT,
    manipulation_units,
    prepare_manipulation,
    run_manipulation_unit,
    manipulation_applicable,
    lambda cfg, model: cfg.manipulation is not None and cfg.manipulation.attacks(model),
)
if MANIPULATION_KIND.name not in UNIT_KINDS:
    register_unit_kind(MANIPULATION_KIND)
