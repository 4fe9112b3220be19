"""Offline model zoo: torchvision, timm and RobustBench architectures with weights from local files.

Names are ``torchvision:<arch>``, ``timm:<name>`` and ``robustbench:<model_id>`` (through
:func:`robustxai.models.create_model`). Every network is built with random initialisation — never
``pretrained=True`` — and its weights come from:

- ``checkpoint=PATH``: a local file or directory (:func:`robustxai.models.read_checkpoint`: safetensors or
  ``torch.load(weights_only=True)``; a full pickle only with ``trust_checkpoint=True``);
- for RobustBench, by default the file where ``robustbench.utils.load_model`` keeps it:
  ``<model_dir>/<dataset>/<threat_model>/<model_id>.pt`` with ``model_dir`` = ``$ROBUSTXAI_MODEL_DIR`` or
  ``./models``;
- ``allow_download=True``: the library's own download (torchvision/timm pretrained weights, RobustBench's
  loader) — the only path that touches the network;
- ``random_init=True``: no weights (tests, training from scratch, and the rebuild of a saved model whose
  weights then come from its own ``model.safetensors``).

Normalisation moves into the :class:`~robustxai.models._wrapper.ModelWrapper`: ImageNet mean/std for
torchvision, the model's ``pretrained_cfg`` for timm, none for RobustBench (its models take [0, 1] images and
normalise inside). ``in_channels=1`` lets a 3-channel backbone take grayscale images: the wrapper repeats the
channel, so attacks and explanations stay in the one-channel image space. ``head`` replaces the classifier
(:mod:`robustxai.models._heads`); ``freeze_backbone=True`` makes a linear probe.

RobustBench note: ``import robustbench`` needs the ``autoattack`` package, which PyPI installs as
``pyautoattack``; when ``autoattack`` is missing, ``pyautoattack`` is registered under that name first.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import logging
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from types import ModuleType
from typing import Any, cast

from torch import nn

from robustxai._errors import RobustXAIError
from robustxai.models._heads import HEADS, Head, attach_head, find_feature_layer, freeze_all_but, last_linear
from robustxai.models._io import load_weights, read_checkpoint
from robustxai.models._registry import MODEL_FAMILIES, _class_names
from robustxai.models._tokens import native_hw, spatial_layer
from robustxai.models._wrapper import ModelWrapper, Task
from robustxai.models._zoo_offline import no_pretrained

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MODEL_DIR_ENV = "ROBUSTXAI_MODEL_DIR"
_ZOO_HINT = "pip install 'robustxai[zoo]'"
_RB_CLASSES = {"cifar10": 10, "cifar100": 100, "imagenet": 1000}
_RB_SIZE = {"cifar10": 32, "cifar100": 32, "imagenet": 224}


def _require(module: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise RobustXAIError(f"{module} needs the optional zoo extra ({err}); {_ZOO_HINT}") from None


def _robustbench_zoo() -> ModuleType:
    """Import ``robustbench.model_zoo``, registering ``pyautoattack`` as ``autoattack`` if that is missing."""
    if importlib.util.find_spec("autoattack") is None and importlib.util.find_spec("pyautoattack"):
        sys.modules.setdefault("autoattack", importlib.import_module("pyautoattack"))
        sys.modules.setdefault("autoattack.state", importlib.import_module("pyautoattack.state"))
    with warnings.catch_warnings():  # its imports warn about pkg_resources and torch.jit deprecations
        warnings.simplefilter("ignore")
        return _require("robustbench.model_zoo")


def default_model_dir() -> Path:
    """RobustBench checkpoint root: ``$ROBUSTXAI_MODEL_DIR`` or ``./models`` (RobustBench's default)."""
    return Path(os.environ.get(MODEL_DIR_ENV) or "models")


@dataclass
class _Options:
    """The keywords every zoo family shares, checked once."""

    name: str
    num_classes: int | None
    class_names: Sequence[str] | None
    head: str | None
    freeze_backbone: bool
    checkpoint: str | None
    random_init: bool
    allow_download: bool
    trust_checkpoint: bool
    in_channels: int
    task: Task
    dropout: float
    attention_heads: int

    def __post_init__(self) -> None:
        if self.num_classes is None and self.class_names is not None:
            self.num_classes = len(list(self.class_names))
        if self.head is not None and self.head not in HEADS:
            raise RobustXAIError(f"{self.name}: head must be {', '.join(HEADS)} or None, got {self.head!r}")
        if self.in_channels not in (1, 3):
            raise RobustXAIError(
                f"{self.name}: in_channels must be 1 (repeated inside) or 3, got {self.in_channels}"
            )
        k = self.num_classes
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise RobustXAIError(f"{self.name}: num_classes must be an integer ≥ 1, got {k!r}")
        if self.head is not None and k is None:
            raise RobustXAIError(f"{self.name}: head={self.head!r} needs num_classes (or class_names)")
        if self.head is None and self.freeze_backbone:
            raise RobustXAIError(f"{self.name}: freeze_backbone=True needs head='linear' or 'attention'")

    def source(self) -> str | None:
        """Where the weights come from: a path, ``"download"`` or ``None`` (random)."""
        if self.random_init:
            if self.checkpoint is not None or self.allow_download:
                raise RobustXAIError(f"{self.name}: random_init=True excludes checkpoint and allow_download")
            return None
        if self.checkpoint is not None:
            if not Path(self.checkpoint).exists():
                raise RobustXAIError(f"{self.name}: checkpoint not found: {self.checkpoint}")
            return str(self.checkpoint)
        if self.allow_download:
            return "download"
        raise RobustXAIError(
            f"{self.name} needs weights: pass checkpoint=PATH (CLI --checkpoint), allow_download=True "
            "(--allow-download) or random_init=True (--model-option random_init=true)"
        )

    def spec_kwargs(self) -> dict[str, object]:
        """Keywords that rebuild the architecture; the weights then come from the saved model."""
        keys = ("head", "freeze_backbone", "in_channels", "task", "dropout", "attention_heads")
        return {k: getattr(self, k) for k in keys} | {"random_init": True}


def _finish(
    opts: _Options,
    net: nn.Module,
    source: str | None,
    n_out: int,
    mean: Sequence[float],
    std: Sequence[float],
    classifier: str | None = None,
    probe_size: int = 64,
    input_size: tuple[int, int] | None = None,
    spec_extra: Mapping[str, object] | None = None,
) -> ModelWrapper:
    """Load weights, replace the head, freeze, wrap and record the spec that rebuilds the model."""
    if source not in (None, "download"):
        state = read_checkpoint(source, opts.trust_checkpoint)
        skip = (classifier or last_linear(net)) if opts.head else None
        load_weights(net, state, source, skip=skip)
    k = n_out
    if opts.head is None:
        cam, _ = find_feature_layer(net, 3, probe_size)
    else:
        k = int(opts.num_classes or 0)
        head = cast(Head, opts.head)
        net, head_path, cam = attach_head(
            net, head, k, 3, classifier, opts.dropout, opts.attention_heads, probe_size
        )
        if opts.freeze_backbone:
            freeze_all_but(net, head_path)
    cam, layout, prefix = spatial_layer(net, cam, native_hw(net, probe_size))  # a transformer: tokens
    names = _class_names(k, opts.class_names)
    kwargs = {**(spec_extra or {}), **opts.spec_kwargs(), "num_classes": k, "class_names": names}
    return ModelWrapper(
        net, class_names=names, mean=mean, std=std, task=opts.task, input_size=input_size,
        in_channels=opts.in_channels, cam_layer=cam, net_channels=3,
        spec={"name": opts.name, "kwargs": kwargs, "source": source}, cam_layout=layout, cam_prefix=prefix,
    )  # fmt: skip


def _unknown(kind: str, arch: str, known: Sequence[str]) -> RobustXAIError:
    close = difflib.get_close_matches(arch, list(known), n=3)
    return RobustXAIError(f"unknown {kind} model {arch!r}; close matches: {', '.join(close) or '(none)'}")


_COMMON_DOC = """
    Args:
        arch: The architecture (the part of the model name after the colon).
        num_classes: Outputs; with ``head=None`` the network keeps its own classifier of that size.
        class_names: One name per output (default ``class_<i>``).
        head: ``None`` (keep the classifier), ``"linear"`` or ``"attention"`` (a new head; the checkpoint's
            classifier is then ignored).
        freeze_backbone: Train only the new head (linear probe).
        checkpoint: Local weights (file or directory).
        random_init: Build without weights.
        allow_download: Let the library download its own weights when no checkpoint is given.
        trust_checkpoint: Allow a full-pickle checkpoint (it can run code).
        in_channels: 3, or 1 for grayscale images repeated to 3 channels inside the wrapper.
        task: ``"multiclass"`` or ``"multilabel"``.
        dropout: Dropout before the new linear layer (attention head: 0 means its default 0.5).
        attention_heads: Attention maps of the soft-attention head.
"""


@MODEL_FAMILIES.register("torchvision")
def torchvision_model(
    arch: str,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    head: str | None = None,
    freeze_backbone: bool = False,
    checkpoint: str | None = None,
    random_init: bool = False,
    allow_download: bool = False,
    trust_checkpoint: bool = False,
    in_channels: int = 3,
    task: Task = "multiclass",
    dropout: float = 0.0,
    attention_heads: int = 16,
) -> ModelWrapper:
    """A torchvision classifier (``resnet50``, ``densenet121``, ``efficientnet_b0`` …), ImageNet mean/std."""
    opts = _Options(f"torchvision:{arch}", *_args(locals()))
    models = _require("torchvision.models")
    source = opts.source()
    if arch not in models.list_models():
        raise _unknown("torchvision", arch, models.list_models())
    n_out = opts.num_classes if head is None and opts.num_classes else 1000
    try:
        net = models.get_model(arch, weights="DEFAULT" if source == "download" else None, num_classes=n_out)
    except ValueError as err:  # e.g. downloaded weights with another class count
        raise RobustXAIError(f"{opts.name}: {err}") from None
    return _finish(opts, net, source, n_out, IMAGENET_MEAN, IMAGENET_STD)


@MODEL_FAMILIES.register("timm")
def timm_model(
    arch: str,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    head: str | None = None,
    freeze_backbone: bool = False,
    checkpoint: str | None = None,
    random_init: bool = False,
    allow_download: bool = False,
    trust_checkpoint: bool = False,
    in_channels: int = 3,
    task: Task = "multiclass",
    dropout: float = 0.0,
    attention_heads: int = 16,
    model_kwargs: dict[str, object] | None = None,
) -> ModelWrapper:
    """A timm model (``resnet10t``, ``efficientnet_b0``, ``convnext_tiny``, ``vit_tiny_patch16_224`` …).

    Normalised by its own config. ``model_kwargs`` go to ``timm.create_model`` (e.g. ``img_size`` of a ViT
    or Swin at another resolution, ``depth``); a transformer's Grad-CAM layer is its token grid
    (:mod:`robustxai.models._tokens`).
    """
    opts = _Options(f"timm:{arch}", *_args(locals()))
    timm = _require("timm")
    source = opts.source()
    if not timm.is_model(arch):
        raise _unknown("timm", arch, timm.list_models())
    own = dict(model_kwargs or {})
    taken = sorted(set(own) & {"pretrained", "num_classes", "model_name"})
    if taken:
        raise RobustXAIError(f"{opts.name}: model_kwargs may not set {', '.join(taken)}")
    extra = {"num_classes": opts.num_classes} if head is None and opts.num_classes else {}
    try:
        net = timm.create_model(arch, pretrained=source == "download", **extra, **own)
    except TypeError as err:  # an unknown constructor keyword
        raise RobustXAIError(f"{opts.name}: model_kwargs: {err}") from None
    classifier = next((n for n, m in net.named_modules() if m is net.get_classifier()), None)
    cfg = getattr(net, "pretrained_cfg", None) or {}
    mean, std = tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD))
    spec = {"model_kwargs": own} if own else None
    return _finish(opts, net, source, int(net.num_classes), mean, std, classifier, spec_extra=spec)


def _args(scope: dict[str, Any]) -> list[Any]:
    """The shared keywords of a family factory, in :class:`_Options` order, from its ``locals()``."""
    return [scope[f.name] for f in fields(_Options)[1:]]


def _robustbench_net(arch: str, dataset: str, threat_model: str, download_dir: Path | None) -> nn.Module:
    zoo = _robustbench_zoo()
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    ds, tm = BenchmarkDataset(dataset), ThreatModel(threat_model)
    if download_dir is not None:
        from robustbench.utils import load_model as rb_load

        net: nn.Module = rb_load(arch, model_dir=str(download_dir), dataset=ds.value, threat_model=tm.value)
        return net
    timm_name = f"{arch.lower().replace('-', '_')}_{ds.value.lower()}_{tm.value.lower()}"
    timm = _require("timm")
    if timm.is_model(timm_name):  # RobustBench's own rule: such ids are timm models (e.g. XCiT)
        net = timm.create_model(timm_name, num_classes=_RB_CLASSES[ds.value], pretrained=False)
        return net
    entries = zoo.model_dicts[ds][tm]
    if arch not in entries:
        raise _unknown(f"RobustBench {ds.value}/{tm.value}", arch, list(entries))
    if isinstance(entries[arch]["gdrive_id"], list):
        raise RobustXAIError(
            f"RobustBench model {arch!r} is an ensemble of checkpoints, which is not supported"
        )
    mods = [sys.modules[m] for m in list(sys.modules) if m.startswith("robustbench.model_zoo.")]
    with no_pretrained(mods):
        net = entries[arch]["model"]()
    return net


@MODEL_FAMILIES.register("robustbench")
def robustbench_model(
    arch: str,
    dataset: str = "imagenet",
    threat_model: str = "Linf",
    model_dir: str | None = None,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    head: str | None = None,
    freeze_backbone: bool = False,
    checkpoint: str | None = None,
    random_init: bool = False,
    allow_download: bool = False,
    trust_checkpoint: bool = False,
    in_channels: int = 3,
    task: Task = "multiclass",
    dropout: float = 0.0,
    attention_heads: int = 16,
) -> ModelWrapper:
    """A RobustBench model by id (``Standard_R50``, ``Rebuffi2021Fixing_R18_ddpm`` …); it takes [0, 1] images.

    Without ``checkpoint``, weights are read from ``<model_dir>/<dataset>/<threat_model>/<arch>.pt`` (the
    layout of ``robustbench.utils.load_model``; ``model_dir`` defaults to ``$ROBUSTXAI_MODEL_DIR`` or
    ``./models``). ``dataset`` is ``imagenet``, ``cifar10`` or ``cifar100``; ``threat_model`` is ``Linf``,
    ``L2`` or ``corruptions``. Ensembles of several checkpoints are not supported.
    """
    opts = _Options(f"robustbench:{arch}", *_args(locals()))
    if dataset not in _RB_CLASSES or threat_model not in ("Linf", "L2", "corruptions"):
        raise RobustXAIError(
            f"{opts.name}: dataset must be one of {', '.join(_RB_CLASSES)} and threat_model Linf, L2 or "
            f"corruptions; got {dataset!r}, {threat_model!r}"
        )
    n_out = _RB_CLASSES[dataset]
    if head is None and opts.num_classes not in (None, n_out):
        raise RobustXAIError(
            f"{opts.name} has {n_out} outputs on {dataset}; use head='linear' for other classes"
        )
    root = Path(model_dir) if model_dir is not None else default_model_dir()
    expected = root / dataset / threat_model / f"{arch}.pt"
    if checkpoint is None and not random_init and not allow_download:
        if not expected.is_file():
            raise RobustXAIError(
                f"{opts.name}: no checkpoint at {expected} (put the RobustBench file there, or pass "
                f"checkpoint=PATH, model_dir=DIR / ${MODEL_DIR_ENV}, or allow_download=True)"
            )
        opts.checkpoint = str(expected)
    source = opts.source()
    net = _robustbench_net(arch, dataset, threat_model, root if source == "download" else None)
    extra = {"dataset": dataset, "threat_model": threat_model}
    size = _RB_SIZE[dataset]
    return _finish(opts, net, source, n_out, (0.0,), (1.0,), None, size, (size, size), extra)


for _factory in (torchvision_model, timm_model, robustbench_model):
    _factory.__doc__ = (_factory.__doc__ or "") + _COMMON_DOC
