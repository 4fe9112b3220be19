"""Regression tests (issue 13): a saved model folder can never widen trust or end in a traceback.

A model folder may come from a colleague or a shared drive, so its ``model.json`` is hostile input: the keys
that decide where weights come from and whether a file may run code are the caller's alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

import robustxai as rx
from robustxai import RobustXAIError


class _Plant:
    """Pickles to ``open(path, "w")``: unpickling it with the full loader creates the file."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


def _saved(tmp_path: Path, name: str = "smallcnn", **kwargs: Any) -> Path:
    if ":" in name:
        kwargs["random_init"] = True
    model = rx.create_model(name, **kwargs)
    return rx.save_model(model, tmp_path / "model")


def _edit_spec(folder: Path, **changes: Any) -> Path:
    spec_path = folder / "model.json"
    doc = json.loads(spec_path.read_text())
    doc["spec"]["kwargs"].update(changes)
    spec_path.write_text(json.dumps(doc))
    return spec_path


def test_planted_pickle_really_runs_code_when_trusted(tmp_path: Path) -> None:
    """The payload of the tests below is live: the full unpickler does create the file."""
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": _Plant(marker)}, evil)
    with pytest.raises(Exception):  # noqa: B017  (what it returns is no state dict; only the side effect matters)
        rx.models.read_checkpoint(evil, trust_checkpoint=True)
    assert marker.exists()


def test_spec_that_trusts_a_pickle_never_runs_it(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": _Plant(marker)}, evil)
    folder = _saved(tmp_path, "timm:resnet10t", num_classes=2)
    spec_path = _edit_spec(folder, checkpoint=str(evil), trust_checkpoint=True, random_init=False)
    with pytest.raises(RobustXAIError) as err:
        rx.load_model(folder)
    assert not marker.exists(), "a stored spec made robustxai unpickle (and run) a planted file"
    msg = str(err.value)
    assert "\n" not in msg and str(spec_path) in msg and "'checkpoint'" in msg
    doc = json.loads(spec_path.read_text())
    del doc["spec"]["kwargs"]["checkpoint"], doc["spec"]["kwargs"]["random_init"]
    spec_path.write_text(json.dumps(doc))
    with pytest.raises(RobustXAIError, match="sets 'trust_checkpoint'"):  # the key alone is refused
        rx.models.read_model_meta(folder)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("allow_download", True),
        ("model_dir", "/elsewhere"),
        ("trust_checkpoint", False),
        ("checkpoint", None),
    ],
)
def test_spec_may_not_carry_trust_keys(tmp_path: Path, key: str, value: Any) -> None:
    folder = _saved(tmp_path, "timm:resnet10t", num_classes=2)
    spec_path = _edit_spec(folder, **{key: value})
    with pytest.raises(RobustXAIError, match=f"sets '{key}', which only the caller may set") as err:
        rx.load_model(folder)
    assert str(spec_path) in str(err.value)


def test_spec_keys_are_whitelisted(tmp_path: Path) -> None:
    folder = _saved(tmp_path, "timm:resnet10t", num_classes=2)
    _edit_spec(folder, pretrained_cfg_overlay={"file": "/etc/passwd"})
    with pytest.raises(RobustXAIError, match="'pretrained_cfg_overlay', which a saved timm:resnet10t model"):
        rx.load_model(folder)
    _edit_spec(folder, random_init=False)
    doc = json.loads((folder / "model.json").read_text())
    del doc["spec"]["kwargs"]["pretrained_cfg_overlay"]
    (folder / "model.json").write_text(json.dumps(doc))
    with pytest.raises(RobustXAIError, match="random_init must be true"):
        rx.load_model(folder)
    small = _saved(tmp_path / "s", widths=(4, 8, 8, 8))
    _edit_spec(small, checkpoint="x.pt")
    with pytest.raises(RobustXAIError, match="only the caller may set"):
        rx.load_model(small)


def test_saved_zoo_model_still_loads(tmp_path: Path) -> None:
    model = rx.create_model("timm:resnet10t", random_init=True, num_classes=2).eval()
    folder = rx.save_model(model, tmp_path / "m")
    loaded = rx.load_model(folder)
    x = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(loaded(x), model(x))


@pytest.mark.parametrize(
    "doc",
    [[], {"spec": []}, {"spec": {"name": 3}}, {"spec": {"name": "smallcnn", "kwargs": [1]}}, {"spec": "x"}],
)
def test_malformed_spec_is_one_line(tmp_path: Path, doc: Any) -> None:
    folder = _saved(tmp_path, widths=(4, 8, 8, 8))
    (folder / "model.json").write_text(json.dumps(doc))
    with pytest.raises(RobustXAIError, match="not a robustxai model spec"):
        rx.load_model(folder)


def test_spec_with_bad_value_types_is_one_line(tmp_path: Path) -> None:
    folder = _saved(tmp_path, widths=(4, 8, 8, 8))
    _edit_spec(folder, widths="wide")
    with pytest.raises(RobustXAIError, match="model.json: cannot build smallcnn"):
        rx.load_model(folder)


def test_spec_and_weights_of_other_shapes_name_the_tensor(tmp_path: Path) -> None:
    folder = _saved(tmp_path, widths=(4, 8, 8, 8), num_classes=2)
    _edit_spec(folder, num_classes=3, class_names=["a", "b", "c"])
    with pytest.raises(RobustXAIError) as err:
        rx.load_model(folder)
    msg = str(err.value)
    assert "\n" not in msg and str(folder / "model.safetensors") in msg
    assert "'net.head.weight'" in msg or "head" in msg
    assert "[2, 8]" in msg and "[3, 8]" in msg


def test_spec_naming_an_unknown_model_names_the_file(tmp_path: Path) -> None:
    folder = _saved(tmp_path, widths=(4, 8, 8, 8))
    doc = json.loads((folder / "model.json").read_text())
    doc["spec"]["name"] = "os.system"
    (folder / "model.json").write_text(json.dumps(doc))
    with pytest.raises(RobustXAIError, match="model.json: unknown model 'os.system'"):
        rx.load_model(folder)
