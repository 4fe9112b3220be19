"""Sanity checks before robust accuracies are trusted (AutoAttack's checks, issue 3).

Two parts, both writing to the store's ``warnings`` table so the report and the CLI show every failed check:

- a ``sanity`` unit per model runs :func:`robustxai.attacks.sanity_checks` on the first test images, in the
  mode the attacks see (eval): outputs that look like probabilities, randomness between two forward passes,
  zero or NaN input gradients;
- :func:`masking_warnings` reads the finished predictions and flags likely gradient masking: PGD's robust
  accuracy well above APGD's at the same ε, or accuracy that stays high at a large budget.
"""

from __future__ import annotations

import pandas as pd
import torch

from robustxai.attacks._sanity import gradient_masking_check, sanity_checks
from robustxai.audit._config import AuditConfig
from robustxai.audit._plan import AuditData, Unit, UnitKind, UnitResult, register_unit_kind
from robustxai.models import ModelWrapper
from robustxai.results._schema import CLEAN, SANITY_UNIT, WarningRow

#: Attacks treated as the "PGD" and "APGD" sides of the masking comparison.
PGD_NAMES = ("pgd", "bim")
APGD_NAME = "apgd"
LARGE_EPS = 0.3


def _plan_sanity(cfg: AuditConfig, data: AuditData) -> list[Unit]:
    if not cfg.sanity.enabled or len(data) == 0:
        return []
    indices = tuple(range(min(cfg.sanity.n_images, len(data))))
    return [Unit(f"{SANITY_UNIT}/{m.name}", SANITY_UNIT, m.name, 0, indices) for m in cfg.models]


def _prepare_sanity(unit: Unit, cfg: AuditConfig, data: AuditData) -> tuple[torch.Tensor, torch.Tensor]:
    return data.load(unit.indices)


def _run_sanity(
    unit: Unit, model: ModelWrapper, cfg: AuditConfig, inp: tuple[torch.Tensor, torch.Tensor]
) -> UnitResult:
    images, labels = inp
    model.eval()  # the mode every attack of the audit uses
    found = sanity_checks(model, images, labels)
    rows = [WarningRow(unit.model, w.code, w.message) for w in found]
    return UnitResult({"warnings": rows})


register_unit_kind(UnitKind(SANITY_UNIT, _plan_sanity, _prepare_sanity, _run_sanity))


def _accuracy(pred: pd.DataFrame, model: str, attack: str, eps: float) -> float | None:
    rows = pred[(pred["model"] == model) & (pred["condition"] == attack)]
    rows = rows[(rows["epsilon"].astype(float) - eps).abs() < 1e-9]
    return None if rows.empty else float(rows["correct"].mean())


def masking_warnings(predictions: pd.DataFrame, cfg: AuditConfig) -> list[WarningRow]:
    """Gradient-masking warnings per model from finished predictions (see ``gradient_masking_check``).

    For each model and each ε where both a PGD-type attack and APGD were run, a PGD accuracy more than
    ``sanity.masking_gap`` above APGD's is flagged; any attack's accuracy at ε ≥ 0.3 that stays high is too.

    Args:
        predictions: The store's ``predictions`` table.
        cfg: The audit configuration (attack names, the masking gap).

    Returns:
        ``(model, code, message)`` rows, deduplicated, in a stable order.
    """
    if not cfg.sanity.enabled or predictions.empty:
        return []
    out: list[WarningRow] = []
    for model in sorted({str(m) for m in predictions["model"]}):
        clean = predictions[(predictions["model"] == model) & (predictions["condition"] == CLEAN)]
        clean_acc = float(clean["correct"].mean()) if not clean.empty else None
        chance = float(clean["label"].value_counts(normalize=True).max()) if not clean.empty else None
        for a in cfg.attacks:
            for eps in a.epsilons:
                acc = _accuracy(predictions, model, a.name, float(eps))
                # APGD at the same ε (None when it was not run) is the reference PGD-type attacks answer to
                apgd_acc = (
                    _accuracy(predictions, model, APGD_NAME, float(eps)) if a.name in PGD_NAMES else None
                )
                found = gradient_masking_check(
                    acc if apgd_acc is not None else None,
                    apgd_acc,
                    clean_acc=clean_acc,
                    large_eps_acc=acc if float(eps) >= LARGE_EPS and acc is not None else None,
                    large_eps=max(float(eps), LARGE_EPS),
                    chance=chance,
                    gap=cfg.sanity.masking_gap,
                )
                out += [WarningRow(model, w.code, f"{a.name} ε={eps:.4g}: {w.message}") for w in found]
    return sorted(set(out), key=lambda r: (r[0], r[1], r[2]))
