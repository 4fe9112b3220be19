"""The model wrapper contract of DESIGN.md.

A :class:`ModelWrapper` takes images in [0, 1] and returns logits. It owns the normalisation (so attacks and
ε are always in pixel space), and knows its task, class names, input size and the layer Grad-CAM uses.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Literal

import torch
from torch import nn

from robustxai._errors import NotApplicableError, RobustXAIError
from robustxai._validate import check_images
from robustxai.models._tokens import CAM_LAYOUTS

Task = Literal["multiclass", "multilabel"]
#: Forward-pass precisions (:meth:`ModelWrapper.set_precision`): the autocast type of each; float32: none.
PRECISIONS: dict[str, torch.dtype | None] = {
    "float32": None,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


def forward_dtype(model: nn.Module) -> torch.dtype | None:
    """The autocast type of ``model``'s forward passes (:meth:`ModelWrapper.set_precision`); None: float32.

    Callers that judge a float32 tolerance (DeepLIFT's completeness check, a traced-graph comparison) read it
    so that half-precision rounding is not mistaken for a defect of the model.
    """
    return PRECISIONS.get(getattr(model, "precision", "float32"))


@contextmanager
def full_precision(model: nn.Module) -> Iterator[nn.Module]:
    """Run ``model``'s forward passes in float32 inside the block (restored after), whatever its precision.

    For engines that compute in float32 themselves (the incremental occlusion engine runs a float32 trace of
    the network) and check their result against the model's own forward pass: under autocast that pass would
    differ by half-precision rounding, not by an engine error. A model without a precision is left alone.
    """
    before = getattr(model, "precision", None)
    if before is None or before == "float32":
        yield model
        return
    setattr(model, "precision", "float32")  # noqa: B010 (an nn.Module attribute that is not a tensor)
    try:
        yield model
    finally:
        setattr(model, "precision", before)  # noqa: B010


def find_submodule(root: nn.Module, path: str, missing: str) -> nn.Module:
    """Return the sub-module at dotted ``path`` in ``root``, or raise ``missing`` as a one-line error."""
    found = _in(root, path)
    if found is None:
        raise RobustXAIError(missing)
    return found


def _in(root: nn.Module, path: str) -> nn.Module | None:
    """The sub-module at dotted ``path`` in ``root``, or ``None``."""
    try:
        return root.get_submodule(path)
    except AttributeError:
        return None


def cam_layer(model: nn.Module, layer: str | None, keyword: str = "layer") -> nn.Module:
    """The layer Grad-CAM uses: ``layer`` (a dotted path in ``model``) or the wrapper's declared one.

    A path in a wrapper's network also works without its ``net.`` prefix (``"blocks.11.norm1"``, as the
    wrapper's ``cam_layer`` names it), where the wrapper itself has no module of that name.

    Shared by the Grad-CAM explainers and the manipulation attack (which passes its own ``keyword`` so the
    error names the argument the caller actually has).
    """
    if layer is not None:
        if not isinstance(layer, str) or not layer:
            raise NotApplicableError(f"{keyword} must be a layer's dotted path, got {layer!r}")
        found = _in(model, layer)
        net = getattr(model, "net", None)
        if found is None and isinstance(net, nn.Module):
            found = _in(net, layer)  # a path in the wrapped network, as the wrapper's cam_layer names it
        if found is None:
            own = getattr(model, "cam_layer", None)
            hint = f" (its own Grad-CAM layer: 'net.{own}')" if isinstance(own, str) and own else ""
            raise NotApplicableError(f"{keyword} {layer!r} not found in the model{hint}")
        return found
    getter = getattr(model, "get_cam_layer", None)
    if getter is None:
        raise RobustXAIError(f"Grad-CAM needs {keyword}=... for a model that is not a robustxai ModelWrapper")
    declared: nn.Module = getter()
    return declared


class ModelWrapper(nn.Module):
    """Wraps a network so that it takes [0, 1] images and returns logits ``[B, K]``.

    Args:
        net: The network; it receives normalised images.
        class_names: One name per output logit.
        mean: Per-channel mean subtracted inside the wrapper.
        std: Per-channel standard deviation divided inside the wrapper.
        task: ``"multiclass"`` (softmax over logits) or ``"multilabel"`` (sigmoid per logit).
        input_size: ``(H, W)`` the network expects, or ``None`` if any size works.
        in_channels: Number of image channels the wrapper accepts.
        cam_layer: Dotted path (relative to ``net``) of the layer Grad-CAM explains.
        cam_layout: How that layer lays out its output: ``"nchw"`` (a CNN feature map), ``"nhwc"`` (Swin)
            or ``"tokens"`` (``[B, N, C]``, ViT-like; see :mod:`robustxai.models._tokens`).
        cam_prefix: Leading non-patch tokens of a ``"tokens"`` layer (class, distillation, registers).
        spec: JSON-serialisable description that rebuilds the network (see :mod:`robustxai.models._io`).
        net_channels: Channels the network itself expects, if more than ``in_channels``: a grayscale image
            (``in_channels=1``) is repeated to ``net_channels`` before normalisation, so an ImageNet backbone
            can take X-rays while attacks and explanations stay in the one-channel image space.
    """

    def __init__(
        self,
        net: nn.Module,
        class_names: Sequence[str],
        mean: Sequence[float] = (0.0,),
        std: Sequence[float] = (1.0,),
        task: Task = "multiclass",
        input_size: tuple[int, int] | None = None,
        in_channels: int = 1,
        cam_layer: str | None = None,
        spec: Mapping[str, object] | None = None,
        net_channels: int | None = None,
        cam_layout: str = "nchw",
        cam_prefix: int = 0,
    ) -> None:
        super().__init__()
        if cam_layout not in CAM_LAYOUTS:
            raise RobustXAIError(f"cam_layout must be one of {', '.join(CAM_LAYOUTS)}, got {cam_layout!r}")
        if task not in ("multiclass", "multilabel"):
            raise RobustXAIError(f"task must be 'multiclass' or 'multilabel', got {task!r}")
        net_channels = in_channels if net_channels is None else net_channels
        if net_channels != in_channels and in_channels != 1:
            raise RobustXAIError(f"only 1-channel images can be repeated to {net_channels} channels")
        if len(mean) not in (1, net_channels) or len(std) not in (1, net_channels):
            raise RobustXAIError(f"mean/std must have 1 or {net_channels} values")
        if any(s <= 0 for s in std):
            raise RobustXAIError(f"std must be positive, got {list(std)}")
        self.net = net
        self.class_names = list(class_names)
        self.task: Task = task
        self.input_size = input_size
        self.in_channels = in_channels
        self.net_channels = net_channels
        self.cam_layer = cam_layer
        self.cam_layout = cam_layout
        self.cam_prefix = int(cam_prefix)
        self.spec = dict(spec or {})
        self.precision = "float32"
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def set_precision(self, precision: str) -> ModelWrapper:
        """Run the network's forward passes under ``torch.autocast`` in ``precision`` (``"float32"``: not).

        A run setting, not saved with the model: ``"bfloat16"`` (CPU or GPU) or ``"float16"`` (CUDA only,
        refused on another device when a pass runs) trade a little accuracy for speed on hardware with fast
        half-precision units. The logits are returned as float32, and the gradient to the input keeps the
        input's float32, so attacks, maps and metrics read float32 values.
        """
        if precision not in PRECISIONS:
            raise RobustXAIError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.precision = precision
        return self

    @property
    def num_classes(self) -> int:
        """Number of output logits."""
        return len(self.class_names)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``x`` (images in [0, 1]) and return the network's logits ``[B, K]``.

        The logit count is checked against ``class_names`` on every call (a shape comparison, no
        synchronisation), so a wrapper whose names disagree with its network fails with a clear error
        instead of an index error deep inside an explainer or attack.
        """
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise RobustXAIError(f"model expects images [B, {self.in_channels}, H, W], got {tuple(x.shape)}")
        if self.net_channels != self.in_channels:
            x = x.expand(-1, self.net_channels, -1, -1)
        mean = self.get_buffer("mean").to(dtype=x.dtype)
        std = self.get_buffer("std").to(dtype=x.dtype)
        logits = self._net((x - mean) / std)
        if isinstance(logits, torch.Tensor) and (
            logits.ndim != 2 or logits.shape[1] != len(self.class_names)
        ):
            raise RobustXAIError(
                f"the network returns logits of shape {tuple(logits.shape)}, but the wrapper has "
                f"{len(self.class_names)} class names: class_names must name every output logit ([B, K])"
            )
        return logits

    def _net(self, z: torch.Tensor) -> torch.Tensor:
        """The network's output, under autocast when :attr:`precision` asks for it (float32 logits then)."""
        dtype = PRECISIONS.get(getattr(self, "precision", "float32"))  # an older pickle has no precision
        if dtype is None:
            plain: torch.Tensor = self.net(z)
            return plain
        if dtype is torch.float16 and z.device.type != "cuda":
            raise RobustXAIError(
                f"precision 'float16' needs a CUDA device, the model runs on {z.device.type}: "
                "use 'bfloat16' there (or 'float32')"
            )
        with torch.autocast(z.device.type, dtype=dtype):
            out = self.net(z)
        return out.float() if isinstance(out, torch.Tensor) else out

    def get_cam_layer(self) -> nn.Module:
        """Return the module whose activations Grad-CAM uses."""
        if self.cam_layer is None:
            raise NotApplicableError(
                "this model declares no cam_layer (the probe found no feature map or token grid); "
                "Grad-CAM needs one: pass layer=..."
            )
        return find_submodule(
            self.net, self.cam_layer, f"cam_layer {self.cam_layer!r} not found in the network"
        )

    @torch.inference_mode()
    def predict(self, x: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """Return predicted class indices ``[B]`` for a batch of images in [0, 1], in eval mode."""
        check_images(x)
        was_training = self.training
        self.eval()
        try:
            preds = [self(chunk).argmax(dim=1) for chunk in x.split(batch_size)]
        finally:
            self.train(was_training)
        return torch.cat(preds)
