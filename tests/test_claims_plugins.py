"""Each claim plug-in on a store with a planted answer: a planted effect is supported, a planted opposite is
contradicted, a planted null or too little evidence is inconclusive with the reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from claims_fixtures import BIM, CLEAN, FGSM, PGD, Planted, manipulation, write_run
from robustxai.claims import CLAIMS, ClaimResult
from robustxai.results import RunData


def _eval(claim_id: str, run: RunData) -> list[ClaimResult]:
    return CLAIMS.create(claim_id).evaluate(run)


def _one(claim_id: str, run: RunData) -> ClaimResult:
    (result,) = _eval(claim_id, run)
    return result


# -- Secure Diagnostics: robustness ↔ alignment -------------------------------------------------------------
def _ladder(n_models: int, robust: list[float], coverage: list[float], n: int = 40) -> Planted:
    planted = Planted(n)
    rng = np.random.default_rng(0)
    for k in range(n_models):
        name = f"m{k}"
        planted.model(name)
        planted.accuracy(name, CLEAN, 0.95, seed=k)
        planted.accuracy(name, PGD, robust[k], seed=k)
        values = np.clip(coverage[k] + rng.normal(0, 0.05, n), 0, 1)
        planted.metric(name, CLEAN, "saliency", "point_coverage@15", values)
    return planted


def test_secure_planted_correlation_is_supported(tmp_path: Path) -> None:
    robust = [0.1, 0.25, 0.4, 0.55, 0.7, 0.85]
    run = write_run(tmp_path, _ladder(6, robust, coverage=[0.2, 0.3, 0.4, 0.5, 0.6, 0.7]))
    r = _one("secure.robustness_alignment", run)
    assert r.verdict == "supported", r.why
    assert r.effect == pytest.approx(1.0) and r.n == 6 and r.n_unit == "models"
    assert r.p_value == pytest.approx(2 / 720) and r.ci_low > 0


def test_secure_planted_opposite_is_contradicted(tmp_path: Path) -> None:
    robust = [0.1, 0.25, 0.4, 0.55, 0.7, 0.85]
    run = write_run(tmp_path, _ladder(6, robust, coverage=[0.7, 0.6, 0.5, 0.4, 0.3, 0.2]))
    r = _one("secure.robustness_alignment", run)
    assert r.verdict == "contradicted" and r.effect == pytest.approx(-1.0)


def test_secure_planted_null_is_inconclusive(tmp_path: Path) -> None:
    robust = [0.1, 0.25, 0.4, 0.55, 0.7, 0.85]
    run = write_run(tmp_path, _ladder(6, robust, coverage=[0.4, 0.7, 0.2, 0.3, 0.6, 0.5]))
    r = _one("secure.robustness_alignment", run)
    assert r.verdict == "inconclusive" and "no significant" in r.why


def test_secure_three_models_are_too_few_whatever_the_data(tmp_path: Path) -> None:
    run = write_run(tmp_path, _ladder(3, [0.1, 0.5, 0.9], coverage=[0.2, 0.5, 0.8]))
    r = _one("secure.robustness_alignment", run)
    assert r.verdict == "inconclusive" and r.effect == pytest.approx(1.0)
    assert "too few models (n = 3; needs ≥ 5" in r.why and "--profile paper" in r.why


# -- attentive CNNs: attention vs its standard counterpart -------------------------------------------------
def _pair(att_pgd: float, std_pgd: float, n: int = 200, **attention: object) -> Planted:
    planted = Planted(n)
    planted.model("standard")
    planted.model("attention", arch="smallcnn-attention", **attention)
    for name, acc in (("attention", att_pgd), ("standard", std_pgd)):
        planted.accuracy(name, CLEAN, 0.95, seed=1)
        planted.accuracy(name, PGD, acc, seed=2)  # same seed: the better model is right on a superset
    return planted


def test_attention_planted_gain_is_supported_per_pair_and_eps(tmp_path: Path) -> None:
    r = _one("attentive.pgd_robustness", write_run(tmp_path, _pair(0.6, 0.3, init_from="standard")))
    assert r.verdict == "supported", r.why
    assert r.effect == pytest.approx(0.3) and r.ci_low > 0 and r.p_value is not None and r.p_value < 0.05
    assert r.scope == "attention vs standard, pgd ε = 4/255" and r.n == 200


def test_attention_planted_loss_is_contradicted(tmp_path: Path) -> None:
    r = _one("attentive.pgd_robustness", write_run(tmp_path, _pair(0.2, 0.5)))
    assert r.verdict == "contradicted" and r.effect == pytest.approx(-0.3)


def test_attention_equal_accuracy_is_inconclusive(tmp_path: Path) -> None:
    r = _one("attentive.pgd_robustness", write_run(tmp_path, _pair(0.4, 0.4)))
    assert r.verdict == "inconclusive" and "spans 0" in r.why


def test_attention_without_counterpart_is_inconclusive(tmp_path: Path) -> None:
    planted = Planted(20)
    planted.model("attention", arch="smallcnn-attention")
    planted.model("resnet", arch="resnet18")
    planted.accuracy("attention", PGD, 0.5)
    r = _one("attentive.pgd_robustness", write_run(tmp_path, planted))
    assert r.verdict == "inconclusive" and "no model of arch 'smallcnn'" in r.why


def test_attention_counterpart_by_init_from_beats_the_naming_rule(tmp_path: Path) -> None:
    """Two smallcnn models trained the same way: only init_from can say which one the head was put on."""
    planted = _pair(0.6, 0.3)
    planted.model("standard2")
    planted.accuracy("standard2", CLEAN, 0.95)
    planted.accuracy("standard2", PGD, 0.9)
    ambiguous = _one("attentive.pgd_robustness", write_run(tmp_path / "a", planted))
    assert ambiguous.verdict == "inconclusive" and "several candidate" in ambiguous.why
    planted.models[1]["init_from"] = "standard2"
    r = _one("attentive.pgd_robustness", write_run(tmp_path / "b", planted))
    assert r.scope.startswith("attention vs standard2") and r.verdict == "contradicted"


def test_attention_clean_accuracy_non_inferiority(tmp_path: Path) -> None:
    kept = _one("attentive.clean_accuracy_kept", write_run(tmp_path / "a", _pair(0.6, 0.3, n=400)))
    assert kept.verdict == "supported" and kept.effect == pytest.approx(0.0)
    planted = _pair(0.6, 0.3, n=400)
    planted.accuracy("attention", CLEAN, 0.75, seed=1)  # 20 points below the standard model
    lost = _one("attentive.clean_accuracy_kept", write_run(tmp_path / "b", planted))
    assert lost.verdict == "contradicted" and lost.effect == pytest.approx(-0.2)


def test_models_at_chance_cannot_support_a_robustness_claim(tmp_path: Path) -> None:
    planted = _pair(0.6, 0.3)
    planted.accuracy("standard", CLEAN, 0.5, seed=1)
    r = _one("attentive.pgd_robustness", write_run(tmp_path, planted))
    assert r.verdict == "inconclusive" and "no better than chance" in r.why


# -- explainability impact: accuracy falls, IoU/RMSE unchanged, map SSIM changes ----------------------------
def _impact(iou_shift: float, acc_attacked: float = 0.4, map_ssim: float = 0.5, n: int = 60) -> Planted:
    planted = Planted(n)
    planted.model("standard")
    planted.accuracy("standard", CLEAN, 0.9)
    rng = np.random.default_rng(3)
    for explainer in ("gradcam", "lime"):
        iou = rng.uniform(0.2, 0.5, n)
        rmse = rng.uniform(0.3, 0.4, n)
        planted.metric("standard", CLEAN, explainer, "topk_iou@15", iou)
        planted.metric("standard", CLEAN, explainer, "rmse@15", rmse)
        for cond in (FGSM, BIM):
            planted.accuracy("standard", cond, acc_attacked, seed=5)
            planted.metric(
                "standard", cond, explainer, "topk_iou@15", iou + iou_shift + rng.normal(0, 0.01, n)
            )
            planted.metric("standard", cond, explainer, "rmse@15", rmse + rng.normal(0, 0.01, n))
            planted.metric(
                "standard", cond, explainer, "map_ssim", np.clip(map_ssim + rng.normal(0, 0.05, n), 0, 1)
            )
    return planted


def test_impact_planted_equivalence_is_supported(tmp_path: Path) -> None:
    run = write_run(tmp_path, _impact(iou_shift=0.0))
    falls = _eval("impact.accuracy_falls", run)
    assert [r.verdict for r in falls] == ["supported", "supported"]
    assert [r.scope for r in falls] == ["standard, bim ε = 4/255", "standard, fgsm ε = 4/255"]
    unchanged = _eval("impact.iou_rmse_unchanged", run)
    assert len(unchanged) == 4 and all(r.verdict == "supported" for r in unchanged), [
        r.why for r in unchanged
    ]
    assert all(r.p_value is not None and r.p_value < 0.05 for r in unchanged)
    assert "(gradcam, lime)" in unchanged[0].scope
    detects = _eval("impact.map_ssim_detects", run)
    assert all(r.verdict == "supported" and r.effect == pytest.approx(0.5, abs=0.03) for r in detects)


def test_impact_planted_iou_shift_is_contradicted(tmp_path: Path) -> None:
    unchanged = _eval("impact.iou_rmse_unchanged", write_run(tmp_path, _impact(iou_shift=-0.2)))
    iou = [r for r in unchanged if "IoU" in r.scope]
    assert all(r.verdict == "contradicted" and r.effect == pytest.approx(-0.2, abs=0.01) for r in iou)


def test_impact_unchanged_metrics_prove_nothing_when_accuracy_does_not_fall(tmp_path: Path) -> None:
    run = write_run(tmp_path, _impact(iou_shift=0.0, acc_attacked=0.9, map_ssim=0.99))
    assert {r.verdict for r in _eval("impact.accuracy_falls", run)} == {"inconclusive"}
    unchanged = _eval("impact.iou_rmse_unchanged", run)
    assert all(r.verdict == "inconclusive" and "did not measurably lower" in r.why for r in unchanged)
    assert {r.verdict for r in _eval("impact.map_ssim_detects", run)} == {"contradicted"}


def test_impact_without_fgsm_or_bim_is_inconclusive(tmp_path: Path) -> None:
    run = write_run(tmp_path, _pair(0.5, 0.5))
    for claim in ("impact.accuracy_falls", "impact.iou_rmse_unchanged", "impact.map_ssim_detects"):
        r = _one(claim, run)
        assert r.verdict == "inconclusive" and "none of the paper's attacks" in r.why


# -- adversarial training ------------------------------------------------------------------------------------
def test_adversarial_training_gain_is_supported(tmp_path: Path) -> None:
    planted = Planted(100)
    planted.model("standard")
    planted.model("adversarial", training="pgd", init_from="standard")
    for name, acc in (("standard", 0.05), ("adversarial", 0.6)):
        planted.accuracy(name, CLEAN, 0.95)
        planted.accuracy(name, PGD, acc, seed=4)
    r = _one("secure.adversarial_training", write_run(tmp_path, planted))
    assert r.verdict == "supported" and r.effect == pytest.approx(0.55)


# -- trustworthiness: manipulation and transfer ------------------------------------------------------------
_GOOD = {"unsuccessful": 0.0, "peak": 1.0, "image_ssim": 0.995, "unchanged": 1.0, "map_ssim": 0.2}


def _manip(n: int, **overrides: float) -> Planted:
    planted = Planted(n)
    planted.model("standard")
    planted.accuracy("standard", CLEAN, 0.9)
    manipulation(planted, "standard", "saliency", **{**_GOOD, **overrides})
    manipulation(planted, "standard", "gradcam", **_GOOD)
    return planted


def test_manipulation_meeting_every_criterion_is_supported(tmp_path: Path) -> None:
    results = _eval("trust.manipulation_succeeds", write_run(tmp_path, _manip(80)))
    assert [r.scope for r in results] == ["standard, manipulated gradcam", "standard, manipulated saliency"]
    assert all(r.verdict == "supported" for r in results), [r.why for r in results]
    assert results[0].effect == 0.0 and results[0].n == 80


def test_manipulation_perfect_on_too_few_images_says_how_many_would_decide(tmp_path: Path) -> None:
    """64 of 64 predictions kept cannot prove ≥ 95 % with a two-sided exact 95 % interval; 72 of 72 can."""
    r = _eval("trust.manipulation_succeeds", write_run(tmp_path, _manip(64)))[0]
    assert r.verdict == "inconclusive"
    assert "threshold of predictions unchanged" in r.why and "predictions unchanged from n ≥ 72" in r.why


def test_manipulation_failing_one_criterion_is_contradicted(tmp_path: Path) -> None:
    results = _eval("trust.manipulation_succeeds", write_run(tmp_path, _manip(80, peak=0.1)))
    saliency = results[1]
    assert saliency.verdict == "contradicted" and "fails map peak inside the target" in saliency.why
    assert results[0].verdict == "supported"


def test_manipulation_on_four_images_is_inconclusive(tmp_path: Path) -> None:
    r = _eval("trust.manipulation_succeeds", write_run(tmp_path, _manip(4)))[0]
    assert r.verdict == "inconclusive" and "interval spans the threshold" in r.why and r.n == 4


def test_no_manipulation_stage_is_inconclusive(tmp_path: Path) -> None:
    run = write_run(tmp_path, _pair(0.5, 0.5))
    for claim in ("trust.manipulation_succeeds", "trust.ig_transfer"):
        assert _one(claim, run).verdict == "inconclusive"
    assert "no manipulation stage" in _one("trust.manipulation_succeeds", run).why


def test_ig_transfer_per_evaluated_method(tmp_path: Path) -> None:
    planted = Planted(40)
    planted.model("standard")
    planted.accuracy("standard", CLEAN, 0.9)
    manipulation(planted, "standard", "integrated_gradients", **_GOOD, evaluated=("saliency",))
    moved = _eval("trust.ig_transfer", write_run(tmp_path / "a", planted))
    assert [(r.scope, r.verdict) for r in moved] == [
        ("standard, saliency on images manipulated through integrated_gradients", "supported")
    ]
    planted = Planted(40)
    planted.model("standard")
    planted.accuracy("standard", CLEAN, 0.9)
    manipulation(
        planted, "standard", "integrated_gradients", **{**_GOOD, "peak": 0.1}, evaluated=("saliency",)
    )
    stuck = _eval("trust.ig_transfer", write_run(tmp_path / "b", planted))
    assert stuck[0].verdict == "contradicted" and stuck[0].effect == pytest.approx(0.1)


def test_secure_leaves_out_a_model_without_maps(tmp_path: Path) -> None:
    planted = _ladder(6, [0.1, 0.25, 0.4, 0.55, 0.7, 0.85], coverage=[0.2, 0.3, 0.4, 0.5, 0.6, 0.7])
    planted.model("extra")
    planted.accuracy("extra", CLEAN, 0.95)
    planted.accuracy("extra", PGD, 0.5)  # predictions, but no maps (a manipulation-only model)
    r = _one("secure.robustness_alignment", write_run(tmp_path, planted))
    assert r.verdict == "supported" and r.n == 6


def test_a_store_without_a_config_pairs_models_by_the_naming_rule(tmp_path: Path) -> None:
    """Stores of earlier versions have no ``meta.config``: the ``models`` table's arch and training serve."""
    planted = _pair(0.6, 0.3)
    run = write_run(tmp_path, planted)
    run.meta.pop("config")
    r = _one("attentive.pgd_robustness", run)
    assert r.scope == "attention vs standard, pgd ε = 4/255" and r.verdict == "supported"


def _auc_rows(planted: Planted, adv_noise: float) -> None:
    rng = np.random.default_rng(9)
    y = np.array([i % 2 for i in range(planted.n)], dtype=float)
    clean = np.clip(0.5 + 0.4 * (2 * y - 1) + rng.normal(0, 0.15, planted.n), 0, 1)
    adv = np.clip(clean + rng.normal(0, adv_noise, planted.n), 0, 1)
    cond = ("manipulate:saliency", 0.0)
    for k, (label, c, a) in enumerate(((1 - y, 1 - clean, 1 - adv), (y, clean, adv))):
        planted.metric("standard", cond, "", f"label@{k}", label)
        planted.metric("standard", cond, "", f"clean_score@{k}", c)
        planted.metric("standard", cond, "", f"adv_score@{k}", a)


def test_auc_kept_when_the_scores_barely_move_and_not_when_they_scramble(tmp_path: Path) -> None:
    kept = _manip(80)
    _auc_rows(kept, adv_noise=0.005)
    r = _eval("trust.auc_kept", write_run(tmp_path / "a", kept))
    saliency = [x for x in r if x.scope == "standard, manipulated saliency"][0]
    assert saliency.verdict == "supported" and abs(saliency.effect) < 1.0, saliency.why
    scrambled = _manip(80)
    _auc_rows(scrambled, adv_noise=1.0)
    r = _eval("trust.auc_kept", write_run(tmp_path / "b", scrambled))
    saliency = [x for x in r if x.scope == "standard, manipulated saliency"][0]
    assert saliency.verdict == "contradicted" and saliency.effect < -10
    gradcam = [x for x in r if x.scope == "standard, manipulated gradcam"][0]
    assert gradcam.verdict == "inconclusive" and "AUC undefined" in gradcam.why  # no per-label rows
