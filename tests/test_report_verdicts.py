"""What the report must tell a newcomer: chance-level models and maps, manipulation, n, numbers, no paths.

Each test plants the case in a small store (or table) and checks the report says it, in the summary, the
warning box at the top, the tables or the figures.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from robustxai.report import build_report, compute_tables, load_run
from robustxai.report._gaps import GAP_COLUMNS
from robustxai.report._manipulation import table1
from robustxai.report._numbers import fmt_number
from robustxai.report._summary import summary_sections
from robustxai.report._tables import ReportTables, select_condition
from robustxai.report._verdicts import (
    attack_chance_sentences,
    chance_levels,
    chance_warnings,
    manipulation_outcome,
    manipulation_sentences,
)
from robustxai.results import Store
from test_report import EPS, make_store

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = (
    "tests internals of robustxai.report._figures, robustxai.report._gaps, "
    "robustxai.report._html_explain, robustxai.report._manipulation, robustxai.report._numbers, "
    "robustxai.report._summary, robustxai.report._tables, robustxai.report._verdicts"
)


def _png_width(path: Path) -> int:
    return int(struct.unpack(">I", path.read_bytes()[16:20])[0])


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    run_dir = tmp_path_factory.mktemp("verdicts")
    make_store(run_dir)
    with Store(run_dir) as store:  # a data set recorded with a local cache path, as the runner does
        store.set_meta(
            "dataset",
            {"name": "synthetic-fracture", "path": "/root/.cache/robustxai/data/synthetic-fracture-5a7c",
             "class_names": ["normal", "fracture"], "task": "multiclass", "channels": 1, "size": 32,
             "n_train": 240, "n_test": 6},
        )  # fmt: skip
    html = build_report(run_dir).read_text(encoding="utf-8")
    return {"run_dir": run_dir, "html": html}


def test_summary_names_every_map_at_chance_under_the_primary_attack(built: dict[str, Any]) -> None:
    run = load_run(built["run_dir"])
    tables = compute_tables(run)
    gaps = select_condition(tables.random_gaps, tables.primary)
    level = gaps[gaps["ci_low"] <= 0]
    assert not level.empty  # random maps: some pairs are at chance under pgd
    sections = {s.title: s.sentences for s in summary_sections(tables, run)}
    attacked = " ".join(sections["Explanations under attack (pgd ε=4/255)"])
    assert "Do not show these maps on possibly perturbed images" in attacked
    for r in level.itertuples():
        named = (
            f"'{r.model}' {r.explainer} {fmt_number(r.gap, 1, 100.0, sign=True)} points (95 % CI "
            f"{fmt_number(r.ci_low, 1, 100.0)} to {fmt_number(r.ci_high, 1, 100.0)}, n = {r.n}"
        )
        assert named in attacked
    # clean and attacked statements are in separate groups
    assert all("pgd" not in s for s in sections["Explanations on clean images"])


def test_a_planted_map_that_falls_to_chance_under_attack_is_named_with_its_interval() -> None:
    rows = [
        ("standard", "clean", 0.0, "gradcam", "point_coverage@15", 0.35, 0.25, 0.45, 40),
        ("standard", "pgd", EPS, "gradcam", "point_coverage@15", -0.013, -0.110, 0.091, 40),
        ("standard", "pgd", EPS, "saliency", "point_coverage@15", 0.20, 0.10, 0.30, 40),
    ]
    empty = pd.DataFrame()
    tables = ReportTables(empty, empty, empty, empty, ("pgd", EPS), ["standard"], 40, 0)
    tables.random_gaps = pd.DataFrame(rows, columns=GAP_COLUMNS)
    (sentence,) = attack_chance_sentences(tables)
    assert "1 of 2 model × method maps fall to the random map's level or below" in sentence
    assert (
        "'standard' gradcam -1.3 points (95 % CI -11.0 to 9.1, n = 40; above it on clean images, "
        "+35.0 points)" in sentence
    )
    assert "saliency" not in sentence
    tables.random_gaps = tables.random_gaps.iloc[[0, 2]]
    (sentence,) = attack_chance_sentences(tables)
    assert sentence.startswith("Under pgd ε=4/255 (the primary attack), every model × method map stays above")


def _chance_store(run_dir: Path) -> None:
    """'guess' answers 'fracture' always (50 % on balanced labels); 'good' gets 19 of 20 right."""
    ids = [f"s{i:02d}" for i in range(20)]
    labels = [i % 2 for i in range(20)]
    with Store(run_dir) as store:
        store.set_meta("dataset", {"name": "toy", "class_names": ["normal", "fracture"]})
        store.add_predictions(
            ("guess", "clean", 0.0, s, y, 1, int(y == 1)) for s, y in zip(ids, labels, strict=True)
        )
        store.add_predictions(
            ("good", "clean", 0.0, s, y, y if i else 1 - y, int(i > 0))
            for i, (s, y) in enumerate(zip(ids, labels, strict=True))
        )


def test_a_model_at_chance_accuracy_is_flagged_at_the_top(tmp_path: Path) -> None:
    _chance_store(tmp_path)
    run = load_run(tmp_path)
    levels = {c.model: c for c in chance_levels(run.predictions, ["normal", "fracture"])}
    assert levels["guess"].chance == pytest.approx(0.5) and levels["guess"].at_chance
    assert levels["good"].accuracy == pytest.approx(0.95) and not levels["good"].at_chance
    (warning,) = chance_warnings(list(levels.values()))
    assert (
        "'guess' is at chance level" in warning and "50.0 % accuracy (95 % CI 29.9–70.1 %, n = 20" in warning
    )
    assert "'normal', 50.0 %" in warning and "1/K = 50.0 %" in warning
    html = build_report(tmp_path).read_text(encoding="utf-8")
    alert = html.index('id="chance"')
    assert alert < html.index("<h2>Summary</h2>")
    assert "Model &#39;guess&#39; is at chance level" in html and "&#39;good&#39; is at chance" not in html


def test_chance_is_the_majority_label_rate_not_one_over_k(tmp_path: Path) -> None:
    preds = pd.DataFrame(
        {"model": "m", "condition": "clean", "label": [0] * 18 + [1] * 2, "correct": [1] * 18 + [0] * 2}
    )
    (level,) = chance_levels(preds, ["normal", "fracture"])
    assert level.chance == pytest.approx(0.9) and level.accuracy == pytest.approx(0.9) and level.at_chance


def test_no_negative_zero_anywhere(tmp_path: Path) -> None:
    assert fmt_number(-0.0004, 2) == "0.00" and fmt_number(-0.004, 1, 100.0) == "-0.4"
    assert fmt_number(-0.00001, 1, sign=True) == "0.0" and fmt_number(float("nan")) == "—"
    make_store(tmp_path)
    with Store(tmp_path) as store:  # a stability metric whose mean and interval round to -0.00
        store.add_metrics(
            ("standard", "pgd", EPS, "saliency", "map_ssim", f"s{i}", -0.001 - 0.0001 * i) for i in range(6)
        )
    html = build_report(tmp_path).read_text(encoding="utf-8")
    assert not re.search(r"-0\.0+(?!\d*[1-9])\b", html)


def test_header_describes_the_data_set_without_a_path(built: dict[str, Any]) -> None:
    html = built["html"]
    meta = re.search(r'<p class="meta">(.*?)</p>', html, flags=re.S)
    assert meta is not None
    assert "synthetic-fracture: multiclass, 2 classes (normal, fracture), grey 32 × 32 px" in meta.group(1)
    assert "240 training / 6 test images" in meta.group(1)
    assert "/root/.cache" not in html and "path =" not in html


def test_table_1_shows_intervals_n_and_aligned_columns(built: dict[str, Any]) -> None:
    section = built["html"].split('<section id="robustness">')[1].split("</section>")[0]
    assert '<th class="num">n images</th>' in section
    # 'standard': 5 of 6 right on clean images, Wilson 95 % interval 43.6–97.0 %
    row = re.search(r'<tr><td class="text">standard</td>(.*?)</tr>', section)
    assert row is not None
    assert '<td class="num">6</td>' in row.group(1)
    assert '83.3 <span class="ci">[43.6–97.0]</span>' in row.group(1)


def test_table_7_is_one_row_per_explainer_and_says_why_it_cannot_be_significant(tmp_path: Path) -> None:
    from test_report_explain import _write_store

    _write_store(tmp_path)
    with Store(tmp_path) as store:  # keep three models: the smallest attainable p is 2/3! = 1/3
        store._conn.execute("DELETE FROM predictions WHERE model = 'm4'")
        store._conn.execute("DELETE FROM metrics WHERE model = 'm4'")
        store._conn.execute("DELETE FROM models WHERE model = 'm4'")
        store._conn.commit()
    html = build_report(tmp_path).read_text(encoding="utf-8")
    section = html.split('<section id="correlation">')[1].split("</section>")[0]
    body = section.split("<tbody>")[1].split("</tbody>")[0]
    assert body.count("<tr>") == 1  # one explainer (saliency), not explainer × figure × metric rows
    assert "smallest attainable two-sided permutation p is 2/3! = 0.33" in section
    assert "no ρ here can be significant at 0.05" in section


def _manip_metrics() -> pd.DataFrame:
    rows = []
    for method, fails in (("gradcam", [0, 0, 1, 0]), ("saliency", [1, 1, 1, 1])):
        for i, f in enumerate(fails):
            rows.append(("standard", f"manipulate:{method}", 0.0, method, "unsuccessful", f"s{i}", float(f)))
            rows.append(("standard", f"manipulate:{method}", 0.0, method, "target_ssim", f"s{i}", 0.7 - f))
            peak = float(i == 0 and method == "gradcam")
            rows.append(("standard", f"manipulate:{method}", 0.0, method, "peak_in_target", f"s{i}", peak))
    rows.append(("standard", "manipulate:gradcam", 0.0, "saliency", "unsuccessful", "s0", 1.0))  # transfer
    cols = ["model", "condition", "epsilon", "explainer", "metric", "sample_id", "value"]
    return pd.DataFrame(rows, columns=cols)


def test_manipulation_outcome_gives_success_counts_with_n() -> None:
    outcome = manipulation_outcome(_manip_metrics())
    assert list(outcome["successes"]) == [3, 0] and list(outcome["n"]) == [4, 4]  # transfer row left out
    (sentence,) = manipulation_sentences(outcome)
    assert "succeeded on 3 of 8 attempts" in sentence
    assert (
        "gradcam: 'standard' 3 of 4 (unsuccessful ratio 25.0 %; map peak inside the target on 1 of 4)"
        in sentence
    )
    assert (
        "saliency: 'standard' 0 of 4 (unsuccessful ratio 100.0 %; map peak inside the target on 0 of 4)"
        in sentence
    )


def test_manipulation_table_has_no_auc_row_without_auc() -> None:
    table = pd.DataFrame(
        [{"model": "m", "method": "gradcam", "attacked_via": "gradcam", "target_ssim": 0.7,
          "image_ssim": 0.99, "unsuccessful_ratio": 0.25, "prediction_unchanged": 1.0,
          "peak_in_target": 0.5, "n": 4}]
    )  # fmt: skip
    no_auc = pd.DataFrame(columns=["model", "attacked_via", "auc_clean", "auc_attacked", "auc_change_pct"])
    rows = table1(table, no_auc, "m")["rows"]
    assert [r[0] for r in rows][0] == "prediction unchanged (%)" and ["images (n)", "4"] in rows
    assert not any(r[0].startswith("AUC") for r in rows)
    nan_auc = pd.DataFrame([("m", "gradcam", np.nan, np.nan, np.nan)], columns=no_auc.columns)
    assert not any(r[0].startswith("AUC") for r in table1(table, nan_auc, "m")["rows"])
    auc = pd.DataFrame([("m", "gradcam", 0.9, 0.45, -50.0)], columns=no_auc.columns)
    assert table1(table, auc, "m")["rows"][0] == ["AUC (change %)", "0.450 (-50.0 %)"]


def test_explanation_grids_are_per_model_at_page_width(built: dict[str, Any]) -> None:
    figs = built["run_dir"] / "figures"
    grids = sorted(p.name for p in figs.glob("grid_*.png"))
    assert grids == ["grid_adversarial.png", "grid_attention.png", "grid_standard.png"]
    assert not (figs / "grid.png").exists()
    # drawn at the page's content width (1180 px less padding), so the page shows it unscaled
    assert all(_png_width(figs / g) <= 1150 for g in grids)
    assert built["html"].count('<figure class="grid">') == 3


def test_grid_rows_carry_the_prediction_and_whether_it_is_right(monkeypatch: pytest.MonkeyPatch) -> None:
    from robustxai.report import _figures as figures

    seen: dict[str, Any] = {}

    def fake_tile_grid(rows: Any, **kw: Any) -> Any:
        seen.update(kw)
        return figures.Figure()

    monkeypatch.setattr(figures, "tile_grid", fake_tile_grid)
    monkeypatch.setattr(figures, "save_png", lambda fig, path: path)
    image = np.zeros((1, 8, 8), dtype=np.float32)
    samples = {"a/s0.png": {"image": image, "mask": None, "points": np.zeros((0, 2))}}
    maps = pd.DataFrame(
        [("m", c, e, "saliency", "a/s0.png", np.ones((8, 8))) for c, e in (("clean", 0.0), ("pgd", EPS))],
        columns=["model", "condition", "epsilon", "explainer", "sample_id", "map"],
    )
    preds = pd.DataFrame(
        [("m", "clean", 0.0, "a/s0.png", 1, 1, 1), ("m", "pgd", EPS, "a/s0.png", 1, 0, 0)],
        columns=["model", "condition", "epsilon", "sample_id", "label", "pred", "correct"],
    )
    out = figures.grid_figures(
        samples, maps, ("pgd", EPS), Path("/nonexistent"), preds, ["normal", "fracture"]
    )
    assert list(out) == ["m"]
    assert seen["row_labels"] == [
        "s0\ntrue: fracture\nclean\n→ fracture (correct)",
        "pgd ε=4/255\n→ normal (wrong)",
    ]
    assert seen["colorbar"] is not None and seen["font_size"] >= 10


def test_robustness_legend_does_not_cover_the_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from robustxai.report import _figures as figures

    captured: list[Any] = []
    monkeypatch.setattr(figures, "save_png", lambda fig, path: captured.append(fig) or path)
    rob = pd.DataFrame(
        {"model": ["a", "b"], "attack": "pgd", "epsilon": EPS, "adversarial_accuracy": [0.9, 0.1], "n": 10}
    )
    clean = pd.DataFrame({"model": ["a", "b"], "accuracy": [0.95, 0.9], "n": 10})
    figures.robustness_figure(rob, clean, tmp_path / "r.png")
    (fig,) = captured
    figures.FigureCanvasAgg(fig)
    renderer = fig.canvas.get_renderer()
    (ax,) = fig.axes
    legend = ax.get_legend().get_window_extent(renderer)
    assert legend.x0 >= ax.get_window_extent(renderer).x1  # right of the axes, not on the lines


def test_a_model_below_chance_is_said_to_be_below_it() -> None:
    preds = pd.DataFrame(
        {"model": "m", "condition": "clean", "label": [0] * 30 + [1] * 10, "correct": [0] * 30 + [1] * 10}
    )
    (warning,) = chance_warnings(chance_levels(preds, None))
    assert "25.0 % accuracy" in warning and "lies below that level" in warning and "('0', 75.0 %" in warning


def test_table_7_without_any_defined_rho_is_one_line_not_a_grid_of_dashes() -> None:
    from robustxai.report._html_explain import correlation_html

    frame = pd.DataFrame(
        [(f, e, "point_coverage@15", np.nan, np.nan, 2, 10000)
         for f in ("adversarial_accuracy", "delta_accuracy") for e in ("saliency", "gradcam")],
        columns=["robustness_figure", "explainer", "alignment_metric", "rho", "p_value", "n_models",
                 "n_permutations"],
    )  # fmt: skip
    empty = pd.DataFrame()
    tables = ReportTables(empty, empty, empty, empty, None, ["a", "b"], 6, 0)
    tables.correlation = frame
    table = correlation_html(tables)
    assert table is not None and len(table.rows) == 1
    assert [c.text for c in table.rows[0]] == [
        "gradcam, saliency",
        "2",
        "Spearman's ρ needs at least 3 models",
    ]


def test_many_explainers_are_split_over_figures_that_fit_the_page(tmp_path: Path) -> None:
    from robustxai.report import _figures as figures

    rng = np.random.default_rng(0)
    samples = {"s0": {"image": rng.random((1, 16, 16)), "mask": None, "points": np.zeros((0, 2))}}
    names = [f"method_{i}" for i in range(8)]
    maps = pd.DataFrame(
        [("m", "clean", 0.0, e, "s0", rng.random((16, 16))) for e in names],
        columns=["model", "condition", "epsilon", "explainer", "sample_id", "map"],
    )
    out = figures.grid_figures(samples, maps, None, tmp_path)
    assert list(out) == ["m (1/2)", "m (2/2)"]
    assert [p.name for p in out.values()] == ["grid_m.png", "grid_m_2.png"]
    assert all(_png_width(p) <= 1150 for p in out.values())


def test_a_test_set_of_one_class_gets_one_warning_for_the_run() -> None:
    preds = pd.DataFrame(
        {"model": ["a"] * 6 + ["b"] * 6, "condition": "clean", "label": 1, "correct": [1] * 6 + [1, 0] * 3}
    )
    (warning,) = chance_warnings(chance_levels(preds, ["normal", "fracture"]))
    assert warning.startswith("All 6 test images carry the same label ('fracture')")
