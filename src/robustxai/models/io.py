"""Safe model persistence: safetensors weights plus a JSON spec, never a pickle.

A saved model is a directory holding ``model.safetensors`` (all parameters and buffers) and ``model.json``
(the registry name and keywords that rebuild the architecture, plus free-form training metadata).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from robustxai.errors import RobustXAIError
from robustxai.models.registry import create_model
from robustxai.models.wrapper import ModelWrapper

WEIGHTS = "model.safetensors"
SPEC = "model.json"


def save_model(model: ModelWrapper, directory: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Write ``model`` to ``directory`` (created if needed) and return the directory."""
    if not model.spec.get("name"):
        raise RobustXAIError("model has no registry spec; only registry-built models can be saved")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / WEIGHTS))
    doc = {"format": "robustxai-model/1", "spec": model.spec, "meta": meta or {}}
    (out / SPEC).write_text(json.dumps(doc, indent=2, sort_keys=True))
    return out


def read_model_meta(directory: str | Path) -> dict[str, Any]:
    """Return the metadata stored next to a saved model."""
    doc = _read_spec(Path(directory))
    meta: dict[str, Any] = doc.get("meta", {})
    return meta


def _read_spec(directory: Path) -> dict[str, Any]:
    spec_path = directory / SPEC
    if not spec_path.is_file() or not (directory / WEIGHTS).is_file():
        raise RobustXAIError(f"no saved model at {directory} (expected {SPEC} and {WEIGHTS})")
    try:
        doc: dict[str, Any] = json.loads(spec_path.read_text())
        doc["spec"]["name"]
    except (ValueError, KeyError, TypeError) as err:
        raise RobustXAIError(f"{spec_path} is not a robustxai model spec ({err})") from None
    return doc


def load_model(directory: str | Path) -> ModelWrapper:
    """Rebuild a model saved by :func:`save_model` and load its weights, in eval mode."""
    path = Path(directory)
    doc = _read_spec(path)
    spec = doc["spec"]
    model = create_model(spec["name"], **spec.get("kwargs", {}))
    try:
        state = load_file(str(path / WEIGHTS))
    except Exception as err:  # safetensors raises its own error type for corrupt files
        raise RobustXAIError(f"cannot read weights {path / WEIGHTS}: {err}") from None
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise RobustXAIError(
            f"weights in {path} do not match {spec['name']}: missing {missing}, unexpected {unexpected}"
        )
    return model.eval()
