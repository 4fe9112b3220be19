"""Model registry, wrapper contract and safe save/load."""

from __future__ import annotations

import json

import pytest
import torch

import robustxai as rx
from robustxai import RobustXAIError
from robustxai.models._attention import attention_maps

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = "tests internals of robustxai.models._attention"


@pytest.mark.parametrize("name", rx.list_models())
def test_wrapper_contract(name) -> None:
    model = rx.create_model(name, num_classes=3, widths=(4, 8, 8, 8)).eval()
    assert isinstance(model, rx.ModelWrapper)
    assert model.task == "multiclass" and model.num_classes == 3
    out = model(torch.rand(2, 1, 48, 48))
    assert out.shape == (2, 3)
    assert model.get_cam_layer() is not None


def test_normalisation_lives_inside_the_wrapper() -> None:
    model = rx.create_model("smallcnn", mean=(0.3,), std=(0.2,), widths=(4, 8, 8, 8)).eval()
    x = torch.rand(2, 1, 32, 32)
    torch.testing.assert_close(model(x), model.net((x - 0.3) / 0.2))


def test_wrong_channel_count_is_an_error() -> None:
    model = rx.create_model("smallcnn", widths=(4, 8, 8, 8))
    with pytest.raises(RobustXAIError, match=r"\[B, 1, H, W\]"):
        model(torch.rand(2, 3, 32, 32))


def test_attention_head_weights_sum_to_heads(tiny_attention_model) -> None:
    attn = attention_maps(tiny_attention_model, torch.rand(2, 1, 32, 32))
    torch.testing.assert_close(attn.sum(dim=(2, 3)), torch.full((2, 1), 16.0))
    assert not hasattr(tiny_attention_model.net.head, "last_attention")  # no per-call state on the module


def test_attention_maps_needs_an_attention_head() -> None:
    model = rx.create_model("smallcnn", widths=(4, 8, 8, 8))
    with pytest.raises(RobustXAIError, match="no soft-attention head"):
        attention_maps(model, torch.rand(1, 1, 32, 32))


@pytest.mark.parametrize("name", rx.list_models())
def test_save_load_roundtrip(name, tmp_path) -> None:
    torch.manual_seed(0)
    model = rx.create_model(name, class_names=["a", "b"], widths=(4, 8, 8, 8)).eval()
    rx.save_model(model, tmp_path / "m", meta={"note": "x"})
    assert (tmp_path / "m" / "model.safetensors").is_file()
    doc = json.loads((tmp_path / "m" / "model.json").read_text())
    assert doc["spec"]["name"] == name and doc["meta"] == {"note": "x"}
    loaded = rx.load_model(tmp_path / "m")
    x = torch.rand(3, 1, 32, 32)
    torch.testing.assert_close(loaded(x), model(x))
    assert loaded.class_names == ["a", "b"] and not loaded.training


def test_load_missing_model_is_clear(tmp_path) -> None:
    with pytest.raises(RobustXAIError, match="no saved model"):
        rx.load_model(tmp_path / "nothing")


def test_load_rejects_mismatched_weights(tmp_path) -> None:
    model = rx.create_model("smallcnn", widths=(4, 8, 8, 8))
    rx.save_model(model, tmp_path / "m")
    doc = json.loads((tmp_path / "m" / "model.json").read_text())
    doc["spec"]["kwargs"]["widths"] = [4, 8, 8, 16]
    (tmp_path / "m" / "model.json").write_text(json.dumps(doc))
    with pytest.raises((RobustXAIError, RuntimeError)):
        rx.load_model(tmp_path / "m")


def test_predict_restores_mode(tiny_model) -> None:
    tiny_model.train()
    preds = tiny_model.predict(torch.rand(5, 1, 32, 32), batch_size=2)
    assert preds.shape == (5,) and tiny_model.training


def test_corrupt_model_files_are_clear_errors(tmp_path) -> None:
    model = rx.create_model("smallcnn", widths=(4, 8, 8, 8))
    rx.save_model(model, tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(RobustXAIError, match="cannot read weights"):
        rx.load_model(tmp_path / "m")
    (tmp_path / "m" / "model.json").write_text("{broken")
    with pytest.raises(RobustXAIError, match="not a robustxai model spec"):
        rx.load_model(tmp_path / "m")


def test_attention_dropout_is_not_overridden() -> None:
    model = rx.create_model("smallcnn-attention", dropout=0.2, widths=(4, 8, 8, 8))
    assert model.net.head.dropout.p == 0.2


def test_saved_meta_that_is_not_an_object_is_a_clear_error(tmp_path) -> None:
    """``read_model_meta`` returns a mapping or says why not (a stray ``"meta": [1]`` is no mapping)."""
    rx.save_model(rx.create_model("smallcnn", num_classes=2), tmp_path / "m", meta={"note": "x"})
    assert rx.models.read_model_meta(tmp_path / "m") == {"note": "x"}
    spec = tmp_path / "m" / "model.json"
    spec.write_text(json.dumps({**json.loads(spec.read_text()), "meta": [1]}))
    with pytest.raises(RobustXAIError, match="meta must be an object"):
        rx.models.read_model_meta(tmp_path / "m")
