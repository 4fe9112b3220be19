"""Transfer learning: new heads on zoo backbones, linear probes, multi-label fits, save/reload and the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn
from typer.testing import CliRunner

import robustxai as rx
from robustxai import RobustXAIError
from robustxai.cli import app
from robustxai.models._attention import SoftAttentionHead, attention_maps
from robustxai.models._heads import AttentionTransferNet
from robustxai.training._fit import _class_weights, keep_frozen_in_eval

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = "tests internals of robustxai.models._attention, robustxai.models._heads, robustxai.training._fit"

runner = CliRunner()


def _bright_top(n: int = 24, size: int = 32, channels: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 2
    x = torch.rand(n, channels, size, size, generator=gen) * 0.3
    x[y == 1, :, : size // 2] += 0.6
    return x.clamp(0, 1), y


@pytest.mark.slow
def test_attention_head_reads_the_last_feature_map() -> None:
    torch.manual_seed(0)
    model = rx.create_model(
        "torchvision:resnet18", num_classes=3, head="attention", random_init=True, in_channels=1
    ).eval()
    net = model.net
    assert isinstance(net, AttentionTransferNet) and isinstance(net.head, SoftAttentionHead)
    assert model.cam_layer == "backbone.layer4"
    x = torch.rand(2, 1, 64, 64)
    # Reference: the torchvision ResNet trunk written out by hand, then the same head.
    b = net.backbone
    z = (x.repeat(1, 3, 1, 1) - model.mean) / model.std
    z = b.maxpool(b.relu(b.bn1(b.conv1(z))))
    feats = b.layer4(b.layer3(b.layer2(b.layer1(z))))
    torch.testing.assert_close(model(x), net.head(feats))
    assert attention_maps(model, x).shape == (2, 1, 2, 2)


def test_freeze_backbone_leaves_only_the_head_trainable() -> None:
    model = rx.create_model("torchvision:resnet18", num_classes=2, head="linear", random_init=True)
    probe = rx.create_model(
        "torchvision:resnet18", num_classes=2, head="linear", freeze_backbone=True, random_init=True
    )
    trainable = {n for n, p in probe.named_parameters() if p.requires_grad}
    assert trainable == {"net.fc.weight", "net.fc.bias"}
    assert all(p.requires_grad for p in model.parameters())


def test_keep_frozen_in_eval_keeps_head_dropout_training() -> None:
    model = rx.create_model(
        "torchvision:resnet18",
        num_classes=2,
        head="attention",
        freeze_backbone=True,
        random_init=True,
    )
    model.train()
    keep_frozen_in_eval(model)
    assert not model.net.backbone.training and not model.net.backbone.bn1.training
    assert model.net.head.training and model.net.head.dropout.training


@pytest.mark.slow
def test_linear_probe_fit_changes_only_the_head() -> None:
    torch.manual_seed(0)
    model = rx.create_model(
        "torchvision:resnet18",
        num_classes=2,
        head="linear",
        freeze_backbone=True,
        random_init=True,
        in_channels=1,
    )
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = _bright_top()
    rx.fit(model, (x, y), config=rx.FitConfig(epochs=2, batch_size=8, lr=1e-2, val_fraction=0.25))
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"net.fc.weight", "net.fc.bias"}  # batch-norm running stats included: unchanged


def test_multilabel_fit_learns_and_uses_pos_weight() -> None:
    torch.manual_seed(0)
    x, y = _bright_top(48, 16)
    labels = torch.stack([y, 1 - y, (torch.arange(48) % 4 == 0).long()], dim=1)  # third label: noise, rare
    model = rx.create_model("smallcnn", num_classes=3, widths=(4, 8, 8, 8))
    model.task = "multilabel"
    result = rx.fit(model, (x, labels), config=rx.FitConfig(epochs=6, batch_size=16, lr=1e-2, patience=6))
    preds = rx.models.predict_labels(model, model(x))
    assert (preds[:, :2] == labels[:, :2]).float().mean() >= 0.9
    assert 0 <= result.val_accuracy <= 1
    w = _class_weights(labels.float(), 3)
    pos = labels.float().sum(0)
    torch.testing.assert_close(w, (48 - pos) / pos)  # BCE pos_weight = negatives / positives per label
    with pytest.raises(RobustXAIError, match="0 and 1"):
        rx.fit(model, (x, labels * 2))
    with pytest.raises(rx.DataError, match="3"):
        rx.fit(model, (x, labels[:, :2]))


def test_multilabel_adversarial_training_runs() -> None:
    x, y = _bright_top(24, 16)
    labels = torch.stack([y, 1 - y], dim=1)
    model = rx.create_model("smallcnn", num_classes=2, widths=(4, 8, 8, 8))
    model.task = "multilabel"
    cfg = rx.FitConfig(epochs=1, batch_size=12, adversarial="pgd", attack_steps=1)
    result = rx.fit(model, (x, labels), config=cfg)
    assert "robust_val_accuracy" in result.history[0]


def test_fit_with_everything_frozen_is_an_error() -> None:
    model = rx.create_model("smallcnn", widths=(4, 8, 8, 8))
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(RobustXAIError, match="no trainable parameters"):
        rx.fit(model, _bright_top(12, 16))


@pytest.mark.slow
@pytest.mark.parametrize("head", ["linear", "attention"])
def test_fine_tuned_zoo_model_reloads_identically(tmp_path: Path, head: str) -> None:
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "r18.pt")
    model = rx.create_model(
        "torchvision:resnet18",
        class_names=["normal", "fracture"],
        head=head,
        freeze_backbone=True,
        checkpoint=str(tmp_path / "r18.pt"),
        in_channels=1,
    )
    rx.fit(model, _bright_top(12), config=rx.FitConfig(epochs=1, batch_size=6))
    rx.save_model(model, tmp_path / "m")
    (tmp_path / "r18.pt").unlink()  # the rebuild must not need the original checkpoint
    loaded = rx.load_model(tmp_path / "m")
    x = torch.rand(3, 1, 32, 32)
    torch.testing.assert_close(loaded(x), model.eval()(x))
    assert loaded.class_names == ["normal", "fracture"] and loaded.cam_layer == model.cam_layer


# --- CLI acceptance ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synth_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "data"
    result = runner.invoke(app, ["data", "synth", "--out", str(out), "--n", "40", "--size", "32"])
    assert result.exit_code == 0, result.output
    return out


def _train(folder: Path, out: Path, *args: str) -> object:
    base = ["train", "--data", str(folder), "--out", str(out), "--size", "32", "--epochs", "1"]
    return runner.invoke(app, [*base, "--batch-size", "16", *args])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "head", "writer"),
    [
        ("torchvision:resnet18", "linear-probe", lambda: torchvision.models.resnet18()),
        ("torchvision:resnet18", "attention", lambda: torchvision.models.resnet18()),
        ("timm:resnet10t", "linear-probe", None),
    ],
)
def test_cli_trains_zoo_models(synth_folder: Path, tmp_path: Path, model: str, head: str, writer) -> None:
    import timm

    torch.manual_seed(0)
    net: nn.Module = writer() if writer else timm.create_model("resnet10t")
    torch.save({"state_dict": net.state_dict()}, tmp_path / "ckpt.pth")
    result = _train(synth_folder, tmp_path / "m", "--model", model, "--head", head, "--checkpoint",
                    str(tmp_path / "ckpt.pth"))  # fmt: skip
    assert result.exit_code == 0, result.output
    loaded = rx.load_model(tmp_path / "m")
    assert loaded.spec["kwargs"]["freeze_backbone"] == (head == "linear-probe")
    assert rx.models.read_model_meta(tmp_path / "m")["head"] == head
    x = torch.rand(2, 1, 32, 32)
    torch.testing.assert_close(loaded(x), rx.load_model(tmp_path / "m")(x))


@pytest.mark.slow
def test_cli_trains_a_robustbench_model_from_its_layout(
    synth_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rb = "Rebuffi2021Fixing_R18_ddpm"
    net = rx.create_model(f"robustbench:{rb}", dataset="cifar10", random_init=True).net
    target = tmp_path / "models" / "cifar10" / "Linf" / f"{rb}.pt"
    target.parent.mkdir(parents=True)
    torch.save({k: v.clone() for k, v in net.state_dict().items()}, target)
    monkeypatch.chdir(tmp_path)  # the default model_dir is ./models, as in RobustBench
    result = _train(synth_folder, tmp_path / "m", "--model", f"robustbench:{rb}", "--head", "linear-probe",
                    "--model-option", "dataset=cifar10")  # fmt: skip
    assert result.exit_code == 0, result.output
    loaded = rx.load_model(tmp_path / "m")
    assert loaded.num_classes == 2 and loaded.spec["kwargs"]["dataset"] == "cifar10"


def test_cli_train_errors_are_one_line(synth_folder: Path, tmp_path: Path) -> None:
    torch.save({"w": torch.ones(1), "x": SoftAttentionHead}, tmp_path / "pickle.pt")
    cases = [
        (["--model", "torchvision:resnet18", "--checkpoint", str(tmp_path / "none.pt")], "none.pt"),
        (
            ["--model", "torchvision:resnet18", "--checkpoint", str(tmp_path / "pickle.pt")],
            "--trust-checkpoint",
        ),
        (["--model", "torchvision:resnet18", "--head", "mlp"], "--head must be"),
        (["--model", "smallcnn", "--head", "linear"], "apply to zoo models"),
        (["--model", "torchvision:resnet18", "--model-option", "oops"], "KEY=VALUE"),
    ]
    for args, message in cases:
        result = _train(synth_folder, tmp_path / "m", *args)
        assert result.exit_code == 2, result.output
        assert message in result.output and "Traceback" not in result.output
    result = _train(synth_folder, tmp_path / "m", "--model", "robustbench:Standard_R50", "--head", "linear")
    assert result.exit_code == 2 and "models/imagenet/Linf/Standard_R50.pt" in result.output.replace("\n", "")
