"""What the explainability-impact paper's claims share: its attacks, its map methods, its margin."""

from __future__ import annotations

from robustxai.claims._data import attack_conditions, conditions_with, explainers_of
from robustxai.results._run import RunData
from robustxai.results._schema import Condition

#: The paper's attacks.
ATTACKS = ("fgsm", "bim")
#: The paper's map methods (Tables 1–2); other explainers are used only when none of these ran.
PAPER_EXPLAINERS = ("gradcam", "smoothgrad", "lime")
#: Metrics of the paper against the ground-truth mask: top-15 % IoU and RMSE (METHODS.md).
IOU = "topk_iou@15"
RMSE = "rmse@15"
#: Equivalence margin for "unchanged", in the metrics' own [0, 1] units: the paper calls changes of up to
#: 0.019 in IoU (GradCAM 0.347 → 0.328 under BIM) and 0.011 in RMSE negligible, against an accuracy drop
#: of 0.31–0.44. A margin of 0.05 is 2.5× the largest change it calls negligible and well below the
#: accuracy drop; it is fixed before looking at any run, never tuned to one.
EQUIVALENCE_MARGIN = 0.05


def impact_conditions(run: RunData) -> list[Condition]:
    """The run's FGSM and BIM conditions (every budget), sorted."""
    return [c for c in attack_conditions(run) if c[0] in ATTACKS]


def explained_conditions(run: RunData, metric: str) -> list[Condition]:
    """The FGSM/BIM conditions with ``metric`` rows: a budget attacked but never explained is left out.

    ``explain.epsilons`` (or ``explain.attacks``) can leave an attacked budget without maps; its rows would
    rest on no image, so the claims judge only the explained budgets.
    """
    return conditions_with(run, metric, impact_conditions(run))


#: Why a metric claim has no row when the run attacked with FGSM/BIM but explained none of those images.
NOT_EXPLAINED = "no FGSM/BIM budget was explained (explain.attacks / explain.epsilons)"


def impact_explainers(run: RunData, metric: str) -> list[str]:
    """The paper's methods among those with ``metric`` rows under FGSM/BIM, else every method with them."""
    present = explainers_of(run, metric, impact_conditions(run))
    return [e for e in PAPER_EXPLAINERS if e in present] or present
