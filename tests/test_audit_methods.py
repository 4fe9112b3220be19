"""The audit end to end with every explainer, APGD, the sanity checks and the masking warning."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import robustxai as rx
from robustxai.audit import load_config
from robustxai.audit._stages_sanity import masking_warnings
from robustxai.cli import app
from robustxai.models import MODELS, ModelWrapper

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = "tests internals of robustxai.audit._stages_manip, robustxai.audit._stages_sanity"

runner = CliRunner()
ALL_METHODS = [
    "saliency",
    "input_x_gradient",
    "integrated_gradients",
    "smoothgrad",
    "deeplift",
    "occlusion",
    "gradcam",
    "guided_gradcam",
    "lime",
    "xrai",
]

EVERY_METHOD_TOML = f"""
[explain]
methods = {ALL_METHODS!r}
n_images = 4
batch_size = 16
attacks = ["fgsm"]

[explain.params.integrated_gradients]
n_steps = 4
[explain.params.smoothgrad]
n_samples = 3
[explain.params.occlusion]
window = 8
stride = 8
[explain.params.lime]
n_samples = 30
[explain.params.xrai]
n_steps = 4
"""


@pytest.mark.slow
def test_every_explainer_through_the_audit(tmp_path: Path) -> None:
    cfg = tmp_path / "every.toml"
    cfg.write_text(EVERY_METHOD_TOML.replace("'", '"'))
    out = tmp_path / "run"
    result = runner.invoke(app, ["audit", str(cfg), "--profile", "smoke", "--out", str(out)])
    assert result.exit_code == 0, result.output
    ali = pd.read_csv(out / "tables" / "alignment.csv")
    assert set(ALL_METHODS) | {"random"} == set(ali["explainer"])
    for metric in ("point_coverage@15", "pointing_game", "relevance_mass", "topk_iou@15", "rmse@15"):
        got = set(ali[ali["metric"] == metric]["explainer"])
        assert got == set(ALL_METHODS) | {"random"}, metric
    stab = pd.read_csv(out / "tables" / "stability.csv")
    assert set(stab["explainer"]) == set(ALL_METHODS)
    assert set(stab["metric"]) == {"map_ssim", "map_mse", "map_pearson"}
    assert set(stab["attack"]) == {"fgsm"}  # explain.attacks limits which attacks are explained
    rob = pd.read_csv(out / "tables" / "robustness.csv")
    assert {"fgsm", "pgd", "bim", "apgd"} == set(rob["attack"])
    html = (out / "report.html").read_text()
    for needle in ("Table 3", "Table 4", "Table 5", "Table 6", "lime", "xrai"):
        assert needle in html, needle


class _Probabilities(nn.Module):
    """A CNN whose head ends in a softmax: attacks on its 'logits' see a saturated loss."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(in_channels, 4, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.head(self.features(x).mean(dim=(2, 3))), dim=1)


def _probability_model(
    num_classes: int = 2,
    in_channels: int = 1,
    class_names: Sequence[str] | None = None,
    task: str = "multiclass",
) -> ModelWrapper:
    net = _Probabilities(in_channels, num_classes)
    names = list(class_names) if class_names else [f"class_{i}" for i in range(num_classes)]
    spec = {
        "name": "test-probabilities",
        "kwargs": {"num_classes": num_classes, "in_channels": in_channels, "class_names": names},
    }
    return ModelWrapper(net, names, in_channels=in_channels, cam_layer="features.0", spec=spec)


@pytest.fixture
def probability_arch() -> str:
    name = "test-probabilities"
    if name not in MODELS.names():
        MODELS.register(name)(_probability_model)
    return name


@pytest.mark.slow
def test_a_probability_model_gets_a_visible_logits_warning(tmp_path: Path, probability_arch: str) -> None:
    cfg = tmp_path / "probs.toml"
    cfg.write_text(
        f"""
[[models]]
name = "probs"
arch = "{probability_arch}"
training = "standard"
epochs = 1

[explain]
methods = ["saliency"]
n_images = 2
"""
    )
    out = tmp_path / "run"
    result = runner.invoke(app, ["audit", str(cfg), "--profile", "smoke", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "warning:" in result.output and "probs:" in result.output
    assert "probabilit" in result.output.lower()
    html = (out / "report.html").read_text()
    assert "probs:" in html and "probabilit" in html.lower()


def test_masking_warning_from_a_pgd_apgd_gap() -> None:
    cfg = load_config(profile="smoke")
    eps = cfg.attacks[0].epsilons[0]
    rows = []
    for i in range(20):
        rows.append(("m", "clean", 0.0, f"s{i}", i % 2, i % 2, 1))
        rows.append(("m", "pgd", eps, f"s{i}", i % 2, i % 2, 1))  # PGD fails everywhere …
        rows.append(("m", "apgd", eps, f"s{i}", i % 2, 1 - i % 2, 0))  # … APGD succeeds everywhere
    pred = pd.DataFrame(
        rows, columns=["model", "condition", "epsilon", "sample_id", "label", "pred", "correct"]
    )
    found = masking_warnings(pred, cfg)
    assert [w[1] for w in found if w[0] == "m"].count("pgd_apgd_gap") == 1
    assert not masking_warnings(pred[pred["condition"] != "apgd"], cfg)


def test_smoke_models_pass_the_sanity_checks() -> None:
    model = rx.create_model("smallcnn", widths=(4, 8, 8, 8)).eval()
    assert rx.attacks.sanity_checks(model, torch.rand(4, 1, 32, 32), torch.tensor([0, 1, 0, 1])) == []


def test_manipulation_method_params_override_per_method() -> None:
    from robustxai import ConfigError
    from robustxai.audit._stages_manip import _attack, check_manipulation_config

    cfg = load_config(profile="default")
    mc = cfg.manipulation
    assert mc is not None
    sal, cam = _attack(mc, "saliency"), _attack(mc, "gradcam")
    assert sal.lr == mc.lr and cam.lr == mc.method_params["gradcam"]["lr"] != mc.lr
    assert cam.objective.alpha_image == 0.3 and sal.objective.alpha_image == 0.1  # the "ssim" preset's
    assert sal.selection.rule == cam.selection.rule == "real" and mc.params == {"preset": "ssim"}
    bad = cfg.model_copy(update={"manipulation": mc.model_copy(update={"method_params": {"lime": {}}})})
    with pytest.raises(ConfigError, match="not attacked: lime"):
        check_manipulation_config(bad)
