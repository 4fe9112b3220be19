"""Transfer-learning heads for any backbone: a new linear layer, or soft attention on its feature map.

Why one generic mechanism: torchvision, timm and RobustBench networks all end in "feature map → pooling →
linear", but name those parts differently. The helpers here find the parts by structure instead of by a
table per architecture: the classifier is the last ``nn.Linear``, and the last convolutional block is the last
module (in execution order) whose output is an ``[B, C, h, w]`` map — found by one small probe forward pass.

- ``head="linear"``: the classifier is replaced by ``nn.Linear(features, K)`` (after optional dropout);
  the rest of the network, its pooling included, is unchanged.
- ``head="attention"``: the classifier is removed and :class:`AttentionTransferNet` puts the
  :class:`~robustxai.models._attention.SoftAttentionHead` of METHODS.md on the last feature map.
- :func:`wrap_model` puts any plain ``nn.Module`` classifier into the wrapper contract (Python only).
- :func:`freeze_all_but` turns the backbone into a fixed feature extractor (linear probe); :func:`fit
  <robustxai.training._fit>` then also keeps its batch-norm layers in eval mode.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from robustxai._errors import RobustXAIError
from robustxai.models._attention import SoftAttentionHead
from robustxai.models._tokens import channels_last_norm, find_token_layer, native_hw
from robustxai.models._wrapper import ModelWrapper, Task

log = logging.getLogger(__name__)

Head = Literal["linear", "attention"]
# Modules that only pass on or resample a map: never the feature layer, never evidence against one.
_SKIPPED = (
    nn.Identity,
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._MaxPoolNd,
)
HEADS = ("linear", "attention")


#: Marks, in :func:`find_feature_layer`'s record, the output of a LayerNorm over a 4-d map's last dimension.
_CHANNELS_LAST = torch.Size([0, 0, 0, 0, 0])


def find_feature_layer(
    net: nn.Module, in_channels: int = 3, size: int = 64
) -> tuple[str | None, torch.Size | None]:
    """Return the dotted path and output shape of the last module producing a channels-first feature map.

    One forward pass of a random ``[1, in_channels, size, size]`` batch records, in the order modules finish,
    every output of shape ``[B, C, h, w]`` with ``h·w > 1`` and ``C ≥ max(h, w)`` (which rules out the
    channels-last maps of Swin-like models; where a grid side equals the channels, a later LayerNorm over
    the last dimension — Swin's final norm — still gives them away). The last such module is the last
    convolutional block: a container finishes after its children, so e.g. ResNet's ``layer4`` wins over
    ``layer4.1``. Identities (``norm_pre = Identity()``) and pooling layers (VGG's 7×7 adaptive pool) are
    skipped. If a module finishing later still outputs tokens or a channels-last map (anything but ``[B, K]``,
    a pooled ``[B, C, 1, 1]`` or the same map), the convolution found lives inside a transformer (XCiT's
    patch interaction, a ViT's patch embedding) and is no feature map: the answer is then ``(None, None)``,
    as when the network cannot run at this size.
    """
    names = {id(m): n for n, m in net.named_modules() if n}
    seen: list[tuple[str, torch.Size, bool]] = []

    def hook(module: nn.Module, _inp: object, out: object) -> None:
        if isinstance(module, _SKIPPED) or not isinstance(out, torch.Tensor):
            return
        if channels_last_norm(module, out):  # a channels-last map (Swin's norm), whatever its shape says
            seen.append((names[id(module)], _CHANNELS_LAST, False))
            return
        is_map = out.ndim == 4 and out.shape[2] * out.shape[3] > 1 and out.shape[1] >= max(out.shape[2:])
        seen.append((names[id(module)], out.shape, is_map))

    handles = [m.register_forward_hook(hook) for n, m in net.named_modules() if n]
    was_training = net.training
    try:
        net.eval()
        with torch.no_grad():
            net(torch.rand(1, in_channels, size, size))
    except Exception as err:  # any architecture-specific refusal (fixed input size, token models)
        log.info("feature-layer probe failed at %d px: %s", size, err)
        return None, None
    finally:
        for h in handles:
            h.remove()
        net.train(was_training)
    maps = [i for i, (_, _, is_map) in enumerate(seen) if is_map]
    if not maps:
        return None, None
    name, shape, _ = seen[maps[-1]]
    for _, later, _ in seen[maps[-1] + 1 :]:
        if later is _CHANNELS_LAST or not (
            len(later) <= 2 or (len(later) == 4 and later[2] * later[3] == 1) or later == shape
        ):
            return None, None
    return name, shape


def last_linear(net: nn.Module) -> str:
    """Dotted path of the classifier: the last ``nn.Linear`` in module order."""
    found = [n for n, m in net.named_modules() if isinstance(m, nn.Linear)]
    if not found:
        raise RobustXAIError(f"{type(net).__name__} has no nn.Linear classifier whose head could be replaced")
    return found[-1]


def replace_module(root: nn.Module, path: str, new: nn.Module) -> None:
    """Put ``new`` at dotted ``path`` inside ``root`` (in place)."""
    parent_path, _, leaf = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    setattr(parent, leaf, new)


def linear_head(in_features: int, num_classes: int, dropout: float) -> nn.Module:
    """A new classifier: ``nn.Linear`` (preceded by dropout when ``dropout > 0``)."""
    linear = nn.Linear(in_features, num_classes)
    return nn.Sequential(nn.Dropout(dropout), linear) if dropout > 0 else linear


class AttentionTransferNet(nn.Module):
    """A backbone whose classifier is replaced by the soft-attention head on its last feature map.

    The backbone runs unchanged (its classifier set to ``nn.Identity``); a forward hook keeps the output of
    ``feature_layer`` for the head. The cost over a truncated backbone is the backbone's own pooling only,
    and no architecture needs a hand-written feature extractor.

    Args:
        backbone: The network (weights already loaded).
        feature_layer: Dotted path of its last convolutional block.
        channels: Channels C of that block's output.
        num_classes: Output logits.
        heads: Attention maps of the head (16 in the paper).
        dropout: Dropout of the head.
    """

    def __init__(
        self,
        backbone: nn.Module,
        feature_layer: str,
        channels: int,
        num_classes: int,
        heads: int = 16,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.feature_layer = feature_layer
        self.head = SoftAttentionHead(channels, num_classes, heads=heads, dropout=dropout)
        self._feats: torch.Tensor | None = None
        backbone.get_submodule(feature_layer).register_forward_hook(self._keep)

    def _keep(self, _module: nn.Module, _inp: object, out: torch.Tensor) -> None:
        self._feats = out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits ``[B, K]`` for normalised images."""
        self._feats = None
        self.backbone(x)
        feats, self._feats = self._feats, None
        if feats is None or feats.ndim != 4:
            raise RobustXAIError(f"backbone layer {self.feature_layer!r} gave no [B, C, h, w] feature map")
        return self.head(feats)


def attach_head(
    net: nn.Module,
    head: Head,
    num_classes: int,
    in_channels: int = 3,
    classifier: str | None = None,
    dropout: float = 0.0,
    attention_heads: int = 16,
    probe_size: int = 64,
) -> tuple[nn.Module, str, str | None]:
    """Replace the classifier of ``net`` by a new ``head`` with ``num_classes`` outputs.

    Args:
        net: A classifier network (weights already loaded).
        head: ``"linear"`` or ``"attention"``.
        num_classes: Outputs of the new head.
        in_channels: Channels the network takes (for the probe pass).
        classifier: Dotted path of the classifier to replace; default: the last ``nn.Linear``.
        dropout: Dropout before the new linear layer (the attention head uses 0.5 when this is 0).
        attention_heads: Attention maps of the soft-attention head.
        probe_size: Image size of the probe pass that finds the last feature map.

    Returns:
        ``(network, head path, cam layer)`` with paths relative to the returned network.
    """
    if head not in HEADS:
        raise RobustXAIError(f"head must be one of {', '.join(HEADS)} or None, got {head!r}")
    path = classifier or last_linear(net)
    old = net.get_submodule(path)
    if head == "linear":
        in_features = getattr(old, "in_features", None)
        if not isinstance(in_features, int):
            raise RobustXAIError(f"classifier {path!r} is a {type(old).__name__}, not an nn.Linear")
        replace_module(net, path, linear_head(in_features, num_classes, dropout))
        cam, _ = find_feature_layer(net, in_channels, probe_size)
        return net, path, cam
    replace_module(net, path, nn.Identity())
    cam, shape = find_feature_layer(net, in_channels, probe_size)
    if cam is None or shape is None:
        raise RobustXAIError(
            f"head='attention' needs a convolutional feature map; none found in {type(net).__name__}"
        )
    wrapped = AttentionTransferNet(
        net, cam, int(shape[1]), num_classes, heads=attention_heads, dropout=dropout or 0.5
    )
    return wrapped, "head", f"backbone.{cam}"


def freeze_all_but(net: nn.Module, trainable: str) -> int:
    """Freeze every parameter of ``net`` outside the sub-module ``trainable``; return the trainable count."""
    prefix = trainable + "."
    count = 0
    for name, p in net.named_parameters():
        p.requires_grad_(name.startswith(prefix))
        count += p.numel() if p.requires_grad else 0
    if count == 0:
        raise RobustXAIError(f"no parameters under {trainable!r}: freezing would leave nothing to train")
    return count


def wrap_model(
    module: nn.Module,
    class_names: Sequence[str],
    mean: Sequence[float] = (0.0,),
    std: Sequence[float] = (1.0,),
    task: Task = "multiclass",
    cam_layer: str | None = "auto",
    in_channels: int = 3,
    net_channels: int | None = None,
    input_size: tuple[int, int] | None = None,
) -> ModelWrapper:
    """Wrap any ``nn.Module`` that maps normalised images to logits into the robustxai model contract.

    Args:
        module: The network (in Python only: a wrapped module has no registry spec, so
            :func:`~robustxai.models._io.save_model` cannot save it).
        class_names: One name per output logit.
        mean: Per-channel mean the module expects subtracted (e.g. ImageNet's); ``(0,)`` if it normalises.
        std: Per-channel standard deviation.
        task: ``"multiclass"`` or ``"multilabel"``.
        cam_layer: Dotted path of the Grad-CAM layer; ``"auto"`` finds the last feature map by a probe pass,
            or for a transformer the token grid (:func:`~robustxai.models._tokens.find_token_layer`).
        in_channels: Image channels the wrapper accepts.
        net_channels: Channels the module takes if it differs (1-channel images are repeated).
        input_size: ``(H, W)`` the module needs, if fixed.
    """
    if not isinstance(module, nn.Module):
        raise RobustXAIError(f"wrap_model needs a torch.nn.Module, got {type(module).__name__}")
    layout, prefix = "nchw", 0
    if cam_layer == "auto":
        hw = (int(input_size[0]), int(input_size[1])) if input_size else native_hw(module)
        cam_layer, _ = find_feature_layer(module, net_channels or in_channels, hw[0])
        tokens = None if cam_layer else find_token_layer(module, net_channels or in_channels, hw)
        cam_layer, layout, prefix = tokens or (cam_layer, "nchw", 0)
    elif cam_layer is not None:
        try:
            module.get_submodule(cam_layer)
        except AttributeError:
            raise RobustXAIError(f"cam_layer {cam_layer!r} is not a sub-module of the network") from None
    return ModelWrapper(
        module, class_names=list(class_names), mean=mean, std=std, task=task, input_size=input_size,
        in_channels=in_channels, cam_layer=cam_layer, net_channels=net_channels, cam_layout=layout,
        cam_prefix=prefix,
    )  # fmt: skip
