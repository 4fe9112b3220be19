"""Which model × method pairs of an audit can run: the plan drops the others with a reason (issue 16).

Each explainer and attack declares what it needs of a model through ``applicable(model) -> str | None``
(:meth:`robustxai.explain.Explainer.applicable`, :meth:`robustxai.attacks.Attack.applicable`): Grad-CAM
needs a spatial layer, attention rollout ViT-style attention blocks, the manipulation attack's differentiable
Grad-CAM a convolutional feature map. A unit kind asks them through its ``applicable`` hook
(:class:`robustxai.audit._plan.UnitKind`); :func:`robustxai.audit._plan.inapplicable` collects the answers and
:func:`robustxai.audit._plan.plan_units` leaves those units out. The dropped pairs become run warnings (code
:data:`NOT_APPLICABLE_CODE`), which the CLI prints and the report lists: an audit never stops because one
method cannot run on one model.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from robustxai._errors import first_line
from robustxai.attacks import create_attack
from robustxai.audit._config import AuditConfig
from robustxai.audit._stages_eval import explainer_for
from robustxai.models import ModelWrapper
from robustxai.results._schema import WarningRow

#: ``warnings.code`` of the model × method pairs the plan dropped (:class:`Skipped`).
NOT_APPLICABLE_CODE = "not_applicable"


@dataclass(frozen=True)
class Skipped:
    """A model × method pair the plan drops because the method cannot run on the model, and why."""

    kind: str
    model: str
    method: str
    reason: str

    def line(self) -> str:
        """The one-line account the CLI prints and the report lists (after the model's name)."""
        return f"{self.method} skipped ({self.kind}): {self.reason}"


def skipped_warnings(skipped: list[Skipped]) -> list[WarningRow]:
    """Rows of the store's ``warnings`` table for the dropped pairs (code :data:`NOT_APPLICABLE_CODE`)."""
    return [WarningRow(s.model, NOT_APPLICABLE_CODE, s.line()) for s in skipped]


def skipped_for(skipped: Skipped) -> list[WarningRow]:
    """The warning of a pair found unable to run only when it ran (its reason: an error's first line).

    E.g. Grad-CAM on a layer named in the config that exists but has no spatial output: the explanation
    unit records this instead of failing its model, so the model's other methods are still audited.
    """
    reason = first_line(skipped.reason) or "an error without a message"
    return skipped_warnings([replace(skipped, reason=reason)])


def attacks_applicable(cfg: AuditConfig, model: ModelWrapper) -> dict[str, str]:
    """The configured attacks that cannot run on ``model``, with their reasons."""
    out = {}
    for a in cfg.attacks:
        if a.epsilons:
            reason = create_attack(a.name, eps=a.epsilons[0], **a.params).applicable(model)
            if reason is not None:
                out[a.name] = reason
    return out


def explainers_applicable(cfg: AuditConfig, model: ModelWrapper) -> dict[str, str]:
    """The configured explainers that cannot explain ``model``, with their reasons."""
    reasons = {m: explainer_for(cfg, m).applicable(model) for m in cfg.explain.methods}
    return {m: r for m, r in reasons.items() if r is not None}
