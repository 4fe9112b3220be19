"""Models: registry, wrapper contract, built-in CNNs and safe checkpoint I/O."""

from robustxai.models.io import load_model, read_model_meta, save_model
from robustxai.models.losses import is_multilabel, predict_labels, task_loss
from robustxai.models.registry import MODELS, create_model, list_models
from robustxai.models.wrapper import ModelWrapper

__all__ = [
    "MODELS",
    "ModelWrapper",
    "create_model",
    "is_multilabel",
    "list_models",
    "load_model",
    "predict_labels",
    "read_model_meta",
    "save_model",
    "task_loss",
]
