"""Offline model zoo: safe checkpoint reading, torchvision / timm / RobustBench builds, wrapping, errors."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
import torchvision
from safetensors.torch import save_file
from torch import nn

import robustxai as rx
from robustxai import RobustXAIError, UnknownNameError
from robustxai.models import read_checkpoint, wrap_model
from robustxai.models._heads import find_feature_layer
from robustxai.models._io import check_checkpoint_file
from robustxai.models._zoo import IMAGENET_MEAN, IMAGENET_STD

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = "tests internals of robustxai.models._heads, robustxai.models._io, robustxai.models._zoo"

RB_ID = "Rebuffi2021Fixing_R18_ddpm"  # CIFAR-10 L∞, a PreActResNet-18: the smallest RobustBench CNN


class _Custom:
    """A class only the full unpickler can rebuild."""


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


# --- read_checkpoint ---------------------------------------------------------------------------------------


def test_read_checkpoint_unwraps_nesting_and_prefixes(tmp_path: Path) -> None:
    state = {"a.weight": torch.randn(2, 3), "a.bias": torch.randn(2)}
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "x.pt")
    got = read_checkpoint(tmp_path / "x.pt")
    assert set(got) == set(state)
    for k in state:
        torch.testing.assert_close(got[k], state[k])
    save_file(state, str(tmp_path / "y.safetensors"))
    torch.testing.assert_close(read_checkpoint(tmp_path / "y.safetensors")["a.bias"], state["a.bias"])
    (tmp_path / "dir").mkdir()
    torch.save({"model": state}, tmp_path / "dir" / "model.pth")
    assert set(read_checkpoint(tmp_path / "dir")) == set(state)


def test_pickle_checkpoint_needs_trust(tmp_path: Path) -> None:
    torch.save({"model": {"w": torch.ones(2)}, "extra": _Custom()}, tmp_path / "p.pt")
    with pytest.raises(RobustXAIError, match="trust_checkpoint=True") as err:
        read_checkpoint(tmp_path / "p.pt")
    assert "\n" not in str(err.value)
    torch.testing.assert_close(read_checkpoint(tmp_path / "p.pt", trust_checkpoint=True)["w"], torch.ones(2))


def test_the_plan_checks_a_weight_file_without_loading_it(tmp_path: Path) -> None:
    """Valid files pass; empty, cut-short or garbage ones get read_checkpoint's error line; no unpickling."""
    save_file({"w": torch.ones(3)}, str(tmp_path / "ok.safetensors"))
    torch.save({"w": torch.ones(3)}, tmp_path / "ok.pt")
    for ok in ("ok.safetensors", "ok.pt"):
        check_checkpoint_file(tmp_path / ok)
    whole = (tmp_path / "ok.pt").read_bytes()
    bad = {
        "empty.pth": (b"", "the file is empty"),
        "cut.pt": (whole[: len(whole) // 2], "cut short"),
        "text.pt": (b"hello", "neither a torch zip archive nor a pickle"),
        "cut.safetensors": ((tmp_path / "ok.safetensors").read_bytes()[:20], "SafetensorError"),
    }
    for name, (data, why) in bad.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(RobustXAIError, match="cannot read checkpoint") as err:
            check_checkpoint_file(tmp_path / name)
        assert why in str(err.value) and "\n" not in str(err.value)
    # a pickle that would run code is never opened: only its first byte is read
    (tmp_path / "evil.pt").write_bytes(pickle.dumps(_Boom(), protocol=2))
    check_checkpoint_file(tmp_path / "evil.pt")


class _Boom:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (pytest.fail, ("unpickled",))


def test_read_checkpoint_errors(tmp_path: Path) -> None:
    with pytest.raises(RobustXAIError, match="checkpoint not found"):
        read_checkpoint(tmp_path / "none.pt")
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(RobustXAIError, match="cannot read checkpoint"):
        read_checkpoint(tmp_path / "bad.pt")
    (tmp_path / "zero.pth").write_bytes(b"")  # torch raises an EOFError without a message
    with pytest.raises(RobustXAIError, match="EOFError: the file ends before its data does"):
        read_checkpoint(tmp_path / "zero.pth")
    torch.save({"epoch": 1}, tmp_path / "empty.pt")
    with pytest.raises(RobustXAIError, match="no tensors"):
        read_checkpoint(tmp_path / "empty.pt")
    (tmp_path / "two").mkdir()
    for name in ("a.pt", "b.pt"):
        torch.save({"w": torch.ones(1)}, tmp_path / "two" / name)
    with pytest.raises(RobustXAIError, match="2 weight files"):
        read_checkpoint(tmp_path / "two")
    with open(tmp_path / "raw.pkl.pt", "wb") as f:
        pickle.dump([1, 2], f)
    with pytest.raises(RobustXAIError):
        read_checkpoint(tmp_path / "raw.pkl.pt")


# --- torchvision / timm ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_torchvision_loads_a_local_checkpoint_and_normalises_inside(tmp_path: Path) -> None:
    torch.manual_seed(0)
    ref = torchvision.models.resnet18(num_classes=5).eval()
    torch.save({"state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()}}, tmp_path / "r.pth")
    model = rx.create_model("torchvision:resnet18", num_classes=5, checkpoint=str(tmp_path / "r.pth")).eval()
    assert model.cam_layer == "layer4" and model.in_channels == 3
    x = torch.rand(2, 3, 32, 32)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(model(x), ref((x - mean) / std))


@pytest.mark.slow
def test_grayscale_is_repeated_inside_the_wrapper() -> None:
    torch.manual_seed(0)
    model = rx.create_model("torchvision:resnet18", num_classes=2, random_init=True, in_channels=1).eval()
    x = torch.rand(2, 1, 32, 32, requires_grad=True)
    out = model(x)
    torch.testing.assert_close(out, model.net((x.repeat(1, 3, 1, 1) - model.mean) / model.std))
    out[:, 0].sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape  # gradients reach the one-channel image
    with pytest.raises(RobustXAIError, match=r"\[B, 1, H, W\]"):
        model(torch.rand(1, 3, 32, 32))


def test_head_replacement_ignores_the_checkpoint_classifier(tmp_path: Path) -> None:
    torch.manual_seed(0)
    ref = torchvision.models.resnet18(num_classes=7)  # a classifier of another size than the new head
    torch.save(ref.state_dict(), tmp_path / "r.pt")
    model = rx.create_model(
        "torchvision:resnet18", num_classes=3, head="linear", checkpoint=str(tmp_path / "r.pt")
    )
    torch.testing.assert_close(model.net.layer4[1].conv2.weight, ref.layer4[1].conv2.weight)
    assert model.net.fc.out_features == 3


def test_timm_model_uses_its_own_normalisation() -> None:
    import timm

    model = rx.create_model("timm:resnet10t", num_classes=4, random_init=True).eval()
    cfg = timm.create_model("resnet10t").pretrained_cfg
    torch.testing.assert_close(model.mean.flatten(), torch.tensor(cfg["mean"], dtype=torch.float32))
    assert model.cam_layer == "layer4" and model(torch.rand(1, 3, 32, 32)).shape == (1, 4)


@pytest.mark.slow
def test_feature_layer_probe_matches_known_architectures() -> None:
    import timm

    assert find_feature_layer(torchvision.models.densenet121(), 3, 64)[0] == "features"
    assert find_feature_layer(torchvision.models.efficientnet_b0(), 3, 64)[0] == "features"
    assert find_feature_layer(timm.create_model("efficientnet_b0"), 3, 64)[0] == "bn2"
    vit = timm.create_model("vit_tiny_patch16_224")
    assert find_feature_layer(vit, 3, 224) == (None, None)  # a transformer has no conv feature map


def test_zoo_errors_are_one_line(tmp_path: Path) -> None:
    cases = [
        ({"checkpoint": str(tmp_path / "missing.pt")}, "checkpoint not found: .*missing.pt"),
        ({}, "needs weights: pass checkpoint=PATH"),
        ({"random_init": True, "allow_download": True}, "excludes"),
        ({"random_init": True, "head": "mlp", "num_classes": 2}, "head must be"),
        ({"random_init": True, "head": "linear"}, "needs num_classes"),
        ({"random_init": True, "freeze_backbone": True}, "freeze_backbone=True needs"),
        ({"random_init": True, "in_channels": 2}, "in_channels"),
    ]
    for kwargs, message in cases:
        with pytest.raises(RobustXAIError, match=message) as err:
            rx.create_model("torchvision:resnet18", **kwargs)
        assert "\n" not in str(err.value)
    with pytest.raises(RobustXAIError, match="close matches: resnet18"):
        rx.create_model("torchvision:resnet180", random_init=True)
    with pytest.raises(UnknownNameError, match="torchvision"):
        rx.create_model("torchvison:resnet18")
    with pytest.raises(UnknownNameError, match="checkpont"):
        rx.create_model("torchvision:resnet18", checkpont="x")
    torch.save(torchvision.models.resnet18(num_classes=3).state_dict(), tmp_path / "r3.pt")
    with pytest.raises(RobustXAIError, match="does not fit"):
        rx.create_model("torchvision:resnet18", num_classes=5, checkpoint=str(tmp_path / "r3.pt"))


def test_missing_zoo_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "timm", None)  # makes `import timm` fail
    with pytest.raises(RobustXAIError, match=r"pip install 'robustxai\[zoo\]'"):
        rx.create_model("timm:resnet10t", random_init=True)


@pytest.mark.slow
def test_wrap_model_any_module() -> None:
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=2).eval()
    model = wrap_model(net, ["a", "b"], mean=IMAGENET_MEAN, std=IMAGENET_STD)
    assert model.cam_layer == "layer4" and model.get_cam_layer() is net.layer4
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(model(x), net((x - model.mean) / model.std))
    with pytest.raises(RobustXAIError, match="not a sub-module"):
        wrap_model(net, ["a", "b"], cam_layer="layer9")
    with pytest.raises(RobustXAIError, match="nn.Module"):
        wrap_model("resnet", ["a", "b"])  # type: ignore[arg-type]
    with pytest.raises(RobustXAIError, match="registry spec"):
        rx.save_model(model, Path("unused"))


# --- RobustBench ----------------------------------------------------------------------------------------


def _robustbench_reference() -> nn.Module:
    from robustbench.model_zoo.architectures.dm_wide_resnet import (
        CIFAR10_MEAN,
        CIFAR10_STD,
        DMPreActResNet,
        Swish,
    )

    return DMPreActResNet(
        num_classes=10, depth=18, width=0, activation_fn=Swish, mean=CIFAR10_MEAN, std=CIFAR10_STD
    )


@pytest.mark.slow
def test_robustbench_reads_its_own_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = tmp_path / "cifar10" / "Linf" / f"{RB_ID}.pt"
    with pytest.raises(RobustXAIError, match=str(expected).replace("\\", "\\\\")):
        rx.create_model(f"robustbench:{RB_ID}", dataset="cifar10", model_dir=str(tmp_path))
    rx.create_model(f"robustbench:{RB_ID}", dataset="cifar10", random_init=True)  # imports robustbench
    torch.manual_seed(0)
    ref = _robustbench_reference().eval()
    expected.parent.mkdir(parents=True)
    torch.save({"state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()}}, expected)
    monkeypatch.setenv("ROBUSTXAI_MODEL_DIR", str(tmp_path))
    model = rx.create_model(f"robustbench:{RB_ID}", dataset="cifar10").eval()
    assert model.input_size == (32, 32) and model.cam_layer is not None
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(model(x), ref(x))  # no normalisation added: RobustBench models take [0, 1]
    with pytest.raises(RobustXAIError, match="use head='linear'"):
        rx.create_model(f"robustbench:{RB_ID}", dataset="cifar10", num_classes=2, random_init=True)
    with pytest.raises(RobustXAIError, match="close matches"):
        rx.create_model("robustbench:Rebuffi2021Fixing_R18", dataset="cifar10", random_init=True)


@pytest.mark.slow
def test_robustbench_standard_r50_builds_without_download() -> None:
    model = rx.create_model("robustbench:Standard_R50", random_init=True)
    assert model.num_classes == 1000 and model.cam_layer == "model.layer4"
    assert isinstance(model.net.model, torchvision.models.ResNet)
    assert torch.equal(model.mean.flatten(), torch.zeros(1))  # normalisation stays inside the network
