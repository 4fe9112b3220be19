"""Safe model persistence: safetensors weights plus a JSON spec, never a pickle.

A saved model is a directory holding ``model.safetensors`` (all parameters and buffers) and ``model.json``
(the registry name and keywords that rebuild the architecture, plus free-form training metadata).

:func:`read_checkpoint` reads third-party weights (torchvision, timm, RobustBench, a training script's
``torch.save``) as a plain state dict: safetensors, or ``torch.load(weights_only=True)``, which cannot run
code; a full pickle is refused unless the caller says it trusts the file.
"""

from __future__ import annotations

import json
import pickle
import tarfile
import zipfile
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from robustxai._errors import RobustXAIError, first_line
from robustxai._types import JsonValue
from robustxai.models._registry import MODELS, create_model
from robustxai.models._wrapper import ModelWrapper

WEIGHTS = "model.safetensors"
SPEC = "model.json"
FORMAT = "robustxai-model/1"
#: Keywords only the caller may pass (CLI flag or Python argument); a stored spec setting one is refused.
TRUST_KEYS = ("checkpoint", "allow_download", "trust_checkpoint", "model_dir")
#: Keywords a saved zoo model's spec may carry (what :meth:`robustxai.models._zoo._Options.spec_kwargs` and
#: the
#: family factories record): the architecture, never where weights come from.
ZOO_SPEC_KEYS = frozenset(
    {"num_classes", "class_names", "head", "freeze_backbone", "in_channels", "task", "dropout",
     "attention_heads", "random_init", "dataset", "threat_model"}
)  # fmt: skip

# File names tried, in order, when a checkpoint is a directory (robustxai, Hugging Face / timm, scripts).
CHECKPOINT_NAMES = ("model.safetensors", "pytorch_model.bin", "model.pt", "model.pth", "checkpoint.pth")
CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt", ".tar")
# Keys under which training scripts nest the weights (RobustBench's loader unwraps "state_dict" and "last").
_NESTING_KEYS = ("state_dict", "model_state_dict", "model", "net", "last")
# Prefixes added by DataParallel / DistributedDataParallel and torch.compile.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def save_model(model: ModelWrapper, directory: str | Path, meta: Mapping[str, object] | None = None) -> Path:
    """Write ``model`` to ``directory`` (created if needed) and return the directory."""
    if not model.spec.get("name"):
        raise RobustXAIError("model has no registry spec; only registry-built models can be saved")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / WEIGHTS))
    doc = {"format": FORMAT, "spec": model.spec, "meta": meta or {}}
    (out / SPEC).write_text(json.dumps(doc, indent=2, sort_keys=True))
    return out


def read_model_meta(directory: str | Path) -> dict[str, JsonValue]:
    """Return the metadata stored next to a saved model.

    Raises:
        RobustXAIError: For a missing or malformed spec, or metadata that is not a JSON object.
    """
    saved = _read_spec(Path(directory))
    if not isinstance(saved.meta, dict):
        raise RobustXAIError(f"{Path(directory) / SPEC}: meta must be an object, got {saved.meta!r}")
    return saved.meta


@dataclass(frozen=True)
class _SavedSpec:
    """What a saved model's ``model.json`` holds: the registry name, its keywords and free-form metadata."""

    name: str
    kwargs: dict[str, JsonValue]
    meta: JsonValue


def _read_spec(directory: Path) -> _SavedSpec:
    spec_path = directory / SPEC
    if not spec_path.is_file() or not (directory / WEIGHTS).is_file():
        raise RobustXAIError(f"no saved model at {directory} (expected {SPEC} and {WEIGHTS})")
    try:
        doc = json.loads(spec_path.read_text(encoding="utf-8"))
        spec, kwargs = doc["spec"], doc["spec"].get("kwargs", {})
        name = spec["name"]
        if not isinstance(name, str) or not isinstance(kwargs, dict):
            raise TypeError("spec.name must be a string and spec.kwargs an object")
        saved = _SavedSpec(name, kwargs, doc.get("meta", {}))
    except (ValueError, KeyError, TypeError, AttributeError, OSError) as err:
        raise RobustXAIError(f"{spec_path} is not a robustxai model spec ({err})") from None
    if doc.get("format", FORMAT) != FORMAT:
        raise RobustXAIError(f"{spec_path} has format {doc.get('format')!r}; this version reads {FORMAT!r}")
    _check_stored_kwargs(saved.name, saved.kwargs, spec_path)
    return saved


def _check_stored_kwargs(name: str, kwargs: Mapping[str, object], spec_path: Path) -> None:
    """Refuse stored keywords outside the whitelist, so a spec on disk can never widen trust.

    Why: a model folder may come from a colleague or a shared drive. Where weights come from and whether a
    file may run code (``checkpoint``, ``allow_download``, ``trust_checkpoint``, ``model_dir``) is the
    caller's decision; a saved model's weights always come from its own ``model.safetensors``.
    """
    for key in sorted(kwargs):
        if key in TRUST_KEYS:
            raise RobustXAIError(
                f"{spec_path}: spec.kwargs sets {key!r}, which only the caller may set (a saved model's "
                f"weights come from its {WEIGHTS}); refusing to load it"
            )
    if ":" in name:
        allowed: Collection[str] = ZOO_SPEC_KEYS
        if kwargs.get("random_init", True) is not True:
            raise RobustXAIError(f"{spec_path}: spec.kwargs.random_init must be true in a saved zoo model")
    elif name not in MODELS:
        raise RobustXAIError(f"{spec_path}: unknown model {name!r}; known: {', '.join(MODELS.names())}")
    else:
        allowed = set(MODELS.parameters(name)) - set(TRUST_KEYS)
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise RobustXAIError(
            f"{spec_path}: spec.kwargs holds key {unknown[0]!r}, which a saved {name} model may not carry "
            f"(allowed: {', '.join(sorted(allowed))})"
        )


def load_model(directory: str | Path) -> ModelWrapper:
    """Rebuild a model saved by :func:`save_model` and load its weights, in eval mode.

    The stored spec may only carry the keywords that shape the architecture (:data:`ZOO_SPEC_KEYS`, or a
    built-in model's own keywords), never one of :data:`TRUST_KEYS`: loading a model folder reads its
    ``model.safetensors`` and nothing else, and runs no code from it.

    Raises:
        RobustXAIError: One line naming the file for a missing, malformed or over-reaching spec, unreadable
            weights, or weights that do not fit the spec (the tensor and both shapes).
    """
    path = Path(directory)
    saved = _read_spec(path)
    name = saved.name
    kwargs = dict(saved.kwargs)
    if ":" in name:
        kwargs["random_init"] = True  # a saved zoo model's weights come from model.safetensors only
    _check_size_before_build(name, kwargs, path)
    try:
        model = create_model(name, **kwargs)
    except RobustXAIError as err:
        raise RobustXAIError(f"{path / SPEC}: {err}") from None
    except (TypeError, ValueError, RuntimeError, OverflowError, MemoryError) as err:
        raise RobustXAIError(f"{path / SPEC}: cannot build {name} ({type(err).__name__}: {err})") from None
    try:
        state = load_file(str(path / WEIGHTS))
    except Exception as err:  # safetensors raises its own error type for corrupt files
        raise RobustXAIError(f"cannot read weights {path / WEIGHTS}: {err}") from None
    _check_state(model, state, path / WEIGHTS, name)
    model.load_state_dict(state, strict=False)
    return model.eval()


def _header_shapes(file: Path) -> dict[str, tuple[int, ...]]:
    """Tensor shapes from a safetensors header, without reading (or allocating) the tensors."""
    try:
        with safe_open(str(file), framework="pt") as handle:
            return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}  # noqa: SIM118
    except Exception as err:  # safetensors raises its own error type for corrupt files
        raise RobustXAIError(f"cannot read weights {file}: {err}") from None


def _check_size_before_build(name: str, kwargs: Mapping[str, object], path: Path) -> None:
    """Refuse a spec that disagrees with its weights file before any real memory is allocated.

    Why: a hostile ``model.json`` may ask for huge layers (``widths = [100000, …]``) that the whitelist
    allows; built for real, it would try to allocate tens of GB. The model is first built on PyTorch's
    ``meta`` device (shapes only, no storage) and compared with the shapes in the safetensors header, so
    the memory a saved model can claim is bounded by the size of its own weights file. Architectures that
    cannot be built on ``meta`` fall back to the normal build and the check after loading.
    """
    try:
        with torch.device("meta"):
            shell = create_model(name, **kwargs)
    except Exception:  # noqa: BLE001 - some constructors need real tensors; the later check still applies
        return
    own = {key: tuple(value.shape) for key, value in shell.state_dict().items()}
    stored = _header_shapes(path / WEIGHTS)
    for key, shape in own.items():
        if key in stored and stored[key] != shape:
            raise RobustXAIError(
                f"weights in {path / WEIGHTS} do not match the spec of {name}: tensor {key!r} has shape "
                f"{list(stored[key])} in the file but {list(shape)} in the model its {SPEC} describes"
            )
    missing = [key for key in own if key not in stored]
    if missing:
        raise RobustXAIError(f"weights in {path / WEIGHTS} do not match {name}: missing {missing[:5]}")


def _check_state(model: torch.nn.Module, state: dict[str, torch.Tensor], file: Path, name: str) -> None:
    """Raise one line if ``state`` misses, adds or reshapes a tensor of ``model`` (before torch would)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise RobustXAIError(
            f"weights in {file} do not match {name}: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    for key, value in own.items():
        if tuple(state[key].shape) != tuple(value.shape):
            raise RobustXAIError(
                f"weights in {file} do not match the spec of {name}: tensor {key!r} has shape "
                f"{list(state[key].shape)} in the file but {list(value.shape)} in the model its "
                f"{SPEC} describes"
            )


def _checkpoint_file(path: Path) -> Path:
    if path.is_file():
        return path
    if not path.exists():
        raise RobustXAIError(f"checkpoint not found: {path}")
    for name in CHECKPOINT_NAMES:
        if (path / name).is_file():
            return path / name
    found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in CHECKPOINT_SUFFIXES)
    if len(found) == 1:
        return found[0]
    raise RobustXAIError(
        f"checkpoint directory {path} holds {len(found)} weight files; expected one of "
        f"{', '.join(CHECKPOINT_NAMES)} or a single *{'/*'.join(CHECKPOINT_SUFFIXES)} file"
    )


def _unwrap(obj: object, file: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    while isinstance(obj, dict):
        nested = [k for k in _NESTING_KEYS if isinstance(obj.get(k), (dict, torch.nn.Module))]
        if not nested or all(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        obj = obj[nested[0]]
        if isinstance(obj, torch.nn.Module):
            obj = obj.state_dict()
    if not isinstance(obj, dict):
        raise RobustXAIError(f"{file} holds a {type(obj).__name__}, not a state dict of tensors")
    state = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise RobustXAIError(f"{file} holds no tensors (keys: {', '.join(map(str, list(obj)[:8]))})")
    for prefix in _WRAPPER_PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def check_checkpoint_file(path: str | Path) -> None:
    """Refuse a weight file that cannot be read, without loading its tensors or unpickling anything.

    The cost plan times a model of the configured architecture with random weights and never reads its
    checkpoint (a pickle might run code); this cheaper look — a safetensors header, a torch zip archive's
    directory — still lets ``robustxai plan`` refuse an empty, truncated or garbage file before the audit
    trains anything. A legacy (non-zip) ``torch.save`` file is only checked to be non-empty.

    Raises:
        RobustXAIError: ``cannot read checkpoint …``, as :func:`read_checkpoint` would say.
    """
    file = _checkpoint_file(Path(path))
    try:
        if file.stat().st_size == 0:
            raise ValueError("the file is empty")
        if file.suffix == ".safetensors":
            with safe_open(str(file), framework="pt") as f:
                f.keys()
        elif zipfile.is_zipfile(file):
            with zipfile.ZipFile(file) as z:
                if not any(n.endswith("data.pkl") for n in z.namelist()):
                    raise ValueError("a zip archive without torch's data.pkl")
        else:
            with file.open("rb") as f:
                head = f.read(2)
            if head == b"PK":
                raise ValueError("a zip archive cut short (its directory is missing)")
            if head[:1] != b"\x80" and not tarfile.is_tarfile(file):  # no zip, pickle or old torch tar
                raise ValueError("neither a torch zip archive nor a pickle")
    except RobustXAIError:
        raise
    except Exception as err:  # OSError, ValueError, zipfile.BadZipFile, safetensors' own error
        raise _unreadable(file, err) from None


def _unreadable(file: Path, err: Exception) -> RobustXAIError:
    """``cannot read checkpoint FILE: Type: first line`` (explaining the bare EOFError of an empty file)."""
    first = first_line(err)
    if not first and isinstance(err, EOFError):
        first = "the file ends before its data does (empty or cut short)"
    why = f"{type(err).__name__}: {first}" if first else type(err).__name__
    return RobustXAIError(f"cannot read checkpoint {file}: {why}")


def read_checkpoint(path: str | Path, trust_checkpoint: bool = False) -> dict[str, torch.Tensor]:
    """Read a local checkpoint file or directory as a flat state dict of CPU tensors.

    Why this is strict: ``torch.load`` of an arbitrary pickle can execute code, so files are read with
    safetensors or ``weights_only=True``; a checkpoint that needs the full unpickler (a saved ``nn.Module``,
    custom classes) is only read with ``trust_checkpoint=True``. The usual wrappers are removed: nesting under
    ``state_dict`` / ``model`` / ``net`` …, and ``module.`` / ``_orig_mod.`` key prefixes. A robustxai saved
    model directory gives the state of its network (``net.`` prefix and wrapper buffers removed).

    Args:
        path: A weight file (``.safetensors``, ``.pt``, ``.pth``, ``.bin`` …) or a directory holding one.
        trust_checkpoint: Allow the full pickle loader for files that need it (runs code from the file).

    Raises:
        RobustXAIError: If the file is missing, unreadable, untrusted pickle or holds no tensors.
    """
    file = _checkpoint_file(Path(path))
    try:
        if file.suffix == ".safetensors":
            obj: object = load_file(str(file))
        else:
            try:
                obj = torch.load(file, map_location="cpu", weights_only=True)
            except pickle.UnpicklingError as err:
                if not trust_checkpoint and "Unsupported global" not in str(err):
                    raise RobustXAIError(  # garbage, or a construct torch's safe loader does not know
                        f"cannot read checkpoint {file} as weights only (a trusted full pickle needs "
                        "trust_checkpoint=True)"
                    ) from None
                if not trust_checkpoint:
                    raise RobustXAIError(
                        f"{file} is a full pickle, which can run arbitrary code when loaded; pass "
                        "trust_checkpoint=True (CLI: --trust-checkpoint) only if you trust where it came from"
                    ) from None
                obj = torch.load(file, map_location="cpu", weights_only=False)
    except RobustXAIError:
        raise
    except Exception as err:  # corrupt archives raise RuntimeError, EOFError, safetensors' own error …
        raise _unreadable(file, err) from None
    state = _unwrap(obj, file)
    if file.name == WEIGHTS and (file.parent / SPEC).is_file():  # a robustxai saved model
        state = {k[4:]: v for k, v in state.items() if k.startswith("net.")}
    return state


def _align(state: dict[str, torch.Tensor], expected: set[str]) -> dict[str, torch.Tensor]:
    """Add or remove a ``model.`` key prefix when that makes the checkpoint match the network better."""
    candidates = [state]
    if all(k.startswith("model.") for k in state):
        candidates.append({k[len("model.") :]: v for k, v in state.items()})
    candidates.append({f"model.{k}": v for k, v in state.items()})
    return max(candidates, key=lambda s: len(expected & set(s)))


def load_weights(
    net: torch.nn.Module, state: dict[str, torch.Tensor], source: str, skip: str | None = None
) -> None:
    """Load ``state`` into ``net`` strictly, except the sub-module ``skip`` (a classifier to be replaced).

    Raises:
        RobustXAIError: One line naming how many keys are missing, unexpected or of the wrong shape.
    """
    own = net.state_dict()
    state = _align(state, set(own))

    def skipped(key: str) -> bool:
        return skip is not None and key.startswith(skip + ".")

    state = {k: v for k, v in state.items() if not skipped(k)}
    missing = [k for k in own if k not in state and not skipped(k) and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        raise RobustXAIError(
            f"checkpoint {source} does not fit {type(net).__name__}: {len(missing)} missing "
            f"{missing[:3]}, {len(unexpected)} unexpected {unexpected[:3]}, {len(shapes)} of another shape "
            f"{shapes[:3]}"
        )
    net.load_state_dict(state, strict=False)
