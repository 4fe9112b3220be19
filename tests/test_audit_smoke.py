"""End to end: the smoke profile through the CLI writes every artifact; bad input gives one-line errors."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from robustxai.cli import app

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = "tests internals of robustxai._pipeline, robustxai.audit._runner"

runner = CliRunner()
ROBUSTNESS_COLUMNS = [
    "model",
    "attack",
    "epsilon",
    "clean_accuracy",
    "adversarial_accuracy",
    "delta_accuracy",
    "n",
]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("smoke") / "run"
    result = runner.invoke(app, ["audit", "--profile", "smoke", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.slow
def test_smoke_audit_writes_all_artifacts(smoke_run: Path) -> None:
    for rel in [
        "report.html",
        "results.sqlite",
        "config.toml",
        "tables/robustness.csv",
        "tables/alignment.csv",
        "figures/grid_standard.png",
        "figures/robustness.png",
    ]:
        assert (smoke_run / rel).is_file(), rel
    rob = pd.read_csv(smoke_run / "tables" / "robustness.csv")
    assert list(rob.columns) == ROBUSTNESS_COLUMNS
    assert set(rob["model"]) == {"standard", "adversarial", "attention"}
    assert set(rob["attack"]) == {"fgsm", "pgd", "bim", "apgd"}
    assert ((rob["adversarial_accuracy"] >= 0) & (rob["adversarial_accuracy"] <= 1)).all()
    ali = pd.read_csv(smoke_run / "tables" / "alignment.csv")
    assert list(ali.columns)[:7] == ["model", "condition", "epsilon", "explainer", "metric", "value", "n"]
    assert {"clean", "pgd", "fgsm"} <= set(ali["condition"])
    assert {"saliency", "integrated_gradients", "gradcam", "random"} <= set(ali["explainer"])
    assert {
        "point_coverage@5",
        "point_coverage@15",
        "point_coverage@25",
        "point_coverage@85",
        "topk_iou@15",
        "rmse@15",
    } <= set(ali["metric"])
    # Map stability (clean vs attacked map) is reported next to alignment or in its own table.
    stab = smoke_run / "tables" / "stability.csv"
    stability_metrics = set(pd.read_csv(stab)["metric"]) if stab.is_file() else set(ali["metric"])
    assert "map_ssim" in stability_metrics
    html = (smoke_run / "report.html").read_text()
    assert "Table 1" in html and "Table 2" in html and "data:image/png;base64" in html
    assert "initialised from standard" in html and "robust validation accuracy" in html
    # the summary says by how much the best map beats the random map, paired on the same images, with a CI
    assert re.search(r"on the same \d+ images the difference is [+-]\d+\.\d points, 95 % CI", html)
    assert "Best method per model against the random map on the same images: &#39;adversarial&#39; " in html


# The column lists of issue 4 and README.md, written out (not imported from robustxai.report._tables).
ALIGNMENT_CSV_COLUMNS = [
    "model",
    "condition",
    "epsilon",
    "explainer",
    "metric",
    "value",
    "n",
    "ci_low",
    "ci_high",
]
STABILITY_CSV_COLUMNS = [
    "model",
    "attack",
    "epsilon",
    "explainer",
    "metric",
    "value",
    "ci_low",
    "ci_high",
    "n",
]


@pytest.mark.slow
def test_alignment_and_stability_csv_have_exactly_the_documented_columns(smoke_run: Path) -> None:
    with open(smoke_run / "tables" / "alignment.csv", encoding="utf-8") as f:
        assert f.readline().rstrip("\n").split(",") == ALIGNMENT_CSV_COLUMNS
    with open(smoke_run / "tables" / "stability.csv", encoding="utf-8") as f:
        assert f.readline().rstrip("\n").split(",") == STABILITY_CSV_COLUMNS
    ali = pd.read_csv(smoke_run / "tables" / "alignment.csv")
    stab = pd.read_csv(smoke_run / "tables" / "stability.csv")
    assert len(ali) and len(stab)
    # The columns hold what their names say: counts are whole, intervals bracket the mean.
    for frame in (ali, stab):
        assert (frame["n"] >= 0).all() and (frame["n"] == frame["n"].round()).all()
        defined = frame.dropna(subset=["ci_low", "ci_high"])
        assert len(defined) and (defined["ci_low"] <= defined["value"] + 1e-12).all()
        assert (defined["value"] <= defined["ci_high"] + 1e-12).all()
    assert set(stab["metric"]) == {"map_ssim", "map_mse", "map_pearson"} and "clean" not in set(
        stab["attack"]
    )
    assert not ali["metric"].str.startswith("map_").any()


def test_readme_documents_the_same_csv_columns() -> None:
    readme = " ".join((Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8").split())
    for name, columns in (("alignment", ALIGNMENT_CSV_COLUMNS), ("stability", STABILITY_CSV_COLUMNS)):
        assert f"`{name}.csv` (`{', '.join(columns)}`)" in readme, name


@pytest.mark.slow
def test_store_has_one_row_per_sample_and_metric(smoke_run: Path) -> None:
    con = sqlite3.connect(smoke_run / "results.sqlite")
    n_samples = con.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
    preds = con.execute("SELECT COUNT(*) FROM predictions").fetchone()[0]
    assert preds == n_samples * 3 * 5  # 3 models × (clean + fgsm + pgd + bim + apgd)
    dup = con.execute(
        "SELECT COUNT(*) FROM (SELECT model, condition, epsilon, explainer, metric, sample_id, COUNT(*) c "
        "FROM metrics GROUP BY 1,2,3,4,5,6 HAVING c > 1)"
    ).fetchone()[0]
    assert dup == 0


@pytest.mark.slow
def test_deeplift_on_the_attention_model_is_flagged_once(smoke_run: Path) -> None:
    con = sqlite3.connect(smoke_run / "results.sqlite")
    rows = con.execute("SELECT DISTINCT model FROM warnings WHERE code = 'approximate'").fetchall()
    assert rows == [("attention",)]  # its attention product: no decomposition; the plain CNNs sum exactly
    html = (smoke_run / "report.html").read_text()
    assert html.count("attributions do not add up to f(x) − f(x₀)") == 1


@pytest.mark.slow
def test_resolved_config_is_saved_and_reusable(smoke_run: Path, tmp_path: Path) -> None:
    from robustxai.audit import load_config

    cfg = load_config(smoke_run / "config.toml", profile="smoke")
    assert cfg.name == "smoke" and cfg.data.size == 32


@pytest.mark.slow
def test_second_run_reuses_cached_models(smoke_run: Path, tmp_path: Path) -> None:
    con = sqlite3.connect(smoke_run / "results.sqlite")
    assert con.execute("SELECT COUNT(*) FROM models").fetchone()[0] == 3
    result = runner.invoke(app, ["audit", "--profile", "smoke", "--out", str(tmp_path / "again")])
    assert result.exit_code == 0, result.output
    first = pd.read_csv(smoke_run / "tables" / "robustness.csv")
    second = pd.read_csv(tmp_path / "again" / "tables" / "robustness.csv")
    pd.testing.assert_frame_equal(first, second)
    infos = (
        sqlite3.connect(tmp_path / "again" / "results.sqlite").execute("SELECT info FROM models").fetchall()
    )
    assert all('"source": "cache"' in row[0] for row in infos)


@pytest.mark.parametrize(
    ("args", "config", "message"),
    [
        (["audit", "missing.toml"], None, "config file not found"),
        (["audit", "{cfg}"], "[data]\nn_tset = 3\n", "unknown key"),
        (["audit", "{cfg}"], '[[attacks]]\nname = "deepfool"\n', "unknown attack 'deepfool'"),
        (["audit", "{cfg}"], '[explain]\nmethods = ["shap"]\n', "unknown explainer 'shap'"),
        (["audit", "{cfg}"], '[[models]]\nname = "m"\narch = "vit"\n', "unknown model 'vit'"),
        (["audit", "{cfg}"], '[[attacks]]\nname = "pgd"\nepsilons = [-1.0]\n', "epsilons must be ≥ 0"),
        (["audit", "{cfg}"], '[data]\nsource = "folder"\npath = "{empty}"\n', "no images found"),
        (["audit", "--profile", "huge"], None, "unknown profile"),
        (["list", "gizmos"], None, "unknown kind"),
    ],
)
def test_bad_input_is_one_line_error(args, config, message, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    cfg = tmp_path / "c.toml"
    if config is not None:
        cfg.write_text(config.replace("{empty}", str(empty)))
    argv = [a.replace("{cfg}", str(cfg)) for a in args]
    if argv[0] == "audit" and "--profile" not in argv:
        argv += ["--profile", "smoke", "--out", str(tmp_path / "out")]
    result = runner.invoke(app, argv)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert "error:" in result.output


def test_list_command() -> None:
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0
    for name in ("pgd", "apgd", "manipulate", "xrai", "smallcnn-attention", "torchvision:", "pointing_game"):
        assert name in result.output


@pytest.mark.slow
def test_data_synth_and_train_commands(tmp_path: Path) -> None:
    out = tmp_path / "synth"
    result = runner.invoke(app, ["data", "synth", "--out", str(out), "--n", "40", "--size", "32"])
    assert result.exit_code == 0, result.output
    assert (out / "manifest.csv").is_file() and (out / "annotations.json").is_file()
    manifest = pd.read_csv(out / "manifest.csv")
    assert (manifest["split"] == "test").sum() == 8 and (manifest["split"] == "train").sum() == 32
    model_dir = tmp_path / "model"
    result = runner.invoke(
        app,
        [
            "train",
            "--out",
            str(model_dir),
            "--data",
            str(out),
            "--size",
            "32",
            "--epochs",
            "1",
            "--training",
            "pgd",
            "--attack-steps",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (model_dir / "model.safetensors").is_file()


def test_out_dir_with_foreign_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "mine.png").write_bytes(b"x")
    result = runner.invoke(app, ["audit", "--profile", "smoke", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "holds no earlier robustxai run" in result.output
    assert (tmp_path / "figures" / "mine.png").is_file()


@pytest.mark.slow
def test_rerun_into_same_dir_resumes(smoke_run: Path) -> None:
    before = pd.read_csv(smoke_run / "tables" / "alignment.csv")
    result = runner.invoke(app, ["audit", "--profile", "smoke", "--out", str(smoke_run)])
    assert result.exit_code == 0, result.output
    assert "resumed:" in result.output and "0 run now" in result.output
    pd.testing.assert_frame_equal(before, pd.read_csv(smoke_run / "tables" / "alignment.csv"))


@pytest.mark.slow
def test_changed_config_into_same_dir_is_refused(smoke_run: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("seed = 7\n")
    result = runner.invoke(app, ["audit", str(cfg), "--profile", "smoke", "--out", str(smoke_run)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "different config (seed: 0 → 7)" in result.output and "--fresh" in result.output


def test_ctrl_c_exits_130_with_resume_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from robustxai import _pipeline as pipeline
    from robustxai.audit import _runner as runner_mod

    def interrupted(*args: object, **kwargs: object) -> None:
        raise runner_mod.AuditInterrupted(
            "interrupted: 3 of 21 units are finished; Run the same command again"
        )

    monkeypatch.setattr(pipeline, "run_audit", interrupted)
    result = runner.invoke(app, ["audit", "--profile", "smoke", "--out", str(tmp_path / "run")])
    assert result.exit_code == 130 and "Run the same command again" in result.output


def test_cli_passes_fresh_and_executor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from robustxai import _pipeline as pipeline
    from robustxai.audit import _runner as runner_mod

    seen: dict[str, object] = {}

    def record(cfg: object, out: object, **kwargs: object) -> None:
        seen.update(kwargs, executor=cfg.executor.kind, address=cfg.executor.address)  # type: ignore[attr-defined]
        raise runner_mod.AuditInterrupted("stop")

    monkeypatch.setattr(pipeline, "run_audit", record)
    args = ["audit", "--profile", "smoke", "--out", str(tmp_path), "--executor", "ray", "--address", "h:1"]
    runner.invoke(app, [*args, "--fresh"])
    assert seen["fresh"] is True and seen["executor"] == "ray" and seen["address"] == "h:1"
    runner.invoke(app, args)
    assert seen["fresh"] is False
    bad = runner.invoke(app, ["audit", "--profile", "smoke", "--out", str(tmp_path), "--executor", "mpi"])
    assert bad.exit_code == 2 and "executor.kind" in bad.output
