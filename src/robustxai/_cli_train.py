"""The work behind ``robustxai train``: its options checked, the training data, the model, the fit, the save.

Why a module of its own: the command's typer signature is long, and the steps below are each worth a name.
The command (:func:`robustxai.cli.train`) builds a :class:`TrainOptions` and calls :func:`run_train`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from robustxai._errors import RobustXAIError
from robustxai.audit._progress import Progress
from robustxai.data._base import ImageDataset, SubsetDataset
from robustxai.training import FitConfig, FitResult

#: ``--head`` values and the zoo ``head`` keyword each one means (``keep``: the model's own classifier).
HEADS: dict[str, str | None] = {
    "keep": None,
    "linear": "linear",
    "linear-probe": "linear",
    "attention": "attention",
}


@dataclass(frozen=True)
class TrainOptions:
    """The options of ``robustxai train`` (see the command's help for each)."""

    out: Path
    model: str
    data: str
    training: str
    head: str
    checkpoint: Path | None
    allow_download: bool
    trust_checkpoint: bool
    model_option: list[str] | None
    n: int
    size: int
    epochs: int
    batch_size: int
    eps: float
    attack_steps: int
    lr: float
    seed: int


def check_options(opts: TrainOptions) -> dict[str, object]:
    """Refuse options that do not fit together; return the ``--model-option`` keywords (JSON values or text).

    Raises:
        RobustXAIError: For an unknown ``--training`` or ``--head``, zoo-only options on a built-in
            model, or a ``--model-option`` that is not ``KEY=VALUE``.
    """
    if opts.training not in ("standard", "pgd"):
        raise RobustXAIError(f"--training must be 'standard' or 'pgd', got {opts.training!r}")
    if opts.head not in HEADS:
        raise RobustXAIError(f"--head must be one of {', '.join(HEADS)}, got {opts.head!r}")
    zoo_only = opts.head != "keep" or opts.checkpoint or opts.allow_download or opts.trust_checkpoint
    if ":" not in opts.model and (zoo_only or opts.model_option):
        raise RobustXAIError(
            "--head, --checkpoint, --allow-download, --trust-checkpoint and --model-option apply to zoo "
            "models (torchvision:<arch>, timm:<name>, robustbench:<id>)"
        )
    extra: dict[str, object] = {}
    for item in opts.model_option or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise RobustXAIError(f"--model-option must be KEY=VALUE, got {item!r}")
        try:
            extra[key] = json.loads(value)
        except ValueError:
            extra[key] = value
    return extra


def training_data(opts: TrainOptions) -> ImageDataset:
    """The synthetic benchmark, or a folder's ``train`` split (all of it when it has none).

    Raises:
        RobustXAIError: If the data set is empty.
    """
    from robustxai.data._folder import FolderDataset
    from robustxai.data._synthetic import SyntheticFracture

    if opts.data == "synthetic-fracture":
        ds: ImageDataset = SyntheticFracture(opts.n, size=opts.size, seed=opts.seed)
    else:
        ds = FolderDataset(Path(opts.data), size=opts.size)
        if "train" in ds.splits:  # never train on the rows an audit will test on
            ds = SubsetDataset(ds, [i for i, s in enumerate(ds.splits) if s == "train"])
    if len(ds) == 0:
        raise RobustXAIError(f"the data set {opts.data} is empty")
    return ds


def model_keywords(opts: TrainOptions, ds: ImageDataset) -> dict[str, object]:
    """The model's keywords: its classes, and for a zoo model its head, weights and input channels."""
    kwargs: dict[str, object] = {"num_classes": len(ds.class_names), "class_names": ds.class_names}
    if ":" in opts.model:
        kwargs |= {
            "head": HEADS[opts.head],
            "freeze_backbone": opts.head == "linear-probe",
            "checkpoint": str(opts.checkpoint) if opts.checkpoint else None,
            "allow_download": opts.allow_download,
            "trust_checkpoint": opts.trust_checkpoint,
            "in_channels": int(ds[0].image.shape[0]),
        }
    return kwargs


def run_train(opts: TrainOptions, progress: Callable[[], AbstractContextManager[Progress]]) -> FitResult:
    """Check the options, build the model, fit it with a progress bar and save it to ``opts.out``.

    Raises:
        RobustXAIError: For bad options, empty data, or a model that cannot be built or saved.
    """
    from robustxai.models import create_model, save_model
    from robustxai.training import fit

    extra = check_options(opts)
    ds = training_data(opts)
    net = create_model(opts.model, **(model_keywords(opts, ds) | extra))
    cfg = FitConfig(
        epochs=opts.epochs,
        batch_size=opts.batch_size,
        lr=opts.lr,
        adversarial="pgd" if opts.training == "pgd" else None,
        eps=opts.eps,
        attack_steps=opts.attack_steps,
        seed=opts.seed,
    )
    with progress() as prog:
        task = prog.start(f"training {opts.model} ({opts.training})", opts.epochs)
        result = fit(net, ds, config=cfg, progress=lambda e, total, row: prog.advance(task))
        prog.finish(task)
    meta = {
        "training": opts.training,
        "head": opts.head,
        "checkpoint": str(opts.checkpoint) if opts.checkpoint else None,
        "val_accuracy": result.val_accuracy,
        "best_epoch": result.best_epoch,
        "fit_config": result.config,
    }
    save_model(net, opts.out, meta=meta)
    return result
