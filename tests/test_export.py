"""Export and rx.open_run: the store's rows and the report's tables round-trip through Parquet and CSV."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import robustxai as rx
from robustxai import RobustXAIError
from robustxai._export import export_run, open_run
from robustxai.audit import load_config
from robustxai.cli import app
from robustxai.results import Store

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = (
    "tests internals of robustxai._export, robustxai._pipeline, robustxai.audit._config, "
    "robustxai.audit._progress"
)

IDS = ["s0", "s1", "s2", "s3"]
CORRECT = {("m1", "clean"): [1, 1, 1, 0], ("m1", "pgd"): [1, 0, 0, 0], ("m2", "clean"): [1, 1, 0, 0]}
CORRECT[("m2", "pgd")] = [0, 0, 0, 0]


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A small store written through the Store API, as the audit writes it."""
    out = tmp_path / "run"
    rng = np.random.default_rng(0)
    with Store(out / "results.sqlite") as store:
        store.set_meta("config", load_config(profile="smoke").model_dump())
        store.set_meta("primary_attack", {"attack": "pgd", "epsilon": 4 / 255})
        store.add_samples((sid, i, i % 2, 1, 1) for i, sid in enumerate(IDS))
        for m in ("m1", "m2"):
            store.add_model(m, "smallcnn", "standard", {"source": "trained"})
        for (m, cond), correct in CORRECT.items():
            eps = 0.0 if cond == "clean" else 4 / 255
            preds = [
                (m, cond, eps, sid, i % 2, i % 2 if c else 1 - i % 2, c)
                for i, (sid, c) in enumerate(zip(IDS, correct, strict=True))
            ]
            metrics = [
                (m, cond, eps, "saliency", "point_coverage@15", sid, float(rng.random())) for sid in IDS
            ]
            metrics[1] = (*metrics[1][:6], float("nan"))  # an undefined value stays NaN
            store.write_unit(f"{m}/{cond}", {"predictions": preds, "metrics": metrics})
        store.add_warnings([("m1", "masking", "PGD accuracy exceeds APGD's")])
    return out


def test_open_run_exposes_rows_tables_and_config(run_dir: Path) -> None:
    run = rx.open_run(run_dir)
    assert len(run.predictions) == 16 and len(run.metrics) == 16 and len(run.units) == 4
    assert run.config.name == "smoke" and run.meta["primary_attack"]["attack"] == "pgd"
    assert run.warnings["code"].tolist() == ["masking"]
    rob = run.tables["robustness"].set_index("model")
    for m in ("m1", "m2"):  # independent reference: the mean of the stored 0/1 column, by hand
        assert rob.loc[m, "adversarial_accuracy"] == pytest.approx(np.mean(CORRECT[(m, "pgd")]))
        assert rob.loc[m, "clean_accuracy"] == pytest.approx(np.mean(CORRECT[(m, "clean")]))
    ali = run.tables["alignment"]
    row = ali[(ali["model"] == "m1") & (ali["condition"] == "clean")].iloc[0]
    values = run.metrics[(run.metrics["model"] == "m1") & (run.metrics["condition"] == "clean")]["value"]
    assert row["value"] == pytest.approx(np.nanmean(values)) and row["n"] == 3
    assert "stability" not in run.tables  # no clean-vs-attacked map rows: no stability table, like tables/
    assert set(run.tables) == {"robustness", "alignment", "correlation", "claims", "clean"}


def test_run_repr_is_a_short_summary(run_dir: Path) -> None:
    text = repr(rx.open_run(run_dir))
    assert "\n" not in text and len(text) < 400, text
    assert text.startswith(f"Run({str(run_dir)!r}, models=[m1, m2], samples=4, predictions=16, metrics=16")
    assert "robustness 2×7" in text and "alignment 4×9" in text
    with Store(run_dir.parent / "empty" / "results.sqlite") as store:
        store.set_meta("config", {})
    assert repr(rx.open_run(run_dir.parent / "empty")).endswith("tables: none (no predictions yet))")
    assert open_run(run_dir / "results.sqlite").path == run_dir


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_export_round_trip(run_dir: Path, tmp_path: Path, fmt: str) -> None:
    paths = export_run(run_dir, format=fmt, out=tmp_path / "exp")
    run = open_run(run_dir)
    read = pd.read_parquet if fmt == "parquet" else pd.read_csv
    for name in ("predictions", "metrics", "samples", "units"):
        assert paths[name].suffix == f".{fmt}"
        back = read(paths[name])
        pd.testing.assert_frame_equal(back, getattr(run, name), check_dtype=fmt == "parquet", obj=name)
    pd.testing.assert_frame_equal(
        read(paths["table_robustness"]), run.tables["robustness"], check_dtype=False
    )
    assert read(paths["warnings"])["message"].tolist() == ["PGD accuracy exceeds APGD's"]


def test_export_cli(run_dir: Path) -> None:
    result = CliRunner().invoke(app, ["export", str(run_dir), "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert (run_dir / "export" / "predictions.csv").is_file()
    assert str(run_dir / "export" / "table_alignment.csv") in result.output
    bad = CliRunner().invoke(app, ["export", str(run_dir), "--format", "xlsx"])
    assert bad.exit_code == 2 and "unknown export format 'xlsx'; known formats: parquet, csv" in bad.output


def test_export_errors(run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(RobustXAIError, match="no run store at"):
        export_run(tmp_path / "nothing", format="csv")
    with pytest.raises(RobustXAIError, match="no run store at"):
        rx.open_run(tmp_path)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(
        RobustXAIError, match=r"Parquet export needs pyarrow: pip install 'robustxai\[export\]'"
    ):
        export_run(run_dir, format="parquet")
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "results.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(RobustXAIError, match="cannot read the run store"):
        open_run(corrupt)


@pytest.fixture(scope="module")
def audited_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny real audit (two untrained models, one attack, manipulation on): every table kind is written."""
    from robustxai._pipeline import run_audit
    from robustxai.audit._config import profile_dict, validate_config
    from robustxai.audit._progress import LogProgress

    tmp = tmp_path_factory.mktemp("audited")
    raw = profile_dict("smoke")
    raw.update(name="export-tiny", cache_dir=str(tmp / "cache"), batch_size=16)
    raw["data"].update(n_train=16, n_test=8, write_to_disk=False)
    widths = {"widths": [4, 8, 8, 8]}
    raw["models"] = [
        {"name": "plain", "arch": "smallcnn", "training": "none", "arch_kwargs": widths},
        {"name": "attn", "arch": "smallcnn-attention", "training": "none", "arch_kwargs": widths},
    ]
    raw["attacks"] = [{"name": "pgd", "epsilons": [4 / 255], "params": {"steps": 2, "step_size": 2 / 255}}]
    raw["explain"].update(methods=["saliency", "gradcam"], attacks=["pgd"], n_images=4)
    raw["report"].update(primary_attack="pgd", primary_epsilon=4 / 255)
    raw["manipulation"].update(methods=["saliency"], transfer_from=[], n_images=2, iterations=2, batch_size=2)
    run_audit(validate_config(raw), tmp / "run", progress=LogProgress())
    return tmp / "run"


@pytest.mark.slow
def test_every_run_table_round_trips_through_export_and_open_run(audited_run: Path, tmp_path: Path) -> None:
    csvs = sorted((audited_run / "tables").glob("*.csv"))
    names = [p.stem for p in csvs]
    assert {"robustness", "alignment", "stability", "correlation", "manipulation"} <= set(names)
    exported = {fmt: export_run(audited_run, format=fmt, out=tmp_path / fmt) for fmt in ("csv", "parquet")}
    run = open_run(audited_run)
    for path in csvs:
        written = pd.read_csv(path)
        assert len(written) > 0, path.name
        others = {
            "export csv": pd.read_csv(exported["csv"][f"table_{path.stem}"]),
            "export parquet": pd.read_parquet(exported["parquet"][f"table_{path.stem}"]),
            "open_run": run.tables[path.stem],
        }
        for where, frame in others.items():
            # CSV writes an empty string and a missing value alike (claims.csv's whole-run ``scope`` is "")
            frame = frame.replace("", np.nan) if where != "export csv" else frame
            pd.testing.assert_frame_equal(
                frame.reset_index(drop=True), written, check_dtype=False, obj=f"{path.name} vs {where}"
            )
