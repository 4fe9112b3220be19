"""Transformers in the audit: a method that cannot run on a model is planned out with its reason, never fatal.

The plan's applicability is tested directly (tiny timm models, no audit); one slow test runs a whole audit of
a tiny ViT and a tiny Swin loaded from local random-initialised checkpoints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from robustxai import ConfigError
from robustxai._pipeline import run_audit
from robustxai.attacks._gradient_sign import PGD
from robustxai.audit._applicability import NOT_APPLICABLE_CODE
from robustxai.audit._config import AuditConfig, load_config, profile_dict, validate_config
from robustxai.audit._estimate_trim import manipulates, scaled, trim_to_fit
from robustxai.audit._plan import inapplicable, plan_units
from robustxai.data import SyntheticFracture
from robustxai.data._folder import write_folder
from robustxai.models import wrap_model
from robustxai.results import Store

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = (
    "tests internals of robustxai._pipeline, robustxai.attacks._gradient_sign, "
    "robustxai.audit._applicability, robustxai.audit._config, robustxai.audit._plan, "
    "robustxai.audit._stages_manip, robustxai.data._folder"
)

timm = pytest.importorskip("timm")

VIT = ("vit_tiny_patch16_224", {"img_size": 32, "patch_size": 8, "depth": 2, "embed_dim": 32, "num_heads": 2})
SWIN = (
    "swin_tiny_patch4_window7_224",
    {
        "img_size": 32,
        "patch_size": 4,
        "window_size": 4,
        "embed_dim": 16,
        "depths": [1, 1],
        "num_heads": [1, 2],
    },
)
METHODS = ["saliency", "integrated_gradients", "gradcam", "occlusion", "attention_rollout", "deeplift"]


def _config(
    tmp_path: Path, models: list[dict[str, Any]], manipulation: dict[str, Any] | None = None
) -> AuditConfig:
    raw = profile_dict("smoke")
    raw.pop("manipulation")
    if manipulation is not None:
        raw["manipulation"] = manipulation
    raw["name"] = "transformers"
    raw["cache_dir"] = str(tmp_path / "cache")
    raw["data"] = {"source": "folder", "path": str(tmp_path / "data"), "size": 32, "n_test": 8}
    raw["models"] = models
    raw["attacks"] = [
        {"name": "fgsm", "epsilons": [2 / 255]},
        {"name": "pgd", "epsilons": [2 / 255], "params": {"steps": 2, "step_size": 1 / 255}},
    ]
    raw["explain"].update(
        methods=METHODS, n_images=4, attacks=["pgd"], params={"integrated_gradients": {"n_steps": 4}}
    )
    raw["sanity"] = {"n_images": 4}
    raw["batch_size"] = 16
    return validate_config(raw)


def _zoo_entry(name: str, spec: tuple[str, dict[str, Any]], checkpoint: Path | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"head": "linear", "model_kwargs": spec[1]}
    kwargs.update({"checkpoint": str(checkpoint)} if checkpoint else {"random_init": True})
    return {"name": name, "arch": f"timm:{spec[0]}", "training": "none", "arch_kwargs": kwargs}


def _tiny(spec: tuple[str, dict[str, Any]]) -> Any:
    torch.manual_seed(0)
    net = timm.create_model(spec[0], num_classes=2, **spec[1])
    return wrap_model(net, ["normal", "fracture"], in_channels=1, net_channels=3)


class _Data:
    """What planning reads of the audit's data: the test-set size and the explanation subset."""

    def __init__(self, n: int, subset: list[int]) -> None:
        self.n, self.subset = n, subset

    def __len__(self) -> int:
        return self.n


def test_plan_drops_impossible_pairs_with_their_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manip = {"methods": ["saliency", "gradcam"], "n_images": 2, "iterations": 2, "batch_size": 2}
    cfg = _config(tmp_path, [_zoo_entry("vit", VIT, None), _zoo_entry("swin", SWIN, None)], manip)
    models = {"vit": _tiny(VIT), "swin": _tiny(SWIN)}
    found = {(s.kind, s.model, s.method): s.reason for s in inapplicable(cfg, models)}
    assert set(found) == {
        ("explanation", "swin", "attention_rollout"),  # windowed attention: no rollout
        ("manipulation", "vit", "gradcam"),  # the attack's differentiable Grad-CAM needs a conv map
        ("manipulation", "swin", "gradcam"),
    }
    assert "no global self-attention" in found[("explanation", "swin", "attention_rollout")]
    assert "token grid" in found[("manipulation", "vit", "gradcam")]
    # An attack that cannot run on one model: its units go, and so do the explanations' dependencies on them.
    monkeypatch.setattr(PGD, "applicable", lambda self, model: "no" if model is models["swin"] else None)
    skipped = inapplicable(cfg, models)
    assert ("robustness", "swin", "pgd") in {(s.kind, s.model, s.method) for s in skipped}
    units = plan_units(cfg, _Data(8, [0, 1, 2, 3]), skipped)  # type: ignore[arg-type]
    ids = {u.id for u in units}
    assert not any(u.model == "swin" and u.condition == ("pgd", 2 / 255) for u in units)
    assert any(u.model == "vit" and u.condition == ("pgd", 2 / 255) for u in units)
    assert "explanation/swin/attention_rollout/0" not in ids and "explanation/vit/attention_rollout/0" in ids
    assert "manipulation/vit/gradcam/0" not in ids and "manipulation/vit/saliency/0" in ids
    swin_expl = next(u for u in units if u.id == "explanation/swin/gradcam/0")
    assert swin_expl.deps == ()
    vit_expl = next(u for u in units if u.id == "explanation/vit/gradcam/0")
    assert vit_expl.deps == ("robustness/vit/pgd@0.00784313725490196/0",)


def test_a_manipulation_stage_that_attacks_no_model_skips_nothing_and_trims_nothing(tmp_path: Path) -> None:
    manip = {"methods": ["saliency", "gradcam"], "n_images": 4, "iterations": 2, "models": []}
    cfg = _config(tmp_path, [_zoo_entry("vit", VIT, None), _zoo_entry("swin", SWIN, None)], manip)
    found = {(s.kind, s.model, s.method) for s in inapplicable(cfg, {"vit": _tiny(VIT), "swin": _tiny(SWIN)})}
    assert found == {("explanation", "swin", "attention_rollout")}  # no "gradcam skipped (manipulation)"
    assert not manipulates(cfg)
    assert scaled(cfg, 0.0).manipulation.n_images == 4  # and --max-minutes does not trim it
    with pytest.raises(ConfigError) as err:
        trim_to_fit(cfg, 1.0, lambda c: 60.0)
    assert "even one explained image is predicted" in str(err.value)


@pytest.mark.slow
def test_audit_of_a_vit_and_a_swin_completes_and_lists_what_it_skipped(tmp_path: Path) -> None:
    write_folder(SyntheticFracture(24, size=32, seed=3), tmp_path / "data")
    entries = []
    for name, spec in (("vit", VIT), ("swin", SWIN)):
        torch.manual_seed(1)
        net = timm.create_model(spec[0], num_classes=2, **spec[1])
        path = tmp_path / f"{name}.safetensors"
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
        entries.append(_zoo_entry(name, spec, path))
    result = run_audit(_config(tmp_path, entries), tmp_path / "run")
    align = pd.read_csv(result.run_dir / "tables" / "alignment.csv")
    pairs = {(m, e) for m, e in zip(align["model"], align["explainer"], strict=True)}
    expected = {(m, e) for m in ("vit", "swin") for e in [*METHODS, "random"]} - {
        ("swin", "attention_rollout")
    }
    assert pairs == expected  # every requested method on every model where it applies
    with Store(result.run_dir, readonly=True) as store:
        warnings = store.warnings()
    skipped = warnings[warnings["code"] == NOT_APPLICABLE_CODE]
    assert list(skipped["model"]) == ["swin"] and "attention_rollout skipped" in skipped["message"].iloc[0]
    assert set(warnings[warnings["code"] == "approximate"]["model"]) == {"vit", "swin"}  # DeepLIFT on GELU
    assert any("swin: attention_rollout skipped" in w for w in result.warnings)  # what the CLI prints
    html = result.report.read_text(encoding="utf-8")
    assert "attention_rollout skipped (explanation): no global self-attention" in html
    assert "deeplift †" in html


def test_manipulation_transfer_leaves_out_the_methods_a_model_cannot_have() -> None:
    import numpy as np

    from robustxai.audit import load_config
    from robustxai.audit._stages_manip import ManipulationShard, manipulation_shard

    raw = load_config(profile="smoke").model_dump()
    raw["manipulation"] = {
        "methods": ["saliency"],
        "transfer_from": ["saliency"],
        "evaluate": ["gradcam", "attention_rollout"],
        "n_images": 2,
        "iterations": 2,
        "batch_size": 2,
    }
    cfg = validate_config(raw)
    images = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    shard = ManipulationShard(
        ["s0", "s1"], images, torch.tensor([0, 1]), torch.zeros(2, 32, 32, dtype=torch.bool),
        [np.array([[5.0, 5.0]]), np.array([[20.0, 9.0]])], 0,
    )  # fmt: skip
    for name, spec, scored in (
        ("swin", SWIN, {"saliency", "gradcam"}),
        ("vit", VIT, {"saliency", "gradcam", "attention_rollout"}),
    ):
        rows, _ = manipulation_shard(name, _tiny(spec).eval(), cfg, "saliency", shard)
        assert {r[3] for r in rows} - {
            ""
        } == scored  # Swin has no attention rollout column: skipped, not fatal


def _two_cnns(tmp_path: Path, layer: str) -> AuditConfig:
    return load_config(
        profile="smoke",
        name="cam-layer",
        cache_dir=str(tmp_path / "cache"),
        batch_size=4,
        data={"n_train": 40, "n_test": 8, "size": 32, "write_to_disk": False},
        training={"epochs": 1},
        models=[
            {"name": "deep", "arch": "smallcnn", "arch_kwargs": {"widths": [4, 8, 8, 8]}},
            {"name": "shallow", "arch": "smallcnn", "arch_kwargs": {"widths": [4, 8]}},
        ],
        attacks=[{"name": "fgsm", "epsilons": [2 / 255]}],
        explain={
            "methods": ["saliency", "gradcam"],
            "n_images": 4,
            "batch_size": 2,
            "attacks": ["fgsm"],
            "params": {"gradcam": {"layer": layer}},
        },
        manipulation={"methods": ["saliency"], "models": []},
        sanity={"enabled": False},
        report={"n_figure": 1, "primary_attack": "fgsm"},
    )


@pytest.mark.parametrize(
    ("layer", "skipped"),
    [
        ("features.3", {"shallow": "layer 'features.3' not found in the model"}),  # a path in the network
        (
            "net.head",
            {m: "neither a feature map nor tokens" for m in ("deep", "shallow")},
        ),  # found at run time
    ],
)
def test_a_grad_cam_layer_that_does_not_fit_a_model_skips_that_pair_only(
    tmp_path: Path, layer: str, skipped: dict[str, str]
) -> None:
    """A named layer a model lacks (the plan) or whose output has no grid (the unit): that pair is skipped."""
    result = run_audit(_two_cnns(tmp_path, layer), tmp_path / "run")
    assert result.failed == {}
    align = pd.read_csv(result.run_dir / "tables" / "alignment.csv")
    pairs = {(m, e) for m, e in zip(align["model"], align["explainer"], strict=True)}
    all_pairs = {(m, e) for m in ("deep", "shallow") for e in ("saliency", "gradcam", "random")}
    assert pairs == all_pairs - {(m, "gradcam") for m in skipped}
    with Store(result.run_dir, readonly=True) as store:
        warnings = store.warnings()
    rows = warnings[warnings["code"] == NOT_APPLICABLE_CODE]
    assert set(rows["model"]) == set(skipped)
    for model, why in skipped.items():
        message = " ".join(rows[rows["model"] == model]["message"])
        assert message.startswith("gradcam skipped (explanation): ") and why in message


class _NanGradient(torch.nn.Module):
    """Finite logits whose input gradient is NaN where the top-left pixel is below 0.5."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.fc(self.conv(x).mean((2, 3)))
        corner = x[:, 0, 0, 0]
        return torch.where((corner > 0.5)[:, None], f + torch.sqrt(corner - 0.5)[:, None], f)


def test_only_a_method_that_cannot_apply_is_skipped_other_unit_errors_still_fail_the_model() -> None:
    """NaN maps are a problem of the model, not of the pair: the unit fails (and a later run retries it)."""
    import numpy as np

    from robustxai.audit._plan import EXPLANATION_UNIT, ExplanationInput, Unit, run_unit
    from robustxai.audit._stages_eval import ExplainShard

    torch.manual_seed(0)
    model = wrap_model(_NanGradient(), ["a", "b"], cam_layer="conv", in_channels=1).eval()
    cfg = load_config(profile="smoke")
    x = torch.rand(4, 1, 32, 32)
    x[:, 0, 0, 0] = 0.1
    shard = ExplainShard(
        [f"s{i}" for i in range(4)],
        {("clean", 0.0): x},
        torch.ones(4, 32, 32, dtype=torch.bool),
        [np.zeros((0, 2))] * 4,
        0,
    )
    unit = Unit("explanation/m/saliency/0", EXPLANATION_UNIT, "m", 0, (0, 1, 2, 3), None, "saliency")
    result = run_unit(unit, model, cfg, ExplanationInput(shard, set()))
    assert result.error is not None and "NaN" in result.error and not result.rows
