"""Report tables of the explanation side: stability.csv, impact tables, localisation, correlation, ranks."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from robustxai.report import build_report
from robustxai.report._explain_tables import correlation_table
from robustxai.report._tables import STABILITY_COLUMNS, compute_tables
from robustxai.results import Store, load_run

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = (
    "tests internals of robustxai.report._explain_tables, robustxai.report._figures, "
    "robustxai.report._html_tables, robustxai.report._tables"
)

EPS = 4 / 255
SAMPLES = [f"s{i}" for i in range(8)]
# Four models whose robustness and alignment are perfectly rank-ordered (ρ = 1 for accuracy).
MODELS = {"m1": 0.125, "m2": 0.25, "m3": 0.5, "m4": 0.75}
ATTACKS = ("fgsm", "bim", "pgd")


def _write_store(run_dir: Path, reference: bool = True) -> None:
    rng = np.random.default_rng(0)
    with Store(run_dir) as store:
        models_cfg = [
            {"name": m, **({"reference_rank": 5 - i} if reference else {})} for i, m in enumerate(MODELS)
        ]
        store.set_meta("config", {"models": models_cfg})
        store.set_meta("primary_attack", {"attack": "pgd", "epsilon": EPS})
        rows = []
        for model, robust in MODELS.items():
            store.add_model(model, "smallcnn", "standard", {})
            n_ok = round(robust * len(SAMPLES))
            store.add_predictions((model, "clean", 0.0, s, 1, 1, 1) for s in SAMPLES)
            for attack in ATTACKS:
                for eps in (2 / 255, EPS):
                    flags = [1 if i < n_ok else 0 for i in range(len(SAMPLES))]
                    store.add_predictions(
                        (model, attack, eps, s, 1, f, f) for s, f in zip(SAMPLES, flags, strict=True)
                    )
            for explainer in ("saliency", "random"):
                for cond, eps in [("clean", 0.0)] + [(a, e) for a in ATTACKS for e in (2 / 255, EPS)]:
                    for s in SAMPLES:
                        # alignment grows with robustness, plus noise that keeps the model order
                        base = robust if explainer == "saliency" else 0.1
                        for metric in ("point_coverage@15", "topk_iou@15", "rmse@15", "pointing_game"):
                            rows.append((model, cond, eps, explainer, metric, s, base + 0.01 * rng.random()))
                        if cond != "clean":
                            for metric in ("map_ssim", "map_mse", "map_pearson"):
                                rows.append((model, cond, eps, explainer, metric, s, float(rng.random())))
        store.add_metrics(rows)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("explain-report")
    _write_store(path)
    build_report(path)
    return path


def test_stability_csv_has_the_issue_columns_and_alignment_csv_keeps_only_alignment(run_dir: Path) -> None:
    stab = pd.read_csv(run_dir / "tables" / "stability.csv")
    assert list(stab.columns) == STABILITY_COLUMNS
    assert set(stab["metric"]) == {"map_ssim", "map_mse", "map_pearson"}
    assert "clean" not in set(stab["attack"])
    assert "random" not in set(stab["explainer"])
    # 4 models × 3 attacks × 2 ε × 1 explainer × 3 metrics
    assert len(stab) == 4 * 3 * 2 * 3
    assert (stab["n"] == len(SAMPLES)).all()
    align = pd.read_csv(run_dir / "tables" / "alignment.csv")
    assert not align["metric"].str.startswith("map_").any()


def test_correlation_is_spearman_with_exact_permutation_p(run_dir: Path) -> None:
    corr = pd.read_csv(run_dir / "tables" / "correlation.csv")
    row = corr[
        (corr["robustness_figure"] == "adversarial_accuracy")
        & (corr["explainer"] == "saliency")
        & (corr["alignment_metric"] == "point_coverage@15")
    ].iloc[0]
    assert row["rho"] == pytest.approx(1.0)
    assert row["n_models"] == 4
    # exact two-sided permutation test over 4! orders: only the identity and the reversal reach |ρ| = 1
    assert row["p_value"] == pytest.approx(2 / 24)
    delta = corr[(corr["robustness_figure"] == "delta_accuracy") & (corr["explainer"] == "saliency")]
    assert (delta["rho"] < 0).all()  # clean accuracy is 1 for all, so ΔAcc falls as robustness rises


def test_correlation_needs_three_models() -> None:
    rob = pd.DataFrame(
        {
            "model": ["a", "b"],
            "attack": "pgd",
            "epsilon": EPS,
            "adversarial_accuracy": [0.1, 0.2],
            "delta_accuracy": [0.5, 0.4],
        }
    )
    align = pd.DataFrame(
        {
            "model": ["a", "b"],
            "condition": "clean",
            "epsilon": 0.0,
            "explainer": "saliency",
            "metric": "point_coverage@15",
            "value": [0.3, 0.4],
        }
    )
    out = correlation_table(rob, align, ("pgd", EPS))
    assert len(out) == 2
    assert out["rho"].isna().all() and (out["n_models"] == 2).all()


def test_html_has_impact_stability_correlation_and_reference_rank(run_dir: Path) -> None:
    html = (run_dir / "report.html").read_text()
    for needle in (
        "impact_topk_iou",
        "impact_rmse",
        'id="stability"',
        'id="correlation"',
        "localisation",
        "reference rank",
        "Pearson r",
    ):
        assert needle in html, needle
    # the impact tables compare clean with every explained attack at the primary ε
    for label in ("fgsm ε=4/255", "bim ε=4/255", "pgd ε=4/255"):
        assert label in html
    # each metric column says which way is better, from the metric registry
    assert '<th title="lower is better" class="num">RMSE top 15 % ↓</th>' in html
    assert '<th title="higher is better" class="num">IoU top 15 % ↑</th>' in html
    assert '<th title="higher is better" class="num">top 15 % ↑</th>' in html


def test_no_reference_rank_column_without_one(tmp_path: Path) -> None:
    _write_store(tmp_path, reference=False)
    tables = compute_tables(load_run(tmp_path))
    assert tables.reference_ranks == {}
    build_report(tmp_path)
    assert "reference rank" not in (tmp_path / "report.html").read_text()


def test_stability_values_are_the_per_sample_means(run_dir: Path) -> None:
    run = load_run(run_dir)
    tables = compute_tables(run)
    m = run.metrics
    sel = m[
        (m.model == "m2")
        & (m.condition == "bim")
        & np.isclose(m.epsilon, EPS)
        & (m.metric == "map_mse")
        & (m.explainer == "saliency")
    ]
    row = tables.stability[
        (tables.stability.model == "m2")
        & (tables.stability.attack == "bim")
        & np.isclose(tables.stability.epsilon, EPS)
        & (tables.stability.metric == "map_mse")
    ]
    assert math.isclose(float(row["value"].iloc[0]), float(sel["value"].mean()), rel_tol=1e-12)
    assert float(row["ci_low"].iloc[0]) <= float(row["value"].iloc[0]) <= float(row["ci_high"].iloc[0])


def test_accuracy_curve_on_a_doubling_epsilon_grid(tmp_path: Path) -> None:
    from robustxai.report._figures import robustness_figure

    grid = [0.00125 * 2**k for k in range(9)]  # the attentive-CNN paper's 0.00125 … 0.32
    rob = pd.DataFrame(
        {
            "model": "m",
            "attack": "pgd",
            "epsilon": grid,
            "clean_accuracy": 0.9,
            "adversarial_accuracy": np.linspace(0.8, 0.0, len(grid)),
            "delta_accuracy": 0.0,
            "n": 10,
        }
    )
    clean = pd.DataFrame({"model": ["m"], "accuracy": [0.9], "n": [10]})
    path = robustness_figure(rob, clean, tmp_path / "curve.png")
    assert path is not None and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_metric_headers_carry_the_registered_direction() -> None:
    from robustxai.report._html_tables import direction_arrow

    assert direction_arrow("point_coverage@15") == " ↑" and direction_arrow("topk_iou@15") == " ↑"
    assert direction_arrow("rmse@15") == " ↓" and direction_arrow("map_mse") == " ↓"
    assert direction_arrow("map_ssim") == " ↑" and direction_arrow("pointing_game") == " ↑"
    assert direction_arrow("mask_area@15") == ""  # descriptive: no better direction
