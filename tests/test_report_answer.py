"""The short answer for a clinical reviewer: planted runs whose right answer is known.

A robust model and a plain one on 100 balanced images; the robust model's saliency maps cover the expert
points far above a random map on clean images. Variants plant what must change the wording: the maps fall to
the random map's level under attack, the lead is within sampling noise, a model is at chance, no attack ran.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from robustxai.report._answer import reviewer_answer
from robustxai.report._run_tables import report_tables
from robustxai.results import Store, load_run

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = "tests internals of robustxai.report._answer, robustxai.report._run_tables"

EPS = 4 / 255
N = 100


def _store(
    run_dir: Path,
    accuracy: dict[str, dict[str, float]],
    coverage: dict[str, float],
    seed: int = 0,
) -> dict[str, str]:
    """Write a run: per model × condition the share correct, per condition saliency's point coverage.

    Labels alternate 0/1 (so chance is 50 %); the random map covers 5–25 % of each image's points, the same on
    every model, and saliency that plus ``coverage − 0.15`` ± 0.01 (so its paired gap is exact).
    """
    rng = np.random.default_rng(seed)
    with Store(run_dir) as store:
        store.set_meta("run_name", "planted")
        store.set_meta("primary_attack", {"attack": "pgd", "epsilon": EPS})
        store.set_meta("dataset", {"class_names": ["normal", "fracture"]})
        for model, conds in accuracy.items():
            store.add_model(model, "smallcnn", "standard", {})
            for cond, acc in conds.items():
                eps = 0.0 if cond == "clean" else EPS
                right = rng.permutation(N) < round(acc * N)
                store.add_predictions(
                    (model, cond, eps, f"s{i}", i % 2, i % 2 if ok else 1 - i % 2, int(ok))
                    for i, ok in enumerate(right)
                )
                if cond not in coverage:
                    continue
                rows = []
                for i in range(N):
                    base = 0.15 + 0.1 * np.sin(i)  # the random map's coverage of image i, for every model
                    value = coverage[cond] - 0.15 + base + (0.01 if i % 2 else -0.01)  # paired gap: exact
                    rows += [
                        (model, cond, eps, "saliency", "point_coverage@15", f"s{i}", float(value)),
                        (model, cond, eps, "random", "point_coverage@15", f"s{i}", float(base)),
                    ]
                    if cond != "clean":
                        rows.append((model, cond, eps, "saliency", "map_ssim", f"s{i}", 0.4))
                store.add_metrics(rows)
    run = load_run(run_dir)
    return {line.label: line.text for line in reviewer_answer(report_tables(run), run)}


ROBUST = {"clean": 0.95, "pgd": 0.85}
PLAIN = {"clean": 0.95, "pgd": 0.20}


def test_a_clear_case_names_the_model_and_method_and_says_the_maps_hold(tmp_path: Path) -> None:
    answer = _store(tmp_path, {"robust": ROBUST, "plain": PLAIN}, {"clean": 0.8, "pgd": 0.8})
    assert list(answer) == ["Model", "Map method", "Under attack", "Manipulation", "How far to trust it"]
    assert answer["Model"].startswith("'robust', the most robust under pgd ε=4/255: 85.0 % accuracy")
    assert "n = 100 images" in answer["Model"] and "sampling noise" not in answer["Model"]
    assert answer["Map method"].startswith("saliency, the best of 1 on clean images")
    assert "clearly above a random map" in answer["Map method"]
    assert "its maps stay above a random map" in answer["Under attack"]
    assert "SSIM with the clean map is 0.40" in answer["Under attack"]
    assert answer["Manipulation"] == "Not tested: the run has no manipulation stage."
    assert answer["How far to trust it"].startswith("With care: its maps beat a random map on clean images.")
    assert "thin" not in answer["How far to trust it"]


def test_maps_at_chance_under_attack_restrict_the_trust(tmp_path: Path) -> None:
    answer = _store(tmp_path, {"robust": ROBUST, "plain": PLAIN}, {"clean": 0.8, "pgd": 0.15})
    assert "fall to the level of a random map" in answer["Under attack"]
    assert answer["How far to trust it"].startswith("Only on images known not to be tampered with")
    assert "under attack they drop to chance" in answer["How far to trust it"]


def test_a_lead_within_noise_and_a_map_at_chance_are_said_so(tmp_path: Path) -> None:
    close = {"clean": 0.95, "pgd": 0.80}
    answer = _store(tmp_path, {"robust": ROBUST, "close": close}, {"clean": 0.15, "pgd": 0.15})
    assert "its lead over 'close' is within sampling noise" in answer["Model"]
    assert "not distinguishable from a random map" in answer["Map method"]
    assert answer["How far to trust it"].startswith("Not for locating findings")


def test_a_model_at_chance_is_not_recommended(tmp_path: Path) -> None:
    guess = {"clean": 0.5, "pgd": 0.5}
    answer = _store(tmp_path, {"guess": guess, "plain": {"clean": 0.95, "pgd": 0.1}}, {"clean": 0.8})
    assert answer["Model"].startswith("'guess', the most robust")
    assert "no better than always answering the most common class" in answer["Model"]
    assert "at chance level on clean images" in answer["Model"]
    assert answer["How far to trust it"].startswith("Not at all: the model has not learned the task.")


def test_without_an_attack_robustness_is_unknown(tmp_path: Path) -> None:
    answer = _store(tmp_path, {"only": {"clean": 0.9}}, {"clean": 0.8})
    assert "no attack was run" in answer["Model"] and "90.0 %" in answer["Model"]
    assert answer["Under attack"] == "Not tested: the run has no attack."
    assert answer["How far to trust it"].startswith("Unknown under attack: no attack was run.")


def test_few_images_make_the_evidence_thin(tmp_path: Path) -> None:
    from test_report import make_store

    make_store(tmp_path)  # 6 images, one without expert points: alignment rests on 5
    run = load_run(tmp_path)
    lines = reviewer_answer(report_tables(run), run)
    assert len(lines) == 5 and "The evidence is thin (as few as 5 images behind a figure)" in lines[-1].text
