"""How many images each unit of the audit pushes through its model: pass counts by unit kind.

Each unit kind registers one function (:func:`register_pass_count`) that turns a unit into :class:`Work`
items. The formulas themselves live with the methods — :meth:`robustxai.attacks.Attack.passes`,
:meth:`robustxai.explain.Explainer.passes` and ``pass_rows``, the manipulation attack's ``passes``,
:func:`robustxai.training._fit.epoch_passes` — found through their registries by the names in the config, so
a new method brings its own count and nothing here changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from robustxai.attacks import create_attack
from robustxai.attacks._sanity import SANITY_PASSES
from robustxai.audit._batching import model_batch
from robustxai.audit._config import AuditConfig
from robustxai.audit._plan import Unit, explained_conditions
from robustxai.audit._stages_eval import explain_batch, explainer_for
from robustxai.audit._stages_manip import _attack as manipulation_attack
from robustxai.audit._timing_explain import timed
from robustxai.audit._timing_manip import total_steps
from robustxai.explain import Explainer, create_explainer
from robustxai.results._schema import CLEAN_CONDITION

Shape = tuple[int, int, int]  # (C, H, W) of one image


@dataclass(frozen=True)
class Work:
    """Rows (images) one piece of work pushes through a model, in passes of ``rows`` rows.

    Attributes:
        label: The method (``pgd``, ``integrated_gradients``, ``training`` …), for the plan's breakdown.
        forward: Rows through a forward pass (those of the backward passes included).
        backward: Rows through a backward pass to the input (a double backward counts twice).
        rows: Rows per pass (the batch the method runs at).
        train: Rows through a training step (forward, backward with parameter gradients, optimiser step).
        steps: Steps of a manipulation attack call (0: not one); the plan prices those by measured steps
            (:mod:`robustxai.audit._timing_manip`), the passes stay for the breakdown.
        images: Images of an explainer call the plan prices by a measured call (0: priced by its passes;
            :mod:`robustxai.audit._timing_explain`: occlusion, whose pass count is the full computation's).
    """

    label: str
    forward: int
    backward: int
    rows: int
    train: int = 0
    steps: int = 0
    images: int = 0


PassCount = Callable[[Unit, AuditConfig, Shape], list[Work]]
PASS_COUNTS: dict[str, PassCount] = {}


def register_pass_count(kind: str) -> Callable[[PassCount], PassCount]:
    """Register the pass-count function of a unit kind."""

    def decorate(fn: PassCount) -> PassCount:
        PASS_COUNTS[kind] = fn
        return fn

    return decorate


def unit_work(unit: Unit, cfg: AuditConfig, shape: Shape) -> list[Work]:
    """The work of one unit; a kind without a registered count costs nothing in the plan."""
    fn = PASS_COUNTS.get(unit.kind)
    return fn(unit, cfg, shape) if fn is not None else []


def _targets_cost(explainer: Explainer) -> bool:
    """Whether resolving the predicted class costs a forward pass of its own (see ``finds_prediction``)."""
    return not explainer.finds_prediction()


def explainer_work(
    explainer: Explainer, label: str, n: int, batch: int, shape: Shape, predicted: bool = True
) -> list[Work]:
    """An explainer on ``n`` images in calls of at most ``batch``: its passes and the target's.

    When it explains the predicted class (``predicted``) without finding it in its own passes, the forward
    pass that finds it is counted too. A call of an explainer priced by a measured call
    (:func:`robustxai.audit._timing_explain.timed`) says how many images it explains.
    """
    out = []
    per_image = timed(explainer)
    for lo in range(0, n, batch):
        b = min(batch, n - lo)
        fwd, bwd = explainer.passes(b, shape[1], shape[2])
        out.append(Work(label, fwd, bwd, explainer.pass_rows(b), images=b if per_image else 0))
        if predicted and _targets_cost(explainer):
            out.append(Work(label, b, 0, b))
    return out


@register_pass_count("robustness")
def robustness_work(unit: Unit, cfg: AuditConfig, shape: Shape) -> list[Work]:
    """The attack's passes per batch, then one forward pass to score the (attacked) images."""
    n, bs = len(unit.indices), model_batch(cfg, unit.model)
    assert unit.condition is not None
    out = []
    if unit.condition != CLEAN_CONDITION:
        spec = next(a for a in cfg.attacks if a.name == unit.condition[0])
        attack = create_attack(spec.name, eps=unit.condition[1], **spec.params)
        for lo in range(0, n, bs):
            fwd, bwd = attack.passes(min(bs, n - lo))
            out.append(Work(spec.name, fwd, bwd, min(bs, n - lo)))
    out.append(Work(unit.condition[0] if unit.condition != CLEAN_CONDITION else "clean", n, 0, min(bs, n)))
    return out


@register_pass_count("explanation")
def explanation_work(unit: Unit, cfg: AuditConfig, shape: Shape) -> list[Work]:
    """The explainer's passes on the clean and every explained attacked version of the shard."""
    assert unit.explainer is not None
    explainer = explainer_for(cfg, unit.explainer, unit.model)
    n = len(unit.indices)
    conditions = [c for c in explained_conditions(cfg) if c == CLEAN_CONDITION or _dep_of(unit, c)]
    one = explainer_work(explainer, unit.explainer, n, explain_batch(cfg, unit.model), shape)
    return one * len(conditions)


def _dep_of(unit: Unit, cond: tuple[str, float]) -> bool:
    """Whether the unit reads the attacked images of ``cond`` (a skipped attack leaves no dependency)."""
    return any(f"/{cond[0]}@{cond[1]!r}/" in d for d in unit.deps)


@register_pass_count("sanity")
def sanity_work(unit: Unit, cfg: AuditConfig, shape: Shape) -> list[Work]:
    """The sanity checks' passes (:data:`robustxai.attacks._sanity.SANITY_PASSES` per image)."""
    n = len(unit.indices)
    fwd, bwd = SANITY_PASSES
    return [Work("sanity", fwd * n, bwd * n, n)]


@register_pass_count("manipulation")
def manipulation_work(unit: Unit, cfg: AuditConfig, shape: Shape) -> list[Work]:
    """The manipulation attack's passes, the clean and attacked logits, and every scored explainer twice."""
    mc = cfg.manipulation
    assert mc is not None and unit.explainer is not None
    n, bs = len(unit.indices), mc.batch_size
    attack = manipulation_attack(mc, unit.explainer)
    out = []
    for lo in range(0, n, bs):
        b = min(bs, n - lo)
        fwd, bwd = attack.passes(b, shape[1], shape[2])
        out.append(Work(f"manipulate:{unit.explainer}", fwd, bwd, b, steps=total_steps(attack)))
        out.append(Work(f"manipulate:{unit.explainer}", 3 * b, 0, b))  # explained class, clean, attacked
    evaluated = [unit.explainer]
    if unit.explainer in mc.transfer_from:
        evaluated += [m for m in dict.fromkeys([*mc.methods, *mc.evaluate]) if m != unit.explainer]
    for ev in evaluated:
        explainer = create_explainer(ev, **cfg.explain.params.get(ev, {}))
        out += explainer_work(explainer, ev, n, bs, shape, predicted=False) * 2
    return out
