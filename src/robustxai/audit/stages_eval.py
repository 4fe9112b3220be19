"""Audit stages 3–4: robustness (predictions under each attack) and explanations (maps and their metrics).

Each stage returns rows in the store's layout; only the runner writes them. Work is batched across images;
adversarial images of the explanation subset are kept so maps are computed on exactly the attacked inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from robustxai.attacks import create_attack
from robustxai.audit.config import AuditConfig
from robustxai.audit.progress import Progress
from robustxai.explain import Explainer, create_explainer
from robustxai.metrics import mask_area, point_coverage, rmse, ssim, topk_iou
from robustxai.models import ModelWrapper

Condition = tuple[str, float]  # (attack name or "clean", epsilon)
CLEAN: Condition = ("clean", 0.0)

PredRow = tuple[str, str, float, str, int, int, int]
MetricRow = tuple[str, str, float, str, str, str, float]


@dataclass
class EvalData:
    """The test tensors and the annotated subset that explanations are computed on."""

    images: torch.Tensor
    labels: torch.Tensor
    ids: list[str]
    subset: list[int]
    masks: torch.Tensor  # [S, H, W] bool, for the subset
    points: list[np.ndarray]  # per subset image, (x, y)


@dataclass
class RobustnessResult:
    """Prediction rows and the adversarial versions of the explanation subset per condition."""

    rows: list[PredRow] = field(default_factory=list)
    subset_images: dict[Condition, torch.Tensor] = field(default_factory=dict)


def run_robustness(
    name: str, model: ModelWrapper, cfg: AuditConfig, data: EvalData, progress: Progress
) -> RobustnessResult:
    """Clean and adversarial predictions of one model on the whole test set."""
    model.eval()
    bs = cfg.batch_size
    out = RobustnessResult()
    conditions: list[Condition] = [CLEAN] + [(a.name, float(e)) for a in cfg.attacks for e in a.epsilons]
    n_batches = (len(data.labels) + bs - 1) // bs
    task = progress.start(f"attacking {name}", n_batches * (len(conditions) - 1) + 1)
    for cond in conditions:
        if cond == CLEAN:
            adv = data.images
        else:
            spec = next(a for a in cfg.attacks if a.name == cond[0])
            attack = create_attack(spec.name, eps=cond[1], **spec.params)
            chunks = []
            for x, y in zip(data.images.split(bs), data.labels.split(bs), strict=True):
                chunks.append(attack(model, x, y))
                progress.advance(task)
            adv = torch.cat(chunks)
        preds = model.predict(adv, batch_size=bs)
        if cond == CLEAN:
            progress.advance(task)
        for sid, y, p in zip(data.ids, data.labels.tolist(), preds.tolist(), strict=True):
            out.rows.append((name, cond[0], cond[1], sid, int(y), int(p), int(y == p)))
        out.subset_images[cond] = adv[data.subset]
    progress.finish(task)
    return out


def _maps(explainer: Explainer, model: ModelWrapper, images: torch.Tensor, bs: int) -> torch.Tensor:
    return torch.cat([explainer(model, x) for x in images.split(bs)])


def alignment_rows(
    key: tuple[str, str, float, str], maps: torch.Tensor, data: EvalData, tops: list[float]
) -> list[MetricRow]:
    """Per-sample alignment metrics of ``maps`` (one per subset image) against the ground truth."""
    model, cond, eps, expl = key
    ids = [data.ids[i] for i in data.subset]
    values: dict[str, torch.Tensor] = {}
    for top in tops:
        pct = f"{round(top * 100):g}"
        values[f"point_coverage@{pct}"] = point_coverage(maps, data.points, top=top)
        values[f"mask_area@{pct}"] = mask_area(maps, top=top)
    values["topk_iou@15"] = topk_iou(maps, data.masks, top=0.15)
    values["rmse@15"] = rmse(maps, data.masks, top=0.15)
    rows: list[MetricRow] = []
    for metric, vals in values.items():
        for sid, v in zip(ids, vals.tolist(), strict=True):
            rows.append((model, cond, eps, expl, metric, sid, float(v)))
    return rows


def run_explanations(
    name: str,
    model: ModelWrapper,
    cfg: AuditConfig,
    data: EvalData,
    adv: dict[Condition, torch.Tensor],
    progress: Progress,
    figure_conditions: set[Condition],
    n_figure: int,
) -> tuple[list[MetricRow], list[tuple[str, str, float, str, str, np.ndarray]]]:
    """Maps of every configured explainer (and the random baseline) on clean and attacked subset images."""
    model.eval()
    methods = [*cfg.explain.methods, "random"]
    fig_ids = [data.ids[i] for i in data.subset[:n_figure]]
    rows: list[MetricRow] = []
    fig_rows: list[tuple[str, str, float, str, str, np.ndarray]] = []
    task = progress.start(f"explaining {name}", len(methods) * len(adv))
    for method in methods:
        params = cfg.explain.params.get(method, {})
        if method == "random":
            params = {"seed": cfg.seed}
        explainer = create_explainer(method, **params)
        clean_maps: torch.Tensor | None = None
        for cond, images in adv.items():
            maps = _maps(explainer, model, images, cfg.explain.batch_size)
            rows += alignment_rows((name, cond[0], cond[1], method), maps, data, cfg.explain.tops)
            if cond == CLEAN:
                clean_maps = maps
            elif clean_maps is not None:
                sims = ssim(clean_maps, maps)
                ids = [data.ids[i] for i in data.subset]
                rows += [
                    (name, cond[0], cond[1], method, "map_ssim", s, float(v))
                    for s, v in zip(ids, sims.tolist(), strict=True)
                ]
            if cond in figure_conditions and method != "random":
                for sid, m in zip(fig_ids, maps[: len(fig_ids)], strict=False):
                    fig_rows.append((name, cond[0], cond[1], method, sid, m.detach().cpu().numpy()))
            progress.advance(task)
    progress.finish(task)
    return rows, fig_rows
