"""Claims: registered, testable statements of the four papers' findings, decided from a run's results.

Each claim is a plug-in (one file, registered in :data:`CLAIMS`) that reads only :mod:`robustxai.results`
and returns :class:`ClaimResult` rows: the measured effect, its 95 % interval (paired on the same images
where possible), the test, ``n`` and a verdict — *supported*, *contradicted* or *inconclusive* with the
reason. :func:`evaluate_claims` runs every registered claim on a run and :func:`claims_frame` makes the table
(the report writes it to ``tables/claims.csv``, with its other tables).

The built-in claims (ids; the papers in ``papers/`` of the design notes):

- ``attentive.*``: soft attention improves PGD robustness, without costing clean accuracy;
- ``impact.*``: accuracy falls under FGSM/BIM while IoU and RMSE against the mask stay unchanged, and the
  map SSIM between clean and attacked maps does register the attack;
- ``secure.*``: more robust models give maps better aligned with the experts' points; adversarial training
  buys robust accuracy;
- ``trust.*``: the manipulation attack succeeds on every attacked method, the model's AUC is kept, and IG's
  adversarial images transfer to the other methods.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import astuple

import pandas as pd

from robustxai._errors import RobustXAIError
from robustxai.claims import (  # noqa: F401  (registers the built-in claims)
    _attentive_clean,
    _attentive_robustness,
    _impact_accuracy,
    _impact_map_ssim,
    _impact_unchanged,
    _secure_adversarial_training,
    _secure_alignment,
    _trust_auc,
    _trust_manipulation,
    _trust_transfer,
)
from robustxai.claims._base import CLAIMS, Claim, ClaimResult
from robustxai.claims._data import clear_cache
from robustxai.results._run import RunData

# What users run and extend: the claim registry and base class, evaluating a run, the table.
# The verdict constants (``SUPPORTED`` …) stay in :mod:`robustxai.claims._base`, beside the class using them.
__all__ = [
    "CLAIMS",
    "CLAIM_COLUMNS",
    "Claim",
    "ClaimResult",
    "claims_frame",
    "evaluate_claims",
    "list_claims",
]

#: Columns of :func:`claims_frame` and of ``tables/claims.csv`` in order (the :class:`ClaimResult` fields):
#: ``claim_id, paper, statement`` (the claim), ``scope`` (the model, pair, attack or method a row is about;
#: empty for a whole-run row), ``effect, effect_label`` (the number and what it is), ``ci_low, ci_high``
#: (its 95 % interval), ``test, p_value`` (empty when the verdict rests on an interval), ``n, n_unit``
#: (what the effect rests on), ``verdict`` (supported / contradicted / inconclusive) and ``why``.
CLAIM_COLUMNS: tuple[str, ...] = (
    "claim_id",
    "paper",
    "statement",
    "scope",
    "effect",
    "effect_label",
    "ci_low",
    "ci_high",
    "test",
    "p_value",
    "n",
    "n_unit",
    "verdict",
    "why",
)


def list_claims() -> list[str]:
    """Ids of the registered claims, sorted (the order :func:`evaluate_claims` runs them in)."""
    return CLAIMS.names()


def evaluate_claims(run: RunData) -> list[ClaimResult]:
    """Decide every registered claim on ``run``.

    Claims run in the order of their ids; each gives its rows in its own (deterministic) order, and every
    statistic is seeded, so the same run always gives the same list. A claim that cannot read what it needs
    (it raises a :class:`RobustXAIError`) gives one inconclusive row with the error instead of stopping the
    others; any other exception is a bug and propagates.
    """
    results: list[ClaimResult] = []
    try:
        for name in CLAIMS.names():
            claim = CLAIMS.create(name)
            try:
                results.extend(claim.evaluate(run))
            except RobustXAIError as err:
                results.append(claim.undecided(f"the claim could not be evaluated on this run: {err}"))
    finally:
        clear_cache()
    return results


def claims_frame(results: Iterable[ClaimResult]) -> pd.DataFrame:
    """The claims as a table with :data:`CLAIM_COLUMNS` (one row per result, in the given order)."""
    frame = pd.DataFrame([astuple(r) for r in results], columns=list(CLAIM_COLUMNS))
    frame["p_value"] = [math.nan if p is None else p for p in frame["p_value"]]
    return frame.astype({"effect": float, "ci_low": float, "ci_high": float, "p_value": float, "n": int})
