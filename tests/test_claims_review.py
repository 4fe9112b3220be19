"""Defects a review of the claims found: each test plants the case that went wrong."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np

from claims_fixtures import CLEAN, FGSM, Planted, write_run
from robustxai.claims import CLAIMS, ClaimResult
from robustxai.claims._pairs import adversarial_pairs, attention_pairs
from robustxai.results import RunData

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = "tests internals of robustxai.claims._pairs"


def _eval(claim_id: str, run: RunData) -> list[ClaimResult]:
    return CLAIMS.create(claim_id).evaluate(run)


PAPER = Path(__file__).resolve().parents[1] / "src" / "robustxai" / "audit" / "profiles" / "paper.toml"


def _paper_models(tmp_path: Path) -> Planted:
    planted = Planted(6)
    planted.models = tomllib.loads(PAPER.read_text(encoding="utf-8"))["models"]
    for m in planted.models:
        planted.accuracy(str(m["name"]), ("clean", 0.0), 0.5)
    return planted


def test_paper_profile_pairs_each_attention_model_with_the_model_trained_at_its_eps(tmp_path: Path) -> None:
    """``attention-4`` (pgd 4/255, init_from ``standard``) pairs with ``adv-4``, not refused as ambiguous."""
    pairs, notes = attention_pairs(write_run(tmp_path, _paper_models(tmp_path)))
    assert pairs == [("attention", "standard"), ("attention-4", "adv-4")] and notes == []


def test_the_run_s_training_eps_stands_in_for_a_model_without_its_own(tmp_path: Path) -> None:
    planted = Planted(6)
    planted.model("standard")
    planted.model("adv", training="pgd", init_from="standard")  # trained at training.eps = 4/255
    planted.model("adv-8", training="pgd", init_from="standard", eps=8 / 255)
    planted.model("att", arch="smallcnn-attention", training="pgd", init_from="standard", eps=4 / 255)
    for m in planted.models:
        planted.accuracy(str(m["name"]), ("clean", 0.0), 0.5)
    run = write_run(tmp_path, planted)
    run.meta["config"]["training"] = {"eps": 4 / 255}
    assert attention_pairs(run) == ([("att", "adv")], [])
    assert adversarial_pairs(run) == ([("adv", "standard"), ("adv-8", "standard")], [])


def _impact_store(n: int = 30) -> Planted:
    """One model, clean + FGSM 4/255 predictions and ``saliency`` maps compared under FGSM."""
    planted = Planted(n)
    planted.model("standard")
    planted.accuracy("standard", CLEAN, 0.9)
    planted.accuracy("standard", FGSM, 0.3)
    planted.metric("standard", FGSM, "saliency", "map_ssim", [0.5] * n)
    return planted


def test_map_ssim_ignores_the_methods_only_the_manipulation_stage_compared(tmp_path: Path) -> None:
    """``gradcam`` has map_ssim rows only from the manipulation stage: FGSM is judged on ``saliency``."""
    planted = _impact_store()
    planted.metric("standard", ("manipulate:gradcam", 0.0), "gradcam", "map_ssim", [0.9] * planted.n)
    (row,) = CLAIMS.create("impact.map_ssim_detects").evaluate(write_run(tmp_path, planted))
    assert row.scope == "standard, fgsm ε = 4/255 (saliency)" and row.n == planted.n, row


def test_impact_claims_leave_out_a_budget_attacked_but_never_explained(tmp_path: Path) -> None:
    """FGSM 2/255 has predictions but no maps (``explain.epsilons = [4/255]``): no n = 0 row for it."""
    planted = _impact_store()
    planted.accuracy("standard", ("fgsm", 2 / 255), 0.6)
    for cond in (CLEAN, FGSM):
        for metric in ("topk_iou@15", "rmse@15"):
            planted.metric("standard", cond, "saliency", metric, [0.3] * planted.n)
    run = write_run(tmp_path, planted)
    rows = [*_eval("impact.map_ssim_detects", run), *_eval("impact.iou_rmse_unchanged", run)]
    assert len(rows) == 3 and all("4/255" in r.scope and r.n == planted.n for r in rows), rows


def test_impact_claims_say_when_no_attacked_image_was_explained(tmp_path: Path) -> None:
    planted = Planted(10)
    planted.model("standard")
    planted.accuracy("standard", CLEAN, 0.9)
    planted.accuracy("standard", FGSM, 0.3)
    planted.metric("standard", CLEAN, "saliency", "topk_iou@15", [0.3] * planted.n)
    rows = _eval("impact.iou_rmse_unchanged", write_run(tmp_path, planted))
    assert "explain.epsilons" in rows[0].why and rows[0].verdict == "inconclusive", rows


def _one_class_store(drop: float, n: int = 40) -> Planted:
    """Every manipulated image fractured (label 1): AUC is undefined; the true class's probability falls by
    ``drop`` (absolute) on average."""
    planted = Planted(n)
    planted.model("standard")
    planted.accuracy("standard", CLEAN, 0.9)
    rng = np.random.default_rng(3)
    clean = np.clip(0.8 + rng.normal(0, 0.05, n), 0, 1)
    adv = np.clip(clean - drop + rng.normal(0, 0.005, n), 0, 1)
    cond = ("manipulate:saliency", 0.0)
    for k, (label, c, a) in enumerate(((np.zeros(n), 1 - clean, 1 - adv), (np.ones(n), clean, adv))):
        planted.metric("standard", cond, "", f"label@{k}", label)
        planted.metric("standard", cond, "", f"clean_score@{k}", c)
        planted.metric("standard", cond, "", f"adv_score@{k}", a)
    planted.metric("standard", cond, "saliency", "unsuccessful", [0.0] * n)
    return planted


def test_auc_kept_on_one_class_images_says_so_and_judges_the_true_class_probability(tmp_path: Path) -> None:
    (kept,) = _eval("trust.auc_kept", write_run(tmp_path / "a", _one_class_store(drop=0.002)))
    assert "one class only, so AUC cannot be computed" in kept.why and "too few" not in kept.why
    assert kept.verdict == "supported" and kept.n == 40 and abs(kept.effect) < 1.0, kept
    (fell,) = _eval("trust.auc_kept", write_run(tmp_path / "b", _one_class_store(drop=0.2)))
    assert fell.verdict == "contradicted" and fell.effect < -20 and "one class only" in fell.why, fell
