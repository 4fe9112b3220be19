"""Training: standard, linear-probe and PGD adversarial training with Adam, class weights and early stopping.

Adversarial training follows Madry et al.: each batch is replaced by its PGD adversarial version (generated
with the model in eval mode, so batch-norm statistics are not polluted by the attack's probes), then one
optimiser step is taken on it. The budget (ε, steps) is in [0, 1] pixel units like every attack.

The loss is the model's task loss (:func:`robustxai.models.task_loss`): cross-entropy on class indices
``[B]``, or per-label binary cross-entropy on 0/1 targets ``[B, K]`` for ``task="multilabel"`` models, where
"balanced" weights become per-label ``pos_weight = negatives / positives``. Only parameters with
``requires_grad`` are optimised, so a model built with ``freeze_backbone=True`` trains as a linear probe; the
frozen part (every sub-module whose parameters are all frozen) also stays in eval mode, so its batch-norm
statistics and stochastic layers do not drift while the head learns.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import nn

from robustxai._errors import DataError, RobustXAIError
from robustxai._validate import check_epsilon, check_images, check_int
from robustxai.attacks._gradient_sign import PGD
from robustxai.data._base import ImageDataset
from robustxai.models._losses import check_task_labels, is_multilabel, predict_labels, task_loss
from robustxai.models._wrapper import ModelWrapper

log = logging.getLogger(__name__)

Progress = Callable[[int, int, dict[str, float]], None]


@dataclass
class FitConfig:
    """Hyper-parameters of :func:`fit`.

    Attributes:
        epochs: Maximum number of epochs.
        batch_size: Training batch size.
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        adversarial: ``None`` for standard training, ``"pgd"`` for PGD adversarial training.
        eps: L∞ budget of adversarial training (default 4/255).
        attack_steps: PGD steps per batch (PGD-7 by default).
        attack_step_size: PGD step size; ``None`` means ``2.5 · eps / attack_steps`` (Madry et al.).
        eps_warmup_epochs: Grow the training ε linearly from ``eps / eps_warmup_epochs`` to ``eps`` over
            this many epochs (0: full ε from the start). Starting a trained model at full ε can wipe out what
            it learned; a ramp keeps the features while they become robust. Early stopping waits for its end.
        val_fraction: Share of the training data held out for early stopping when no validation set is given.
        patience: Epochs without validation-loss improvement before stopping (for adversarial training the
            loss on PGD-attacked validation images, i.e. robust early stopping).
        min_delta: Smallest validation-loss decrease that counts as an improvement.
        class_weights: ``"balanced"`` (inverse class frequency; per-label negatives/positives as BCE
            ``pos_weight`` for multi-label models) or ``None``.
        seed: Seed of the split, the shuffling and the attack's random start.
    """

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    adversarial: Literal["pgd"] | None = None
    eps: float = 4 / 255
    attack_steps: int = 7
    attack_step_size: float | None = None
    eps_warmup_epochs: int = 0
    val_fraction: float = 0.2
    patience: int = 3
    min_delta: float = 1e-3
    class_weights: Literal["balanced"] | None = "balanced"
    seed: int = 0

    def __post_init__(self) -> None:
        for name, least in (("epochs", 1), ("batch_size", 1), ("attack_steps", 1), ("eps_warmup_epochs", 0)):
            check_int(getattr(self, name), name, minimum=least)
        check_int(self.patience, "patience", minimum=0)
        check_int(self.seed, "seed")
        if self.adversarial not in (None, "pgd"):
            raise RobustXAIError(f"adversarial must be None or 'pgd', got {self.adversarial!r}")
        if self.adversarial is not None and self.eps_warmup_epochs > self.epochs:
            raise RobustXAIError(
                f"eps_warmup_epochs ({self.eps_warmup_epochs}) must not exceed epochs ({self.epochs}): "
                "no epoch would be trained at the full ε"
            )
        if not 0 <= self.val_fraction < 1:
            raise RobustXAIError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        check_epsilon(self.eps)
        if self.adversarial is not None and self.eps >= 1:
            raise RobustXAIError(
                f"eps = {self.eps} is the L∞ budget of adversarial training on [0, 1] images: it must be "
                "below 1 (4/255 ≈ 0.0157 is usual); ε ≥ 1 allows any image"
            )


@dataclass
class FitResult:
    """What :func:`fit` learned: the per-epoch history and the chosen epoch.

    ``val_loss`` is the loss early stopping used: clean for standard training, adversarial for PGD training.
    For multi-label models ``val_accuracy`` is the per-label accuracy (mean over images and labels).
    """

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    val_accuracy: float = float("nan")
    val_loss: float = float("nan")
    robust_val_accuracy: float = float("nan")
    config: dict[str, object] = field(default_factory=dict)


def _as_tensors(
    model: ModelWrapper, data: ImageDataset | tuple[torch.Tensor, torch.Tensor], what: str
) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(data, tuple):
        images, labels = data
    else:
        if len(data) == 0:
            raise DataError(f"the {what} data set is empty")
        samples = [data[i] for i in range(len(data))]
        images = torch.stack([s.image for s in samples])
        labels = torch.stack([torch.as_tensor(s.label) for s in samples])
    check_images(images, f"{what} images")
    labels = check_task_labels(model, labels, images.shape[0])
    if is_multilabel(model):
        if labels.shape[1] != model.num_classes:
            raise DataError(
                f"{what} labels have {labels.shape[1]} columns but the model has {model.num_classes}"
            )
    elif int(labels.max()) >= model.num_classes:
        raise DataError(f"{what} labels must lie in [0, {model.num_classes - 1}] for this model")
    return images, labels


def check_classes(model: ModelWrapper, labels: torch.Tensor) -> None:
    """Refuse training data that hold fewer than two classes: nothing can be learned from them.

    A classifier trained on one class predicts it everywhere and scores a perfect, meaningless accuracy on
    a test split of that class. Multi-label data need at least one label with both values.

    Raises:
        DataError: Naming the one class (or saying that every label is constant).
    """
    if labels.ndim == 2:
        if labels.shape[0] and not bool((labels.amax(dim=0) != labels.amin(dim=0)).any()):
            raise DataError(
                f"the training data ({labels.shape[0]} images) give every label a single value: "
                "training needs at least one label with positive and negative images"
            )
        return
    present = sorted({int(v) for v in labels.unique()})
    if len(present) < 2:
        names = list(getattr(model, "class_names", []) or [])
        name = names[present[0]] if present and present[0] < len(names) else str(present)
        raise DataError(
            f"the training data hold only one class ({name!r}, {labels.numel()} images): a classifier "
            "needs images of at least two classes"
        )


def _class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Inverse class frequency ``N / (K · n_k)`` for class indices; ``n_neg / n_pos`` per column for 0/1."""
    if labels.ndim == 2:
        pos = labels.double().sum(dim=0)
        neg = labels.shape[0] - pos
        return torch.where(pos > 0, neg / pos.clamp(min=1), torch.ones_like(pos)).float()
    counts = torch.bincount(labels, minlength=num_classes).double()
    weights = counts.sum() / (num_classes * counts.clamp(min=1))
    return weights.float()


def keep_frozen_in_eval(module: nn.Module) -> None:
    """Put every sub-module whose parameters are all frozen in eval mode (batch-norm, dropout inside it)."""
    for child in module.children():
        params = list(child.parameters())
        if params and not any(p.requires_grad for p in params):
            child.eval()
        else:
            keep_frozen_in_eval(child)


def _evaluate(
    model: ModelWrapper, images: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None, bs: int
) -> tuple[float, float]:
    model.eval()
    loss, correct = 0.0, 0.0
    with torch.no_grad():
        for xb, yb in zip(images.split(bs), labels.split(bs), strict=True):
            logits = model(xb)
            loss += float(task_loss(model, logits, yb, reduction="sum", weight=weight))
            hits = (predict_labels(model, logits) == yb.long()).float()
            correct += float(hits.mean(dim=1).sum() if hits.ndim == 2 else hits.sum())
    n = max(len(labels), 1)
    return loss / n, correct / n


def epoch_passes(cfg: FitConfig, n: int) -> tuple[int, int, int]:
    """Rows one epoch pushes through the model: (training steps, input-gradient passes, forward only).

    ``n`` is the training set's size before the validation split. Training steps are forward + backward
    with parameter gradients; adversarial training adds ``attack_steps`` input-gradient passes per training
    image and per validation image (robust early stopping); validation is forward only (twice with PGD).
    An epoch bound: early stopping may end training sooner. Used by the audit's plan.
    """
    n_val = max(1, int(round(cfg.val_fraction * n))) if cfg.val_fraction > 0 and n >= 10 else n
    n_fit = n - n_val if cfg.val_fraction > 0 and n >= 10 else n
    if cfg.adversarial != "pgd":
        return n_fit, 0, n_val
    return n_fit, cfg.attack_steps * (n_fit + n_val), 2 * n_val


def _pgd(cfg: FitConfig, eps: float) -> PGD:
    step = cfg.attack_step_size if cfg.attack_step_size is not None else 2.5 * eps / cfg.attack_steps
    return PGD(eps=eps, steps=cfg.attack_steps, step_size=step, random_start=True, seed=cfg.seed)


def _fit_data(
    model: ModelWrapper,
    train: ImageDataset | tuple[torch.Tensor, torch.Tensor],
    val: ImageDataset | tuple[torch.Tensor, torch.Tensor] | None,
    cfg: FitConfig,
    rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training and validation data ``(images, labels, val_images, val_labels)``: ``val``, or a hold-out."""
    images, labels = _as_tensors(model, train, "training")
    check_classes(model, labels)
    if val is None and cfg.val_fraction > 0 and len(labels) >= 10:
        perm = torch.from_numpy(rng.permutation(len(labels)))
        n_val = max(1, int(round(cfg.val_fraction * len(labels))))
        val_x, val_y = images[perm[:n_val]], labels[perm[:n_val]]
        images, labels = images[perm[n_val:]], labels[perm[n_val:]]
    elif val is not None:
        val_x, val_y = _as_tensors(model, val, "validation")
    else:
        val_x, val_y = images, labels
    return images, labels, val_x, val_y


def _train_epoch(
    model: ModelWrapper,
    data: tuple[torch.Tensor, torch.Tensor],
    cfg: FitConfig,
    opt: torch.optim.Optimizer,
    attack: PGD | None,
    weight: torch.Tensor | None,
    rng: np.random.Generator,
    epoch: int,
) -> float:
    """One pass over the shuffled training data (attacked first when ``attack``); the mean training loss."""
    images, labels = data
    order = torch.from_numpy(rng.permutation(len(labels)))
    train_loss, seen = 0.0, 0
    for idx in order.split(cfg.batch_size):
        xb, yb = images[idx], labels[idx]
        if attack is not None:
            model.eval()
            attack.seed = cfg.seed * 100_003 + epoch * 1009 + seen
            xb = attack(model, xb, yb)
        model.train()
        keep_frozen_in_eval(model)
        loss = task_loss(model, model(xb), yb, weight=weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        train_loss += float(loss.detach()) * len(yb)
        seen += len(yb)
    return train_loss / seen


def _epoch_row(
    model: ModelWrapper,
    epoch: int,
    train_loss: float,
    val: tuple[torch.Tensor, torch.Tensor],
    weight: torch.Tensor | None,
    val_attack: PGD | None,
) -> tuple[dict[str, float], float, float]:
    """The epoch's history row, the loss that selects the epoch, and the clean validation accuracy."""
    val_x, val_y = val
    val_loss, val_acc = _evaluate(model, val_x, val_y, weight, 256)
    row = {
        "epoch": float(epoch),
        "train_loss": train_loss,
        "val_loss": val_loss,
        "val_accuracy": val_acc,
    }
    if val_attack is not None:
        # Robust early stopping (Rice et al. 2020): choose the epoch by the loss on attacked validation
        # images, since clean validation loss rises while robustness is still improving.
        model.eval()
        adv_val = torch.cat(
            [val_attack(model, x, y) for x, y in zip(val_x.split(256), val_y.split(256), strict=True)]
        )
        val_loss, row["robust_val_accuracy"] = _evaluate(model, adv_val, val_y, weight, 256)
        row["robust_val_loss"] = val_loss
    return row, val_loss, val_acc


def fit(
    model: ModelWrapper,
    train: ImageDataset | tuple[torch.Tensor, torch.Tensor],
    val: ImageDataset | tuple[torch.Tensor, torch.Tensor] | None = None,
    config: FitConfig | None = None,
    progress: Progress | None = None,
) -> FitResult:
    """Train ``model`` in place and restore the weights of the best validation epoch.

    Args:
        model: A wrapped model taking [0, 1] images; parameters with ``requires_grad=False`` stay fixed.
        train: Training data (a data set, or ``(images, labels)`` tensors): labels are class indices ``[B]``,
            or 0/1 ``[B, K]`` for a multi-label model.
        val: Validation data for early stopping; ``None`` holds out ``config.val_fraction`` of ``train``.
        config: Hyper-parameters (defaults: 10 epochs, Adam 1e-3, balanced class weights, standard training).
        progress: Called after each epoch with ``(epoch, epochs, metrics)``.

    Returns:
        The training history and the chosen (best validation loss) epoch.
    """
    cfg = config or FitConfig()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    images, labels, val_x, val_y = _fit_data(model, train, val, cfg, rng)
    weight = _class_weights(labels, model.num_classes) if cfg.class_weights == "balanced" else None
    attack: PGD | None = None
    val_attack = _pgd(cfg, cfg.eps) if cfg.adversarial == "pgd" else None
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise RobustXAIError("the model has no trainable parameters (everything is frozen)")
    opt = torch.optim.Adam(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    result = FitResult(config=asdict(cfg))
    best_loss, best_state, stale = math.inf, copy.deepcopy(model.state_dict()), 0
    for epoch in range(1, cfg.epochs + 1):
        if val_attack is not None:
            ramp = min(1.0, epoch / cfg.eps_warmup_epochs) if cfg.eps_warmup_epochs else 1.0
            attack = _pgd(cfg, cfg.eps * ramp)
        train_loss = _train_epoch(model, (images, labels), cfg, opt, attack, weight, rng, epoch)
        row, val_loss, val_acc = _epoch_row(model, epoch, train_loss, (val_x, val_y), weight, val_attack)
        result.history.append(row)
        log.info("epoch %d/%d: %s", epoch, cfg.epochs, row)
        if progress is not None:
            progress(epoch, cfg.epochs, row)
        if epoch < cfg.eps_warmup_epochs:
            continue  # the objective is still changing: no model selection during the ε ramp
        if val_loss < best_loss - cfg.min_delta:
            best_loss, stale = val_loss, 0
            best_state = copy.deepcopy(model.state_dict())
            result.best_epoch, result.val_loss, result.val_accuracy = epoch, val_loss, val_acc
            result.robust_val_accuracy = row.get("robust_val_accuracy", float("nan"))
        else:
            stale += 1
            if stale >= cfg.patience:
                log.info("early stop after epoch %d (best %d)", epoch, result.best_epoch)
                break
    model.load_state_dict(best_state)
    model.eval()
    return result
