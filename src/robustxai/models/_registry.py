"""Model registry: build a wrapped model by name.

Every factory returns a :class:`~robustxai.models._wrapper.ModelWrapper` whose ``spec`` records the name and
keywords, so :func:`robustxai.models.load_model` can rebuild the same architecture before loading weights.

Names of the form ``<family>:<arch>`` (``torchvision:resnet50``, ``timm:resnet10t``,
``robustbench:Standard_R50``) go to the family factories of :mod:`robustxai.models._zoo`, registered in
:data:`MODEL_FAMILIES`; the same entry point rebuilds a saved fine-tuned zoo model.
"""

from __future__ import annotations

from collections.abc import Sequence

from robustxai._errors import RobustXAIError
from robustxai._registry import Registry
from robustxai.models._smallcnn import SmallCNN
from robustxai.models._wrapper import ModelWrapper, Task

MODELS: Registry[ModelWrapper] = Registry("model")
# Factories called as ``factory(arch=<arch>, **kwargs)`` for names ``<family>:<arch>``.
MODEL_FAMILIES: Registry[ModelWrapper] = Registry("model family")


def _class_names(num_classes: int, class_names: Sequence[str] | None) -> list[str]:
    if class_names is None:
        return [f"class_{i}" for i in range(num_classes)]
    names = list(class_names)
    if len(names) != num_classes:
        raise RobustXAIError(f"class_names has {len(names)} entries but num_classes is {num_classes}")
    return names


def _smallcnn(
    attention: bool,
    name: str,
    num_classes: int,
    in_channels: int,
    class_names: Sequence[str] | None,
    widths: Sequence[int],
    dropout: float,
    mean: Sequence[float],
    std: Sequence[float],
    task: Task = "multiclass",
) -> ModelWrapper:
    net = SmallCNN(in_channels, num_classes, widths=widths, attention=attention, dropout=dropout)
    spec: dict[str, object] = {
        "name": name,
        "kwargs": {
            "num_classes": num_classes,
            "in_channels": in_channels,
            "class_names": _class_names(num_classes, class_names),
            "widths": list(widths),
            "dropout": dropout,
            "mean": list(mean),
            "std": list(std),
            **({"task": task} if task != "multiclass" else {}),
        },
    }
    return ModelWrapper(
        net,
        class_names=_class_names(num_classes, class_names),
        mean=mean,
        std=std,
        task=task,
        in_channels=in_channels,
        cam_layer=net.cam_layer,
        spec=spec,
    )


@MODELS.register("smallcnn")
def smallcnn(
    num_classes: int = 2,
    in_channels: int = 1,
    class_names: Sequence[str] | None = None,
    widths: Sequence[int] = (16, 32, 64, 64),
    dropout: float = 0.2,
    mean: Sequence[float] = (0.5,),
    std: Sequence[float] = (0.25,),
    task: Task = "multiclass",
) -> ModelWrapper:
    """A 4-block CNN with global-average-pool + linear head, for 32–224 px grayscale images.

    ``task="multilabel"`` makes each logit an independent sigmoid (BCE loss; CheXpert-style labels).
    """
    return _smallcnn(
        False, "smallcnn", num_classes, in_channels, class_names, widths, dropout, mean, std, task
    )


@MODELS.register("smallcnn-attention")
def smallcnn_attention(
    num_classes: int = 2,
    in_channels: int = 1,
    class_names: Sequence[str] | None = None,
    widths: Sequence[int] = (16, 32, 64, 64),
    dropout: float = 0.5,
    mean: Sequence[float] = (0.5,),
    std: Sequence[float] = (0.25,),
    task: Task = "multiclass",
) -> ModelWrapper:
    """The same backbone as ``smallcnn`` with the soft-attention head of METHODS.md."""
    return _smallcnn(
        True, "smallcnn-attention", num_classes, in_channels, class_names, widths, dropout, mean, std, task
    )


def create_model(name: str, **kwargs: object) -> ModelWrapper:
    """Build the registered model ``name`` with its keywords.

    Built-in names give randomly initialised networks; ``<family>:<arch>`` names build a zoo model and load
    its weights from a local checkpoint (see :mod:`robustxai.models._zoo` for the keywords).
    """
    if ":" in name:
        family, arch = name.split(":", 1)
        if not arch:
            raise RobustXAIError(f"model name {name!r} names no architecture after {family!r}:")
        if "arch" in kwargs:
            raise RobustXAIError(f"pass the architecture in the name ({family}:<arch>), not as arch=")
        return MODEL_FAMILIES.create(family, arch=arch, **kwargs)
    return MODELS.create(name, **kwargs)


def list_models() -> list[str]:
    """Names of the registered built-in models (zoo families: :func:`list_model_families`)."""
    return MODELS.names()


def list_model_families() -> list[str]:
    """Prefixes of zoo model names, used as ``<family>:<arch>``."""
    return MODEL_FAMILIES.names()
