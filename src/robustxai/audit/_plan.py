"""The audit plan: the configuration turned into an ordered list of pure units of work with stable ids.

A unit's output depends only on the config, its model and its shard of samples, so units run in any order, on
any worker, and a finished unit is never run again (its id is recorded in the store with its rows).

Unit kinds (registered in :data:`UNIT_KINDS`, planned in registry order):

- ``robustness``: model × condition (clean, or attack × ε) × shard of the test set. Rows: ``predictions``.
  The attacked versions of the shard's explanation-subset images are persisted to
  ``run_dir/adv/<unit>.safetensors`` (written before the unit is committed), because attacks are the costly
  part and explanations must see exactly the inputs that were scored.
- ``explanation``: model × explainer × shard of the explanation subset. It depends on the robustness units
  whose shards hold its images and reads their adversarial images. All conditions of an explainer live in one
  unit because ``map_ssim`` compares each attacked map with the clean map of the same image. Rows:
  ``metrics`` and ``figure_maps``; a method that fails on the model gives a skipped-pair warning instead.

Shards are whole multiples of the model's batch size, so batches are those of an unsharded run. A new kind is
one :class:`UnitKind` (``plan``, ``prepare`` on the driver, a pure ``run``: model + inputs → rows by table),
registered with :func:`register_unit_kind`; the executors and the store need no change.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from robustxai._atomic import replacing
from robustxai._errors import ConfigError, NotApplicableError, RobustXAIError, first_line
from robustxai.audit._applicability import Skipped, attacks_applicable, explainers_applicable, skipped_for
from robustxai.audit._batching import model_batch
from robustxai.audit._config import AuditConfig
from robustxai.audit._stages_eval import ExplainShard, conditions_of, explanation_shard, robustness_shard
from robustxai.data._base import ImageDataset, stack_images
from robustxai.data._truth import Truth
from robustxai.models import ModelWrapper
from robustxai.results._schema import CLEAN_CONDITION, EXPLANATION_UNIT, ROBUSTNESS_UNIT, Condition, StoreRow

ROBUSTNESS_SHARD_BATCHES = 4  # test images per robustness unit = 4 × batch_size
EXPLANATION_SHARD_BATCHES = 1  # subset images per explanation unit = explain.batch_size
ADV_DIR = "adv"


@dataclass(frozen=True)
class Unit:
    """One pure piece of work.

    Attributes:
        id: Stable id, e.g. ``robustness/standard/pgd@0.0156/0``; the same config always plans the same ids.
        kind: A key of :data:`UNIT_KINDS`.
        model: The audited model's name.
        shard: Shard number within the unit's (model, condition, explainer) series.
        indices: The samples: test-set indices (robustness) or positions in the explanation subset.
        condition: ``(attack, ε)`` or ``("clean", 0.0)`` where the kind has one.
        explainer: The explainer where the kind has one.
        deps: Ids of units that must finish first.
    """

    id: str
    kind: str
    model: str
    shard: int
    indices: tuple[int, ...]
    condition: Condition | None = None
    explainer: str | None = None
    deps: tuple[str, ...] = ()


@dataclass
class UnitResult:
    """What a unit produced: rows by store table, and tensors the driver persists before committing."""

    rows: dict[str, Sequence[StoreRow]]
    arrays: dict[str, torch.Tensor] = field(default_factory=dict)
    #: Why the unit failed (a :class:`RobustXAIError` it raised, e.g. non-finite outputs), or ``None``.
    error: str | None = None


class AuditData:
    """The driver's view of the test set: per-sample ids and labels, the annotated subset, and lazy images.

    Only ids, labels and the subset's truth stay in memory; images are read shard by shard.

    Args:
        dataset: The test set.
        n_images: Size of the explanation subset (the first annotated images).
        run_dir: The run directory (adversarial images are persisted under ``run_dir/adv``).
    """

    def __init__(self, dataset: ImageDataset, n_images: int, run_dir: Path) -> None:
        self.dataset = dataset
        self.run_dir = Path(run_dir)
        self.ids: list[str] = []
        labels: list[int | torch.Tensor] = []
        self.subset: list[int] = []
        #: per test image: ``"finding"`` (a mask or points), ``"none"`` (annotated without a finding) or
        #: ``"missing"`` (no annotation at all)
        self.truth_kinds: list[str] = []
        masks: list[torch.Tensor] = []
        self.points: list[np.ndarray] = []
        for i in range(len(dataset)):  # one streaming pass: nothing but the subset's truth is kept
            s = dataset[i]
            self.ids.append(s.id)
            labels.append(s.label)
            self.truth_kinds.append(truth_kind(s.truth))
            if len(self.subset) < n_images and not s.truth.empty:
                h, w = s.image.shape[-2:]
                self.subset.append(i)
                mask = s.truth.mask if s.truth.mask is not None else np.zeros((h, w), dtype=bool)
                masks.append(torch.from_numpy(np.asarray(mask, dtype=bool)))
                pts = s.truth.points
                self.points.append(np.asarray(pts) if pts is not None else np.zeros((0, 2)))
        self.labels = _stack_labels(labels)
        self.masks = torch.stack(masks) if masks else torch.zeros((0, 1, 1), dtype=torch.bool)
        self._cache: tuple[tuple[int, ...], tuple[torch.Tensor, torch.Tensor]] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def load(self, indices: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """Images ``[N, C, H, W]`` and labels of the given test indices (the last shard read is reused)."""
        if self._cache is None or self._cache[0] != indices:
            self._cache = (indices, stack_images([self.dataset[i] for i in indices]))
        return self._cache[1]

    def adv_path(self, unit_id: str) -> Path:
        """Where the adversarial subset images of a robustness unit are persisted."""
        safe = re.sub(r"[^A-Za-z0-9._@-]+", "_", unit_id)[:80]
        digest = hashlib.sha256(unit_id.encode()).hexdigest()[:10]
        return self.run_dir / ADV_DIR / f"{safe}-{digest}.safetensors"


def truth_kind(truth: Truth) -> str:
    """``"finding"``, ``"none"`` (an annotation that marks no finding) or ``"missing"`` (no annotation)."""
    if not truth.empty:
        return "finding"
    return "missing" if truth.mask is None and truth.points is None else "none"


def _stack_labels(labels: list[int | torch.Tensor]) -> torch.Tensor:
    """Class indices as a long vector ``[N]``, multi-label rows as a float matrix ``[N, K]``."""
    if labels and all(isinstance(y, torch.Tensor) and y.ndim == 1 for y in labels):
        return torch.stack([torch.as_tensor(y, dtype=torch.float32) for y in labels])
    return torch.tensor([int(y) for y in labels], dtype=torch.long)


def save_arrays(path: Path, arrays: dict[str, torch.Tensor]) -> None:
    """Write tensors atomically (temporary file, then rename), so a crash never leaves a torn file."""
    with replacing(path) as tmp:  # a fresh temporary name: never a planted file or link
        save_file({k: v.contiguous() for k, v in arrays.items()}, str(tmp))


def shards(n: int, size: int) -> list[tuple[int, ...]]:
    """Split ``range(n)`` into consecutive chunks of ``size``."""
    return [tuple(range(lo, min(lo + size, n))) for lo in range(0, n, size)]


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


def unit_seed(seed: int, unit_id: str) -> int:
    """The seed of one unit's global torch RNG: a function of the audit seed and the unit id only."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{unit_id}".encode()).digest()[:7], "big")


@dataclass(frozen=True)
class UnitKind:
    """How one kind of unit is planned, fed and run.

    ``applicable`` (optional) says which of the kind's methods cannot run on a model: ``(cfg, model) →
    {method: reason}``, where the method is what a unit names in ``explainer`` (or, without one, the
    attack of its ``condition``). The plan drops those units (:func:`plan_units`).
    """

    name: str
    plan: Callable[[AuditConfig, AuditData], list[Unit]]
    prepare: Callable[[Unit, AuditConfig, AuditData], object]
    run: Callable[[Unit, ModelWrapper, AuditConfig, Any], UnitResult]
    applicable: Callable[[AuditConfig, ModelWrapper], dict[str, str]] | None = None
    planned_for: Callable[[AuditConfig, str], bool] | None = None  # the models it has units for (None: all)


def inapplicable(cfg: AuditConfig, models: dict[str, ModelWrapper]) -> list[Skipped]:
    """Every model × method pair of the config that cannot run, by kind, with the method's own reason."""
    out: list[Skipped] = []
    for kind in UNIT_KINDS.values():
        if kind.applicable is None:
            continue
        for m in cfg.models:
            if m.name in models and (kind.planned_for is None or kind.planned_for(cfg, m.name)):
                reasons = kind.applicable(cfg, models[m.name])
                out += [Skipped(kind.name, m.name, method, why) for method, why in reasons.items()]
    return out


UNIT_KINDS: dict[str, UnitKind] = {}


def register_unit_kind(kind: UnitKind) -> UnitKind:
    """Add a unit kind; it is planned after the kinds registered before it."""
    if kind.name in UNIT_KINDS:
        raise RobustXAIError(f"unit kind {kind.name!r} is already registered")
    UNIT_KINDS[kind.name] = kind
    return kind


def plan_units(cfg: AuditConfig, data: AuditData, skipped: Sequence[Skipped] = ()) -> list[Unit]:
    """Every unit of the audit, in an order that runs each unit after its dependencies.

    Units of a ``skipped`` pair (:func:`inapplicable`) are left out, and so are dependencies on them: an
    explanation of a model that one attack cannot run on explains the other conditions.

    Raises:
        ConfigError: If two units share an id or a unit depends on one planned later (a bug in a kind).
    """
    drop = {(s.kind, s.model, s.method) for s in skipped}
    units, dropped = [], set()
    for kind in UNIT_KINDS.values():
        for u in kind.plan(cfg, data):
            if (u.kind, u.model, u.explainer or (u.condition or ("",))[0]) in drop:  # explainer, else attack
                dropped.add(u.id)
            else:
                units.append(u)
    if dropped:
        units = [replace(u, deps=tuple(d for d in u.deps if d not in dropped)) for u in units]
    seen: set[str] = set()
    for u in units:
        missing = [d for d in u.deps if d not in seen]
        if u.id in seen or missing:
            raise ConfigError(
                f"invalid plan at unit {u.id!r}: duplicate id or dependencies not planned first"
            )
        seen.add(u.id)
    return units


def run_unit(unit: Unit, model: ModelWrapper, cfg: AuditConfig, payload: object) -> UnitResult:
    """Run one unit on its prepared inputs with its own RNG seed (the same wherever and whenever it runs).

    A :class:`RobustXAIError` (a problem of the model or the data, such as non-finite outputs) becomes a
    result with ``error`` set, so the driver can record the model as failed and go on with the others; any
    other exception is a bug and propagates.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(unit_seed(cfg.seed, unit.id))
        try:
            return UNIT_KINDS[unit.kind].run(unit, model, cfg, payload)
        except RobustXAIError as err:
            return UnitResult({}, error=first_line(err) or repr(err))


# -- robustness ------------------------------------------------------------------------------------------
def _robustness_id(model: str, cond: Condition, shard: int) -> str:
    return f"{ROBUSTNESS_UNIT}/{model}/{cond[0]}@{cond[1]!r}/{shard}"


def _plan_robustness(cfg: AuditConfig, data: AuditData) -> list[Unit]:
    """Shard-major (by first image; a model's own batch size gives its own shards): images load once."""
    units: list[tuple[int, int, Unit]] = []
    for order, m in enumerate(cfg.models):
        for k, idx in enumerate(shards(len(data), ROBUSTNESS_SHARD_BATCHES * model_batch(cfg, m.name))):
            for c in conditions_of(cfg):
                unit = Unit(_robustness_id(m.name, c, k), ROBUSTNESS_UNIT, m.name, k, idx, c)
                units.append((idx[0], order, unit))
    return [u for *_, u in sorted(units, key=lambda t: t[:2])]


@dataclass
class RobustnessInput:
    """A robustness unit's images, and which of them belong to the explanation subset."""

    images: torch.Tensor
    labels: torch.Tensor
    ids: list[str]
    keep: list[int]  # positions in the shard of explanation-subset images


def _prepare_robustness(unit: Unit, cfg: AuditConfig, data: AuditData) -> RobustnessInput:
    images, labels = data.load(unit.indices)
    subset = set(data.subset)
    keep = [p for p, i in enumerate(unit.indices) if i in subset]
    return RobustnessInput(images, labels, [data.ids[i] for i in unit.indices], keep)


def _run_robustness(unit: Unit, model: ModelWrapper, cfg: AuditConfig, inp: RobustnessInput) -> UnitResult:
    assert unit.condition is not None
    rows, adv, metric_rows = robustness_shard(
        unit.model, model, cfg, unit.condition, inp.images, inp.labels, inp.ids
    )
    arrays = {}
    if unit.condition != CLEAN_CONDITION and inp.keep and unit.condition in explained_conditions(cfg):
        arrays = {"images": adv[inp.keep].cpu(), "indices": torch.tensor([unit.indices[p] for p in inp.keep])}
    tables: dict[str, Sequence[StoreRow]] = {"predictions": rows}
    if metric_rows:  # multi-label models: per-label logits and targets
        tables["metrics"] = metric_rows
    return UnitResult(tables, arrays)


# -- explanations ----------------------------------------------------------------------------------------
def explanation_methods(cfg: AuditConfig) -> list[str]:
    """The configured explainers and the random baseline."""
    return [*cfg.explain.methods, "random"]


def explained_conditions(cfg: AuditConfig) -> list[Condition]:
    """Clean, then the attack × ε conditions whose adversarial images are explained (``explain.attacks``)."""
    return [c for c in conditions_of(cfg) if c == CLEAN_CONDITION or cfg.explain.explains(c)]


def _plan_explanations(cfg: AuditConfig, data: AuditData) -> list[Unit]:
    attacked = [c for c in explained_conditions(cfg) if c != CLEAN_CONDITION]
    units = []
    for m in cfg.models:
        rob_size = ROBUSTNESS_SHARD_BATCHES * model_batch(cfg, m.name)
        for method in explanation_methods(cfg):
            for k, positions in enumerate(
                shards(len(data.subset), EXPLANATION_SHARD_BATCHES * cfg.explain.batch_size)
            ):
                rob_shards = sorted({data.subset[p] // rob_size for p in positions})
                deps = tuple(_robustness_id(m.name, c, s) for c in attacked for s in rob_shards)
                uid = f"{EXPLANATION_UNIT}/{m.name}/{method}/{k}"
                units.append(Unit(uid, EXPLANATION_UNIT, m.name, k, positions, None, method, deps))
    return units


@dataclass
class ExplanationInput:
    """An explanation unit's shard and the conditions whose maps the report draws."""

    shard: ExplainShard
    figure_conditions: set[Condition]


def _prepare_explanation(unit: Unit, cfg: AuditConfig, data: AuditData) -> ExplanationInput:
    test_idx = [data.subset[p] for p in unit.indices]
    clean, _ = data.load(tuple(test_idx))
    images: dict[Condition, torch.Tensor] = {CLEAN_CONDITION: clean}
    by_cond: dict[Condition, dict[int, torch.Tensor]] = {}
    for dep in unit.deps:  # robustness units of this model; their files hold the attacked subset images
        cond = _condition_of_id(dep)
        saved = load_file(str(data.adv_path(dep)))
        table = by_cond.setdefault(cond, {})
        table.update(zip(saved["indices"].tolist(), saved["images"], strict=True))
    for cond in explained_conditions(cfg):
        if cond != CLEAN_CONDITION and cond in by_cond:  # absent: an attack this model's plan skipped
            images[cond] = torch.stack([by_cond[cond][i] for i in test_idx])
    n_figure = sum(1 for p in unit.indices if p < cfg.report.n_figure)
    masks, points = data.masks[list(unit.indices)], [data.points[p] for p in unit.indices]
    shard = ExplainShard([data.ids[i] for i in test_idx], images, masks, points, n_figure=n_figure)
    return ExplanationInput(shard, {CLEAN_CONDITION, primary_condition(cfg)})


def _condition_of_id(unit_id: str) -> Condition:
    attack, eps = unit_id.split("/")[-2].rsplit("@", 1)
    return (attack, float(eps))


def _run_explanation(unit: Unit, model: ModelWrapper, cfg: AuditConfig, inp: ExplanationInput) -> UnitResult:
    assert unit.explainer is not None
    # Inputs that came through Ray's object store are read-only views; metrics may want their own copies.
    inp.shard.points = [np.array(p) for p in inp.shard.points]
    try:
        rows, fig_rows, warnings = explanation_shard(
            unit.model, model, cfg, unit.explainer, inp.shard, inp.figure_conditions
        )
    except NotApplicableError as err:  # the method cannot run on this model after all: skip the pair
        skipped = skipped_for(Skipped(EXPLANATION_UNIT, unit.model, unit.explainer, str(err)))
        return UnitResult({"metrics": [], "figure_maps": [], "warnings": skipped})
    return UnitResult({"metrics": list(rows), "figure_maps": list(fig_rows), "warnings": list(warnings)})


register_unit_kind(
    UnitKind(ROBUSTNESS_UNIT, _plan_robustness, _prepare_robustness, _run_robustness, attacks_applicable)
)
register_unit_kind(
    UnitKind(
        EXPLANATION_UNIT, _plan_explanations, _prepare_explanation, _run_explanation, explainers_applicable
    )
)
