"""A saved model's spec cannot make robustxai allocate more than its own weights file holds.

Regression: ``model.json`` could ask for huge layers (the whitelist allows ``widths``); the model was built
for real before its weights were compared with the spec, so a 2 KB spec could claim gigabytes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import robustxai as rx
from robustxai.models import load_model, save_model

PROBE = """
import resource, sys
import robustxai as rx
from robustxai.models._io import load_model
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    load_model(sys.argv[1])
except rx.RobustXAIError as err:
    print("refused:", err)
print("grew_mb", (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
"""


def _saved(tmp_path: Path, widths: list[int]) -> Path:
    model = rx.create_model("smallcnn", widths=(4, 8, 8, 8), class_names=["a", "b"]).eval()
    out = save_model(model, tmp_path / "model")
    doc = json.loads((out / "model.json").read_text())
    doc["spec"]["kwargs"]["widths"] = widths
    (out / "model.json").write_text(json.dumps(doc))
    return out


def test_oversized_spec_is_refused_before_allocating(tmp_path: Path) -> None:
    # Two convolutions of 4096 x 4096 x 3 x 3 float32 would be about 1.2 GB if built for real.
    out = _saved(tmp_path, [4, 4096, 4096, 4096])
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(out)], capture_output=True, text=True, timeout=120
    )
    assert "refused:" in done.stdout, done.stdout + done.stderr
    assert "net.features.1" in done.stdout and "4096" in done.stdout
    grew = float(done.stdout.rsplit("grew_mb", 1)[1])
    assert grew < 200, f"loading a refused spec grew the process by {grew:.0f} MB"


def test_spec_and_weights_that_agree_still_load(tmp_path: Path) -> None:
    out = _saved(tmp_path, [4, 8, 8, 8])
    assert load_model(out).spec["kwargs"]["widths"] == [4, 8, 8, 8]


def test_one_line_error_names_file_and_tensor(tmp_path: Path) -> None:
    out = _saved(tmp_path, [6, 8, 8, 8])
    with pytest.raises(rx.RobustXAIError) as err:
        load_model(out)
    message = str(err.value)
    assert "\n" not in message and "model.safetensors" in message and "[6, 1, 3, 3]" in message
