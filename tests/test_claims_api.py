"""The claims' public interface: evaluate_claims, claims_frame, CLAIM_COLUMNS, and a user's
own claim in one file."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

import pytest

from claims_fixtures import CLEAN, PGD, Planted, write_run
from robustxai import RobustXAIError
from robustxai._types import JsonValue
from robustxai.claims import (
    CLAIM_COLUMNS,
    CLAIMS,
    Claim,
    ClaimResult,
    claims_frame,
    evaluate_claims,
    list_claims,
)
from robustxai.results import RunData

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = "tests internals of robustxai._types"

BUILT_IN = {
    "attentive.clean_accuracy_kept",
    "attentive.pgd_robustness",
    "impact.accuracy_falls",
    "impact.iou_rmse_unchanged",
    "impact.map_ssim_detects",
    "secure.adversarial_training",
    "secure.robustness_alignment",
    "trust.auc_kept",
    "trust.ig_transfer",
    "trust.manipulation_succeeds",
}


@pytest.fixture
def run(tmp_path: Path) -> RunData:
    planted = Planted(30)
    planted.model("standard")
    planted.model("attention", arch="smallcnn-attention", init_from="standard")
    for name in ("standard", "attention"):
        planted.accuracy(name, CLEAN, 0.9)
        planted.accuracy(name, PGD, 0.3)
    return write_run(tmp_path, planted)


def test_every_built_in_claim_is_registered_and_gives_a_row(run: RunData) -> None:
    assert set(list_claims()) >= BUILT_IN
    results = evaluate_claims(run)
    assert {r.claim_id for r in results} >= BUILT_IN
    for r in results:
        assert r.statement and r.paper and r.verdict in ("supported", "contradicted", "inconclusive")
        assert r.verdict != "inconclusive" or r.why


def test_claims_are_deterministic_and_in_id_order(run: RunData) -> None:
    first, second = evaluate_claims(run), evaluate_claims(run)
    assert first == second
    ids = [r.claim_id for r in first]
    assert ids == sorted(ids)


def test_claims_frame_has_the_documented_columns(run: RunData) -> None:
    assert tuple(f.name for f in fields(ClaimResult)) == CLAIM_COLUMNS
    frame = claims_frame(evaluate_claims(run))
    assert tuple(frame.columns) == CLAIM_COLUMNS
    assert frame["p_value"].dtype == float and frame["n"].dtype == int
    empty = claims_frame([])
    assert tuple(empty.columns) == CLAIM_COLUMNS and empty.empty


def test_an_inconclusive_result_must_say_why() -> None:
    with pytest.raises(RobustXAIError, match="must say why"):
        ClaimResult("x", "p", "s", "", math.nan, "", math.nan, math.nan, "", None, 0, "", "inconclusive", " ")
    with pytest.raises(RobustXAIError, match="verdict must be one of"):
        ClaimResult("x", "p", "s", "", 0.0, "", 0.0, 0.0, "", None, 0, "", "maybe", "")  # type: ignore[arg-type]


class _Mine(Claim):
    id = "zz.mine"
    paper = "my notebook"
    statement = "The run has at least one model."

    def evaluate(self, run: RunData) -> list[ClaimResult]:
        n = int(run.predictions["model"].nunique())
        return [
            self.result(
                scope="", effect=n, effect_label="models", ci=(n, n), test="count", p_value=None,
                n=n, n_unit="models", verdict="supported" if n else "contradicted", why=f"{n} models",
            )
        ]  # fmt: skip


@pytest.fixture
def mine() -> Iterator[None]:
    CLAIMS.register(_Mine.id)(_Mine)
    yield
    CLAIMS._factories.pop(_Mine.id)


def test_a_user_claim_in_one_class_joins_the_table(run: RunData, mine: None) -> None:
    results = evaluate_claims(run)
    assert results[-1].claim_id == "zz.mine" and results[-1].verdict == "supported" and results[-1].n == 2


class _Broken(Claim):
    id = "zz.broken"
    paper = "my notebook"
    statement = "Needs a table this run lacks."

    def evaluate(self, run: RunData) -> list[ClaimResult]:
        raise RobustXAIError("no ratings table in this run")


def test_a_claim_that_cannot_read_its_data_gives_an_inconclusive_row(run: RunData) -> None:
    CLAIMS.register(_Broken.id)(_Broken)
    try:
        results = evaluate_claims(run)
    finally:
        CLAIMS._factories.pop(_Broken.id)
    broken = [r for r in results if r.claim_id == "zz.broken"]
    assert len(broken) == 1 and broken[0].verdict == "inconclusive"
    assert "could not be evaluated on this run: no ratings table" in broken[0].why
    assert {r.claim_id for r in results} >= BUILT_IN


class _BadVerdict(_Mine):
    id = "zz.bad_verdict"

    def evaluate(self, run: RunData) -> list[ClaimResult]:
        return [
            self.result(
                scope="", effect=1.0, effect_label="x", ci=(1.0, 1.0), test="t", p_value=None,
                n=1, n_unit="models", verdict="maybe", why="",  # type: ignore[arg-type]
            )
        ]  # fmt: skip


def test_a_plug_in_with_a_bad_verdict_gives_one_inconclusive_row_not_a_traceback(run: RunData) -> None:
    CLAIMS.register(_BadVerdict.id)(_BadVerdict)
    try:
        results = evaluate_claims(run)
    finally:
        CLAIMS._factories.pop(_BadVerdict.id)
    (bad,) = [r for r in results if r.claim_id == "zz.bad_verdict"]
    assert bad.verdict == "inconclusive" and "verdict must be one of" in bad.why
    assert {r.claim_id for r in results} >= BUILT_IN


@pytest.mark.parametrize("epsilon", [[0.01], {"eps": 0.01}, "four"])
def test_a_primary_attack_without_a_numeric_epsilon_makes_its_claims_inconclusive(
    run: RunData, epsilon: JsonValue
) -> None:
    run.meta["primary_attack"] = {"attack": "pgd", "epsilon": epsilon}
    results = {r.claim_id: r for r in evaluate_claims(run)}
    assert results["secure.robustness_alignment"].verdict == "inconclusive"
    assert "no primary attack" in results["secure.robustness_alignment"].why
