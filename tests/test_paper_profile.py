"""The ``paper`` profile (issue 15): what it promises, checked without running it; and the two config keys it
needs — a per-model PGD training ε (the ladder) and ``explain.epsilons`` (explain some budgets of a sweep)."""

from __future__ import annotations

import tomllib
from collections import Counter
from pathlib import Path

import pytest

from robustxai import ConfigError
from robustxai.audit._config import load_config, profile_dict
from robustxai.audit._kinds import UNIT_KINDS  # noqa: F401  (registers every unit kind)
from robustxai.audit._plan import AuditData, explained_conditions, plan_units
from robustxai.audit._runner import check_config
from robustxai.audit._stages_models import fit_config_for, model_key
from robustxai.data import SyntheticFracture

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = (
    "tests internals of robustxai.audit._config, robustxai.audit._kinds, robustxai.audit._plan, "
    "robustxai.audit._runner, robustxai.audit._stages_models"
)

TEN = {
    "saliency", "input_x_gradient", "integrated_gradients", "smoothgrad", "deeplift",
    "gradcam", "guided_gradcam", "occlusion", "lime", "xrai",
}  # fmt: skip
FOUR_OVER_255 = 4 / 255


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


def test_paper_profile_validates_and_holds_the_ladder_and_the_attention_pairs() -> None:
    cfg = load_config(profile="paper")
    assert check_config(cfg) == []
    by_name = {m.name: m for m in cfg.models}
    ladder = [m for m in cfg.models if m.arch == "smallcnn"]
    budgets = [fit_config_for(cfg, m).eps if m.training == "pgd" else 0.0 for m in ladder]
    assert len(set(budgets)) == len(ladder) >= 6  # graded: one distinct training ε per rung
    assert sorted(round(b * 255, 2) for b in budgets) == [0.0, 0.5, 1.0, 2.0, 4.0, 8.0]
    assert all(m.init_from == "standard" for m in ladder if m.training == "pgd")
    # attention − counterpart: same start, same schedule, only the head differs
    pairs = {"attention": "standard", "attention-4": "adv-4"}
    for att, base in pairs.items():
        a, b = by_name[att], by_name[base]
        assert a.arch == "smallcnn-attention" and a.training == b.training
        assert fit_config_for(cfg, a).eps == fit_config_for(cfg, b).eps
    a4, b4 = fit_config_for(cfg, by_name["attention-4"]), fit_config_for(cfg, by_name["adv-4"])
    assert (a4.epochs, a4.lr, a4.eps) == (b4.epochs, b4.lr, b4.eps) and a4.eps == pytest.approx(FOUR_OVER_255)


def test_paper_profile_plans_ten_explainers_on_100_images_and_seven_manipulated_methods() -> None:
    cfg = load_config(profile="paper")
    assert set(cfg.explain.methods) == TEN
    conds = explained_conditions(cfg)
    assert {c[0] for c in conds} == {"clean", "fgsm", "pgd", "bim"}
    assert all(c[1] == pytest.approx(FOUR_OVER_255) for c in conds if c[0] != "clean")
    pgd = next(a for a in cfg.attacks if a.name == "pgd")
    assert len(pgd.epsilons) >= 5 and any(e == pytest.approx(FOUR_OVER_255) for e in pgd.epsilons)
    test = SyntheticFracture(cfg.data.n_test, size=16, seed=cfg.seed + 1_000_003)  # labels: any size
    assert sum(test.labels()) >= cfg.explain.n_images >= 100  # enough annotated (fractured) test images
    data = AuditData(SyntheticFracture(cfg.explain.n_images, size=16, fracture_rate=1.0), 100, Path("."))
    units = plan_units(cfg, data)
    explained = Counter((u.model, u.explainer) for u in units if u.kind == "explanation" for _ in u.indices)
    assert set(explained) == {(m.name, e) for m in cfg.models for e in TEN | {"random"}}  # + the baseline
    assert set(explained.values()) == {100}
    mc = cfg.manipulation
    assert mc is not None and mc.n_images >= 32 and "integrated_gradients" in mc.transfer_from
    assert set(mc.methods) == {"saliency", "input_x_gradient", "gradcam", "guided_gradcam",
                               "integrated_gradients", "smoothgrad", "xrai"}  # fmt: skip
    manipulated = Counter(u.explainer for u in units if u.kind == "manipulation" for _ in u.indices)
    assert set(manipulated) == set(mc.methods) and set(manipulated.values()) == {32}


def test_paper_profile_manipulation_is_the_benchmarked_block() -> None:
    """The profile's [manipulation] is benchmarks/paper_manipulation.toml's (BENCHMARKS.md: its figures)."""
    block = Path(__file__).parents[1] / "benchmarks" / "paper_manipulation.toml"
    bench = tomllib.loads(block.read_text())["manipulation"]
    assert profile_dict("paper")["manipulation"] == bench


def test_model_eps_overrides_the_training_budget_and_leaves_other_models_alone(tmp_path: Path) -> None:
    default = load_config(profile="default")
    adv = next(m for m in default.models if m.training == "pgd")
    assert fit_config_for(default, adv).eps == default.training.eps  # unset: the shared ε, as before
    text = '[[models]]\nname = "s"\n[[models]]\nname = "r"\ntraining = "pgd"\ninit_from = "s"\neps = 0.0313\n'
    cfg = load_config(_write(tmp_path, text), profile="smoke")
    r = next(m for m in cfg.models if m.name == "r")
    assert fit_config_for(cfg, r).eps == 0.0313
    info = {"class_names": ["a", "b"]}
    same_but_shared = r.model_copy(update={"eps": None})
    assert model_key(cfg, r, info, 1, "p") != model_key(cfg, same_but_shared, info, 1, "p")


@pytest.mark.parametrize(
    ("model", "match"),
    [
        ('name = "s"\neps = 0.01\n', "needs training = 'pgd'"),
        ('name = "s"\ntraining = "pgd"\neps = 2.0\n', "≥ 1"),
        ('name = "s"\ntraining = "pgd"\neps = -0.1\n', "eps"),
    ],
)
def test_model_eps_is_refused_where_it_means_nothing(tmp_path: Path, model: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_config(_write(tmp_path, f"[[models]]\n{model}"), profile="smoke")


def test_explain_epsilons_picks_the_explained_budgets_and_warns_about_strays(tmp_path: Path) -> None:
    text = (
        '[[attacks]]\nname = "pgd"\nepsilons = [0.01, 0.02, 0.04]\n[explain]\nattacks = ["pgd"]\n'
        "epsilons = [0.02, 0.5]\n"
    )
    cfg = load_config(_write(tmp_path, text), profile="smoke")
    assert explained_conditions(cfg) == [("clean", 0.0), ("pgd", 0.02)]
    assert any("explain.epsilons" in w and "0.5" in w for w in check_config(cfg))
    smoke = load_config(profile="smoke")  # unset: every budget of every explained attack, as before
    assert len(explained_conditions(smoke)) == 1 + len(smoke.explain.attacks or [])
    with pytest.raises(ConfigError, match="epsilons"):
        load_config(_write(tmp_path, "[explain]\nepsilons = [nan]\n"), profile="smoke")
