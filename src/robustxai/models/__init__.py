"""Models: registry, wrapper contract, built-in CNNs, the offline zoo and safe checkpoint I/O."""

from robustxai.models import _zoo  # noqa: F401  (registers the torchvision/timm/robustbench families)
from robustxai.models._heads import wrap_model
from robustxai.models._io import load_model, read_checkpoint, read_model_meta, save_model
from robustxai.models._losses import is_multilabel, predict_labels, task_loss
from robustxai.models._registry import MODELS, create_model, list_model_families, list_models
from robustxai.models._wrapper import ModelWrapper

__all__ = [
    "MODELS",
    "ModelWrapper",
    "create_model",
    "is_multilabel",
    "list_model_families",
    "list_models",
    "load_model",
    "predict_labels",
    "read_checkpoint",
    "read_model_meta",
    "save_model",
    "task_loss",
    "wrap_model",
]
