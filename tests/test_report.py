"""Tests of the report layer: tables, ranks, NaN handling, HTML safety, figures and determinism."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from robustxai import RobustXAIError
from robustxai.metrics import bootstrap_ci
from robustxai.report import build_report, compute_tables, load_run, summarize
from robustxai.report._tables import (
    ALIGNMENT_COLUMNS,
    ROBUSTNESS_COLUMNS,
    format_epsilon,
    primary_ranks,
    resolve_primary,
)
from robustxai.results import Store

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = (
    "tests internals of robustxai.report._gaps, robustxai.report._summary, robustxai.report._tables, "
    "robustxai.report._undefined"
)

EPS = 4 / 255
SAMPLES = [f"s{i}" for i in range(6)]
EXPLAINERS = ["saliency", "integrated_gradients", "gradcam", "random"]
MAP_METRICS = [
    "point_coverage@5",
    "point_coverage@15",
    "point_coverage@25",
    "point_coverage@85",
    "mask_area@15",
    "topk_iou@15",
    "rmse@15",
]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# correct-per-sample patterns, one per model and condition
CORRECT = {
    "standard": {"clean": [1, 1, 1, 1, 1, 0], "fgsm": [1, 1, 0, 0, 0, 0], "pgd": [1, 0, 0, 0, 0, 0]},
    "adversarial": {"clean": [1, 1, 1, 1, 0, 0], "fgsm": [1, 1, 1, 0, 0, 0], "pgd": [1, 1, 1, 1, 0, 0]},
    "attention": {"clean": [1, 1, 1, 1, 1, 1], "fgsm": [1, 1, 1, 0, 0, 0], "pgd": [1, 1, 1, 0, 0, 0]},
}


def make_store(
    run_dir: Path,
    correct: dict[str, dict[str, list[int]]] | None = None,
    rename: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Write a small fake run store; return the per-sample metric rows it holds."""
    correct = correct or CORRECT
    rename = rename or {}
    rng = np.random.default_rng(123)
    rows: list[tuple[str, str, float, str, str, str, float]] = []
    with Store(run_dir) as store:
        store.set_meta("run_name", "unit-test run")
        store.set_meta("config", {"seed": 0, "attacks": ["fgsm", "pgd"], "note": "<b>not bold</b>"})
        store.set_meta("primary_attack", {"attack": "pgd", "epsilon": 0.0157})
        store.set_meta("warnings", ["model 'standard' was trained for 1 epoch <i>only</i>"])
        store.set_meta("timings", {"attacks": 1.5, "explain": 12.25})
        store.set_meta("dataset", {"name": "synthetic-fractures", "n": 6, "size": 32})
        store.set_meta("versions", {"robustxai": "0.1.0", "torch": "2.x"})
        for name, conds in correct.items():
            model = rename.get(name, name)
            store.add_model(model, "smallcnn", "standard", {"epochs": 1})
            for cond, flags in conds.items():
                eps = 0.0 if cond == "clean" else EPS
                store.add_predictions(
                    (model, cond, eps, sid, 1, int(f), int(f)) for sid, f in zip(SAMPLES, flags, strict=True)
                )
                for explainer in EXPLAINERS:
                    names = MAP_METRICS + ([] if cond == "clean" else ["map_ssim"])
                    for metric in names:
                        for i, sid in enumerate(SAMPLES):
                            value = float(rng.uniform(0, 1))
                            # s5 has no expert points: point coverage undefined
                            if i == 5 and metric.startswith("point_coverage"):
                                value = float("nan")
                            rows.append((model, cond, eps, explainer, metric, sid, value))
        store.add_metrics(rows)
        for sid in ("s0", "s1"):
            mask = np.zeros((32, 32), dtype=bool)
            mask[10:20, 12:22] = True
            image = rng.uniform(0, 1, size=(1, 32, 32)).astype(np.float32)
            store.add_figure_sample(sid, image, mask, np.array([[15.0, 14.0], [18.0, 16.0]]))
            store.add_figure_maps(
                (rename.get(m, m), c, e, x, sid, rng.uniform(0, 1, size=(32, 32)).astype(np.float32))
                for m in correct
                for c, e in (("clean", 0.0), ("pgd", EPS))
                for x in EXPLAINERS
            )
    return pd.DataFrame(
        rows, columns=["model", "condition", "epsilon", "explainer", "metric", "sample_id", "value"]
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    run_dir = tmp_path_factory.mktemp("run")
    metrics = make_store(run_dir)
    path = build_report(run_dir)
    return {"run_dir": run_dir, "metrics": metrics, "html": path.read_text(encoding="utf-8"), "path": path}


def test_robustness_csv_matches_hand_computed(built: dict[str, Any]) -> None:
    df = pd.read_csv(built["run_dir"] / "tables" / "robustness.csv")
    assert list(df.columns) == ROBUSTNESS_COLUMNS
    assert len(df) == 3 * 2  # model × attack at one ε
    assert list(df["model"]) == sorted(df["model"])
    for row in df.itertuples():
        flags = CORRECT[row.model]
        assert row.clean_accuracy == pytest.approx(np.mean(flags["clean"]))
        assert row.adversarial_accuracy == pytest.approx(np.mean(flags[row.attack]))
        assert row.delta_accuracy == pytest.approx(np.mean(flags["clean"]) - np.mean(flags[row.attack]))
        assert row.epsilon == pytest.approx(EPS)
        assert row.n == 6
        assert 0.0 <= row.adversarial_accuracy <= 1.0


def test_alignment_csv_means_nan_and_ci(built: dict[str, Any]) -> None:
    df = pd.read_csv(built["run_dir"] / "tables" / "alignment.csv")
    assert list(df.columns) == ALIGNMENT_COLUMNS
    assert set(df["explainer"]) == set(EXPLAINERS)  # random baseline included
    raw = built["metrics"]
    for row in df.sample(n=40, random_state=0).itertuples():
        values = raw[
            (raw.model == row.model)
            & (raw.condition == row.condition)
            & (raw.explainer == row.explainer)
            & (raw.metric == row.metric)
        ]["value"].to_numpy()
        assert row.value == pytest.approx(np.nanmean(values))
        assert row.n == np.isfinite(values).sum()
        mean, low, high = bootstrap_ci(values, seed=0)
        assert (row.ci_low, row.ci_high) == pytest.approx((low, high))
    pc = df[df.metric == "point_coverage@15"]
    assert (pc["n"] == 5).all()  # s5 is NaN and left out
    assert (df[df.metric == "rmse@15"]["n"] == 6).all()
    assert "map_ssim" not in set(df["metric"])  # clean-vs-attacked similarity lives in stability.csv
    stab = pd.read_csv(built["run_dir"] / "tables" / "stability.csv")
    assert set(stab["attack"]) == {"fgsm", "pgd"} and set(stab["metric"]) == {"map_ssim"}


def test_primary_attack_and_ranks_with_ties(tmp_path: Path) -> None:
    tables = compute_tables(load_run(_store_only(tmp_path)))
    assert tables.primary is not None
    assert tables.primary[0] == "pgd" and tables.primary[1] == pytest.approx(EPS)
    assert primary_ranks(tables.robustness, tables.primary) == {
        "adversarial": 1,
        "attention": 2,
        "standard": 3,
    }
    tied = {**CORRECT, "attention": {**CORRECT["attention"], "pgd": [0, 1, 1, 1, 1, 0]}}
    run_dir = tmp_path / "tied"
    make_store(run_dir, correct=tied)
    tables = compute_tables(load_run(run_dir))
    assert primary_ranks(tables.robustness, tables.primary) == {
        "adversarial": 1,
        "attention": 1,
        "standard": 3,
    }
    html = build_report(run_dir).read_text(encoding="utf-8")
    section = html.split('<section id="robustness">')[1].split("</section>")[0]
    row = re.search(r"<tr><td[^>]*>standard</td>(.*?)</tr>", section)
    assert row is not None and row.group(1).rstrip().endswith('<td class="num">3</td>')
    assert "tie for the highest accuracy" in " ".join(summarize(tables))


def _store_only(tmp_path: Path) -> Path:
    run_dir = tmp_path / "plain"
    make_store(run_dir)
    return run_dir


def test_resolve_primary_fallback_notes() -> None:
    rob = pd.DataFrame({"attack": ["fgsm", "pgd", "pgd"], "epsilon": [0.1, 0.01, 0.03]})
    assert resolve_primary({}, rob)[0] == ("pgd", 0.03)
    cond, notes = resolve_primary({"primary_attack": {"attack": "bim", "epsilon": 0.1}}, rob)
    assert cond == ("pgd", 0.03) and notes
    assert resolve_primary({}, rob.iloc[:0])[0] is None
    assert (
        format_epsilon(EPS) == "4/255" and format_epsilon(0.0157) == "4/255" and format_epsilon(0.5) == "0.5"
    )


def test_html_contents_and_self_contained(built: dict[str, Any]) -> None:
    html = built["html"]
    assert built["path"].name == "report.html"
    assert "unit-test run" in html
    assert "Table 1 — Robustness (Secure Diagnostics Table 1)" in html
    assert "Table 2 — Explanation alignment (Secure Diagnostics Table 2)" in html
    for number in ("83.3", "16.7", "66.7", "100.0", "50.0"):  # clean / pgd accuracies and ΔAcc
        assert f">{number}<" in html or f">{number} <span" in html
    al = pd.read_csv(built["run_dir"] / "tables" / "alignment.csv")
    row = al[(al.model == "standard") & (al.condition == "clean") & (al.explainer == "saliency")]
    value = float(row[row.metric == "point_coverage@15"]["value"].iloc[0])
    assert f">{100 * value:.1f} <span" in html
    # Table 2 with its random-map row; IoU/RMSE (Tables 4–5) and stability (Table 6); no pointing game here
    assert "random map" in html and "Table 4" in html and "Table 5" in html and "Table 6" in html
    assert "Table 3" not in html
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, flags=re.I)
    assert "<link" not in html and "<script" not in html
    srcs = re.findall(r'src="([^"]*)"', html)
    assert len(srcs) == 4 and all(s.startswith("data:image/png;base64,") for s in srcs)  # curve + 3 grids
    assert "&lt;i&gt;only&lt;/i&gt;" in html  # warning shown, escaped
    assert "&lt;b&gt;not bold&lt;/b&gt;" in html  # config escaped
    assert "12.2 s" in html or "12.3 s" in html


def test_figures_are_png(built: dict[str, Any]) -> None:
    for name in ("grid_standard.png", "grid_adversarial.png", "grid_attention.png", "robustness.png"):
        data = (built["run_dir"] / "figures" / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000


def test_malicious_model_name_is_escaped(tmp_path: Path) -> None:
    evil = "<script>alert(1)</script>"
    make_store(tmp_path, rename={"standard": evil})
    html = build_report(tmp_path).read_text(encoding="utf-8")
    assert evil not in html and "<script" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_build_twice_is_deterministic(tmp_path: Path) -> None:
    make_store(tmp_path)
    build_report(tmp_path)
    first = {p: (tmp_path / p).read_bytes() for p in _outputs()}
    build_report(tmp_path)
    for p, data in first.items():
        assert (tmp_path / p).read_bytes() == data, p


def _outputs() -> list[str]:
    return [
        "tables/robustness.csv",
        "tables/alignment.csv",
        "figures/grid_standard.png",
        "figures/robustness.png",
        "report.html",
    ]


def test_summary_is_honest(built: dict[str, Any]) -> None:
    run = load_run(built["run_dir"])
    tables = compute_tables(run)
    text = " ".join(summarize(tables, run))
    assert "'adversarial' is the most robust model" in text
    assert "within sampling noise" in text  # 4/6 vs 3/6 cannot be told apart
    assert "accuracies on 6 test images" in text and "expert points on up to 5 images" in text
    assert "random map" in text and "SSIM" in text
    assert "left out of the means" in built["html"]  # NaN count is in the warnings box
    for sentence in summarize(tables, run):
        assert sentence in built["html"] or sentence.replace("'", "&#39;") in built["html"]


def test_random_baseline_averages_models_per_image(built: dict[str, Any]) -> None:
    tables = compute_tables(load_run(built["run_dir"]))
    raw = built["metrics"]
    rand = raw[(raw.explainer == "random") & (raw.condition == "clean") & (raw.metric == "point_coverage@15")]
    per_image = rand.groupby("sample_id")["value"].mean()
    base = tables.baseline[
        (tables.baseline.condition == "clean") & (tables.baseline.metric == "point_coverage@15")
    ]
    assert float(base["value"].iloc[0]) == pytest.approx(per_image.mean())
    assert int(base["n"].iloc[0]) == 5


def test_empty_store_raises_clear_error(tmp_path: Path) -> None:
    Store(tmp_path).close()
    with pytest.raises(RobustXAIError, match="no predictions"):
        build_report(tmp_path)
    missing = tmp_path / "missing"
    with pytest.raises(RobustXAIError, match="no run store"):
        build_report(missing)
    assert not missing.exists()


def test_clean_only_run_builds(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        store.add_predictions([("m", "clean", 0.0, s, 0, 0, 1) for s in SAMPLES])
    html = build_report(tmp_path).read_text(encoding="utf-8")
    assert ">100.0 <span" in html and "No adversarial attack was evaluated" in html
    df = pd.read_csv(tmp_path / "tables" / "robustness.csv")
    assert list(df.columns) == ROBUSTNESS_COLUMNS and df.empty
    assert not (tmp_path / "figures" / "robustness.png").exists()


def test_summary_warns_about_ties_inflating_the_top_region(tmp_path) -> None:
    from robustxai.report import ReportTables
    from robustxai.report._summary import _tie_sentences

    alignment = pd.DataFrame(
        {
            "model": ["m", "m", "m"],
            "condition": ["clean", "clean", "clean"],
            "epsilon": [0.0, 0.0, 0.0],
            "explainer": ["gradcam", "saliency", "random"],
            "metric": ["mask_area@15"] * 3,
            "value": [0.9, 0.15, 0.95],
            "n": [5, 5, 5],
        }
    )
    tables = ReportTables.__new__(ReportTables)
    tables.alignment = alignment
    sentences = _tie_sentences(tables)
    assert len(sentences) == 1 and "m/gradcam" in sentences[0] and "90.0 %" in sentences[0]
    tables.alignment = alignment.assign(value=[0.15, 0.15, 0.95])
    assert _tie_sentences(tables) == []


def test_undefined_note_names_the_pairs_and_their_causes() -> None:
    from robustxai.report._undefined import undefined_note

    rows = [
        ("lime", "map_pearson", 30),
        ("lime", "relevance_mass", 12),
        ("saliency", "point_coverage@15", 2),
        ("saliency", "point_coverage@5", 2),
        ("gradcam", "topk_iou@15", 1),
        ("ig", "rmse@15", 1),
        ("ig", "pointing_game", 0),
    ]
    frame = pd.DataFrame(rows, columns=["explainer", "metric", "n_missing"])
    note = undefined_note(frame)
    assert note is not None and note.startswith("48 per-image metric values were undefined")
    assert (
        "lime / pearson 30 (a constant clean or attacked map); lime / relevance_mass 12 (no expert mask, or "
        "a map without positive attribution); saliency / point_coverage 4 (no expert point); gradcam / "
        "topk_iou 1 (no expert mask); 1 more in 1 other pair." in note
    )
    assert undefined_note(frame.assign(n_missing=0)) is None


def test_random_gaps_are_paired_differences_with_the_per_image_baseline() -> None:
    from robustxai.report._gaps import random_gaps

    rng = np.random.default_rng(0)
    ids = [f"s{i}" for i in range(12)]
    rows = []
    for model, shift in (("a", 0.5), ("b", 0.2)):
        for sid in ids:
            value = shift + rng.random() * 0.1
            rows.append((model, "clean", 0.0, "saliency", "point_coverage@15", sid, value))
            rows.append((model, "clean", 0.0, "random", "point_coverage@15", sid, rng.random() * 0.3))
            rows.append((model, "clean", 0.0, "saliency", "topk_iou@15", sid, 0.9))  # another metric: ignored
    cols = ["model", "condition", "epsilon", "explainer", "metric", "sample_id", "value"]
    frame = pd.DataFrame(rows, columns=cols)
    undefined = (frame["model"] == "a") & (frame["sample_id"] == "s3") & (frame["explainer"] == "saliency")
    frame.loc[undefined, "value"] = np.nan
    gaps = random_gaps(frame, "point_coverage@15", "random")
    assert list(gaps["model"]) == ["a", "b"] and set(gaps["explainer"]) == {"saliency"}
    cov = frame[frame["metric"] == "point_coverage@15"]
    base = cov[cov["explainer"] == "random"].groupby("sample_id")["value"].mean()  # averaged over models
    for model in ("a", "b"):
        mine = cov[(cov["model"] == model) & (cov["explainer"] == "saliency")].set_index("sample_id")["value"]
        diff = (mine - base.loc[mine.index]).dropna().to_numpy()
        row = gaps[gaps["model"] == model].iloc[0]
        assert row["n"] == (11 if model == "a" else 12)
        expected = bootstrap_ci(diff, n_boot=1000, level=0.95, seed=0)
        assert (row["gap"], row["ci_low"], row["ci_high"]) == pytest.approx(expected, abs=1e-12)
        assert row["gap"] == pytest.approx(float(np.mean(diff)), abs=1e-12)
    assert random_gaps(frame[frame["explainer"] != "random"], "point_coverage@15", "random").empty


def test_random_map_verdict_comes_from_the_paired_difference() -> None:
    """Overlapping intervals but a paired difference that excludes 0: the map is above chance, and the summary
    does not call it indistinguishable in one sentence while giving a positive interval in the next."""
    from robustxai.report import ReportTables
    from robustxai.report._gaps import GAP_COLUMNS
    from robustxai.report._summary import _versus_random

    row = pd.Series({"model": "m", "condition": "clean", "epsilon": 0.0, "explainer": "saliency",
                     "value": 0.30, "ci_low": 0.20, "ci_high": 0.40})  # fmt: skip
    base = pd.Series({"value": 0.25, "ci_low": 0.15, "ci_high": 0.35})
    empty = pd.DataFrame()
    tables = ReportTables(empty, empty, empty, empty, None, ["m"], 10, 0)
    assert _versus_random(tables, row, base) == "level"  # no pairs: the intervals overlap
    gap = pd.DataFrame([("m", "clean", 0.0, "saliency", "point_coverage@15", 0.05, 0.01, 0.09, 10)],
                       columns=GAP_COLUMNS)  # fmt: skip
    tables.random_gaps = gap
    assert _versus_random(tables, row, base) == "above"
    tables.random_gaps = gap.assign(ci_low=-0.01)
    assert _versus_random(tables, row, base) == "level"
    tables.random_gaps = gap.assign(gap=-0.05, ci_low=-0.09, ci_high=-0.01)
    assert _versus_random(tables, row, base) == "below"
