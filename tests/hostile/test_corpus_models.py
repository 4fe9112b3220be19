"""Hostile corpus: saved models (safetensors + model.json) and third-party checkpoints (pickles)."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from _cases import CLASSES, PENDING_H1, Case, Workspace, params, run_case
from typer.testing import Result

import robustxai as rx

MARKER = "PWNED"  # the file a malicious pickle would create next to the workspace's inputs


class Payload:
    """Unpickling this calls ``open(marker, "w")``: code from the file, run by the loader."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (self.marker, "w"))


def malicious_pickle(ws: Workspace) -> Path:
    """A torch checkpoint whose unpickling would create :data:`MARKER` in the workspace."""
    path = ws.root / "evil.pt"
    torch.save({"w": torch.ones(2), "x": Payload(str(ws.root / MARKER))}, path)
    return path


def never_executed(ws: Workspace, result: Result) -> None:
    assert not (ws.root / MARKER).exists(), "the pickle's code ran"


def weights(change: Callable[[bytes], bytes]) -> Callable[[Workspace], None]:
    """The saved model's ``model.safetensors`` replaced by ``change(bytes)``."""

    def build(ws: Workspace) -> None:
        path = ws.ckpt / "model.safetensors"
        path.write_bytes(change(path.read_bytes()))

    return build


def spec(change: Callable[[dict[str, Any]], Any] | str) -> Callable[[Workspace], None]:
    """The saved model's ``model.json`` replaced by ``change(document)`` (or by the text ``change``)."""

    def build(ws: Workspace) -> None:
        path = ws.ckpt / "model.json"
        if isinstance(change, str):
            path.write_text(change)
        else:
            path.write_text(json.dumps(change(json.loads(path.read_text()))))

    return build


def kwargs(**extra: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A model.json whose spec.kwargs gain ``extra``."""

    def change(doc: dict[str, Any]) -> dict[str, Any]:
        doc["spec"]["kwargs"] = {**doc["spec"].get("kwargs", {}), **extra}
        return doc

    return change


def header_length(n: int) -> Callable[[bytes], bytes]:
    """A safetensors file whose 8-byte header length is ``n``."""
    return lambda b: struct.pack("<Q", n) + b[8:]


def tamper_header(b: bytes) -> bytes:
    n = struct.unpack("<Q", b[:8])[0]
    header = b[8 : 8 + n].replace(b'"F32"', b'"I64"', 1)
    return b[:8] + header + b[8 + n :]


def renamed_tensor(b: bytes) -> bytes:
    n = struct.unpack("<Q", b[:8])[0]
    header = b[8 : 8 + n].replace(b'"net.', b'"nut.', 1)
    return b[:8] + header + b[8 + n :]


def zoo_checkpoint(ws: Workspace) -> None:
    """A torchvision model whose checkpoint is a malicious full pickle (no --trust-checkpoint)."""
    ws.cfg["models"] = [
        {
            "name": "zoo",
            "arch": "torchvision:resnet18",
            "training": "none",
            "arch_kwargs": {"checkpoint": str(malicious_pickle(ws))},
        }
    ]


def spec_widens_trust(ws: Workspace) -> None:
    """A saved model whose model.json asks to load a full pickle with trust (only the caller may)."""
    doc = json.loads((ws.ckpt / "model.json").read_text())
    doc["spec"] = {
        "name": "torchvision:resnet18",
        "kwargs": {
            "num_classes": 2,
            "class_names": CLASSES,
            "in_channels": 1,
            "checkpoint": str(malicious_pickle(ws)),
            "trust_checkpoint": True,
        },
    }
    (ws.ckpt / "model.json").write_text(json.dumps(doc))


def nan_model(ws: Workspace) -> None:
    """A second model whose weights are NaN: it fails alone, named; the first is audited."""
    model = rx.load_model(ws.ckpt)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    rx.save_model(model, ws.root / "nan_ckpt")
    ws.cfg["models"].append({"name": "bad", "checkpoint": str(ws.root / "nan_ckpt")})


def garbage_checkpoint(suffix: str, content: bytes) -> Callable[[Workspace], None]:
    def build(ws: Workspace) -> None:
        path = ws.root / f"weights{suffix}"
        path.write_bytes(content)
        ws.cfg["models"] = [
            {
                "name": "zoo",
                "arch": "torchvision:resnet18",
                "training": "none",
                "arch_kwargs": {"checkpoint": str(path)},
            }
        ]

    return build


CKPT_CASES = [
    Case("st-truncated", weights(lambda b: b[: len(b) // 2]), "error", "cannot read weights"),
    Case("st-zero-byte", weights(lambda b: b""), "error", "cannot read weights"),
    Case("st-header-length-huge", weights(header_length(2**62)), "error", "cannot read weights"),
    Case("st-header-length-zero", weights(header_length(0)), "error", "cannot read weights"),
    Case("st-header-garbage", weights(lambda b: b[:8] + b"{" * 20 + b[28:]), "error", "cannot read weights"),
    Case("st-dtype-tampered", weights(tamper_header), "error", "cannot read weights"),
    Case("st-renamed-tensor", weights(renamed_tensor), "error", "do not match"),
    Case("spec-not-json", spec("{"), "error", "is not a robustxai model spec"),
    Case("spec-top-level-list", spec("[]"), "error", "is not a robustxai model spec"),
    Case("spec-no-spec", spec(lambda d: {"format": d["format"]}), "error", "is not a robustxai model spec"),
    Case(
        "spec-spec-string",
        spec(lambda d: {**d, "spec": "smallcnn"}),
        "error",
        "is not a robustxai model spec",
    ),
    Case("spec-unknown-arch", spec(lambda d: {**d, "spec": {"name": "os.system"}}), "error", "unknown model"),
    Case(
        "spec-kwargs-list",
        spec(lambda d: {**d, "spec": {**d["spec"], "kwargs": [1]}}),
        "error",
        "model.json",
        PENDING_H1,
    ),
    Case("spec-kwargs-bad-type", spec(kwargs(widths="abc")), "error", "model.json", PENDING_H1),
    Case("spec-kwargs-unknown", spec(kwargs(colour=1)), "error", "colour"),
    Case(
        "spec-shape-mismatch",
        spec(kwargs(num_classes=3, class_names=["a", "b", "c"])),
        "error",
        "has shape",
        PENDING_H1,
    ),
    Case(
        "spec-widens-trust", spec_widens_trust, "error", "only the caller may set", PENDING_H1, never_executed
    ),
    Case(
        "spec-missing-weights", lambda ws: (ws.ckpt / "model.safetensors").unlink(), "error", "no saved model"
    ),
    Case("ckpt-untrusted-pickle", zoo_checkpoint, "error", "full pickle", check=never_executed),
    Case("ckpt-garbage-pt", garbage_checkpoint(".pt", b"\x80\x04garbage"), "error", "cannot read checkpoint"),
    Case("ckpt-zero-byte-pt", garbage_checkpoint(".pth", b""), "error", "the file is empty"),
    Case(
        "ckpt-text-safetensors",
        garbage_checkpoint(".safetensors", b"hello"),
        "error",
        "cannot read checkpoint",
    ),
    Case("model-nan-weights", nan_model, "partial", "model 'bad'", PENDING_H1),
]


@pytest.mark.parametrize("case", params(CKPT_CASES))
def test_checkpoints(case: Case, ws: Workspace, caplog: pytest.LogCaptureFixture) -> None:
    run_case(case, ws, caplog)
