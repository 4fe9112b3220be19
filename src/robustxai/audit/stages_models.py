"""Audit stage 2: the models — loaded from a checkpoint, or trained on the spot and cached by config hash."""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path
from typing import Any

import torch

from robustxai.audit.cache import is_complete, key_of, mark_complete
from robustxai.audit.config import DATA_GUARD_KEYS, AuditConfig, ModelConfig
from robustxai.audit.grants import Grants, model_kwargs
from robustxai.audit.progress import Progress
from robustxai.data.base import ImageDataset, stack_images
from robustxai.errors import RobustXAIError
from robustxai.models import ModelWrapper, create_model, load_model, read_model_meta, save_model
from robustxai.models.zoo import default_model_dir
from robustxai.training import FitConfig, fit

log = logging.getLogger(__name__)
NO_GRANTS = Grants()


def fit_config_for(cfg: AuditConfig, m: ModelConfig) -> FitConfig:
    """The training settings of one model (shared settings, per-model epochs, the model's training mode)."""
    t = cfg.training
    return FitConfig(
        epochs=m.epochs or t.epochs,
        batch_size=t.batch_size,
        lr=m.lr or t.lr,
        adversarial="pgd" if m.training == "pgd" else None,
        eps=t.eps if m.eps is None else m.eps,
        attack_steps=t.attack_steps,
        eps_warmup_epochs=t.eps_warmup_epochs if m.training == "pgd" else 0,
        val_fraction=t.val_fraction,
        patience=t.patience,
        seed=cfg.seed,
    )


def build_untrained(
    m: ModelConfig,
    class_names: list[str],
    in_channels: int,
    task: str = "multiclass",
    grants: Grants = NO_GRANTS,
) -> ModelWrapper:
    """The configured architecture before training: random, or a zoo model with its checkpoint's weights.

    The trust keywords (full-pickle checkpoints, downloads) are the caller's ``grants``, never the config's
    word alone (:mod:`robustxai.audit.grants`).
    """
    return create_model(
        m.arch,
        num_classes=len(class_names),
        class_names=class_names,
        in_channels=in_channels,
        task=task,
        **model_kwargs(m, grants),
    )


def build_architecture(
    m: ModelConfig, class_names: list[str], in_channels: int, task: str = "multiclass"
) -> ModelWrapper:
    """The configured architecture with random weights, reading no weight file (the cost planner's model).

    Why: timing a pass needs the network's shape, not its weights, so planning never opens a checkpoint
    (never a pickle) and needs no grant; :func:`build_untrained` builds the audited model.
    """
    weight_keys = ("checkpoint", "trust_checkpoint", "allow_download", "model_dir", "random_init")
    kwargs = {k: v for k, v in m.arch_kwargs.items() if k not in weight_keys}
    if ":" in m.arch:  # a zoo family: built without weights
        kwargs["random_init"] = True
    return create_model(
        m.arch,
        num_classes=len(class_names),
        class_names=class_names,
        in_channels=in_channels,
        task=task,
        **kwargs,
    )


def weights_path(m: ModelConfig) -> Path | None:
    """The local weights a zoo model is built from (``arch_kwargs.checkpoint`` or RobustBench's default)."""
    kw = m.arch_kwargs
    if kw.get("checkpoint"):
        return Path(str(kw["checkpoint"]))
    if m.arch.startswith("robustbench:") and not kw.get("random_init") and not kw.get("allow_download"):
        root = Path(str(kw["model_dir"])) if kw.get("model_dir") else default_model_dir()
        name = m.arch.split(":", 1)[1]
        return root / str(kw.get("dataset", "imagenet")) / str(kw.get("threat_model", "Linf")) / f"{name}.pt"
    return None


def weights_fingerprint(path: Path | None) -> str | None:
    """SHA-256 of a weight file's bytes (a directory: of every file in it, with relative names), or None.

    Why content and not the path: a cached fine-tuned model must never outlive a replaced checkpoint file,
    and a moved or copied file with the same bytes should not cost a retraining.
    """
    if path is None or not path.exists():
        return None
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for f in files:
        digest.update((f.name if f == path else str(f.relative_to(path))).encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def copy_shared_weights(source: ModelWrapper, target: ModelWrapper) -> list[str]:
    """Copy every parameter and buffer whose name and shape match (a shared backbone); return their names.

    Starting adversarial training or a new head from a trained backbone is standard practice (adversarial
    fine-tuning) and keeps the default audit within its time budget on a CPU.
    """
    src = source.state_dict()
    dst = target.state_dict()
    shared = [k for k, v in dst.items() if k in src and src[k].shape == v.shape]
    target.load_state_dict({**dst, **{k: src[k].clone() for k in shared}})
    return shared


def nonfinite_weights(models: dict[str, ModelWrapper]) -> dict[str, str]:
    """Models whose parameters or buffers hold NaN or ±inf, with a one-line reason naming the tensors.

    Why: such a model's outputs are NaN, and ``argmax`` of NaN is class 0, so its accuracy would be a silent
    wrong number; it is reported as failed instead.
    """
    bad: dict[str, str] = {}
    for name, model in models.items():
        state = model.state_dict()
        broken = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
        if broken:
            bad[name] = (
                f"its weights hold non-finite values (NaN or ±inf) in {len(broken)} of {len(state)} tensors "
                f"({', '.join(broken[:3])}{', …' if len(broken) > 3 else ''})"
            )
    return bad


def model_key(
    cfg: AuditConfig, m: ModelConfig, data_info: dict[str, Any], in_channels: int | None, parent: str | None
) -> str:
    """The key naming one model (a checkpoint's file, the as-built weights, or the trained cache entry).

    ``parent`` is the key of the model named by ``init_from``. One function, so the plan
    (:func:`models_to_train`) and :func:`get_models` can never disagree about what is cached.
    """
    if m.checkpoint:
        saved = Path(m.checkpoint) / "model.safetensors"
        stat = saved.stat()
        return key_of("checkpoint", str(saved.resolve()), stat.st_size, stat.st_mtime_ns)
    fingerprint = weights_fingerprint(weights_path(m))
    if m.training == "none":
        class_names, task = list(data_info["class_names"]), str(data_info.get("task", "multiclass"))
        return key_of("as-built", m.arch, m.arch_kwargs, class_names, task, in_channels, fingerprint, parent)
    fit_cfg = fit_config_for(cfg, m)
    return key_of(
        "model",
        m.arch,
        m.arch_kwargs,
        m.training,
        fit_cfg.__dict__,
        data_info,
        cfg.data.model_dump(exclude=set(DATA_GUARD_KEYS)),  # guards change no image: same key
        parent,
        fingerprint,
    )


def trained_dir(cache: Path, m: ModelConfig, key: str) -> Path:
    """Where a trained model of key ``key`` is cached."""
    return cache / "models" / f"{m.name}-{key}"


def models_to_train(cfg: AuditConfig, data_info: dict[str, Any], cache: Path) -> list[str]:
    """The models an audit of ``cfg`` would train now: neither a checkpoint, nor ``none``, nor cached."""
    in_channels = int(data_info["channels"]) if "channels" in data_info else None
    keys: dict[str, str] = {}
    out = []
    for m in cfg.models:
        parent = keys[m.init_from] if m.init_from else None
        keys[m.name] = key = model_key(cfg, m, data_info, in_channels, parent)
        if not m.checkpoint and m.training != "none" and not is_complete(trained_dir(cache, m, key)):
            out.append(m.name)
    return out


def get_models(
    cfg: AuditConfig,
    train_ds: ImageDataset,
    data_info: dict[str, Any],
    cache: Path,
    progress: Progress,
    grants: Grants = NO_GRANTS,
) -> tuple[dict[str, ModelWrapper], dict[str, dict[str, Any]]]:
    """Return the audited models by name and a description of each (where it came from, its validation).

    ``grants`` is what the caller allows beyond safe loading; a model whose config asks for more is refused.
    """
    class_names = list(data_info["class_names"])
    data_task = str(data_info.get("task", "multiclass"))
    models: dict[str, ModelWrapper] = {}
    infos: dict[str, dict[str, Any]] = {}
    train_tensors: tuple[torch.Tensor, torch.Tensor] | None = None
    in_channels = int(data_info["channels"]) if "channels" in data_info else None
    for m in cfg.models:
        if m.checkpoint:
            model = load_model(m.checkpoint)
            if model.class_names != class_names:
                raise RobustXAIError(
                    f"model {m.name!r} predicts {model.class_names} but the data has {class_names}"
                )
            if model.task != data_task:
                raise RobustXAIError(f"model {m.name!r} is a {model.task} model but the data are {data_task}")
            models[m.name] = model
            infos[m.name] = {
                "source": "checkpoint",
                "path": m.checkpoint,
                **read_model_meta(m.checkpoint),
                "cache_key": model_key(cfg, m, data_info, in_channels, None),
            }
            continue
        if in_channels is None:
            in_channels = int(train_ds[0].image.shape[0])
        parent = infos[m.init_from]["cache_key"] if m.init_from else None
        weights = weights_path(m)
        fingerprint = weights_fingerprint(weights)
        if m.training == "none":
            # Evaluated as built (e.g. a zoo checkpoint): nothing to cache, but the key (which names the
            # model for workers) follows the weights' bytes.
            model = build_untrained(m, class_names, in_channels, data_task, grants)
            copied = copy_shared_weights(models[m.init_from], model) if m.init_from else []
            key = model_key(cfg, m, data_info, in_channels, parent)
            models[m.name] = model.eval()
            infos[m.name] = {
                "source": "checkpoint file" if weights is not None else "as built",
                "training": "none",
                "path": str(weights) if weights is not None else None,
                "weights_sha256": fingerprint,
                "init_from": m.init_from,
                "init_tensors": len(copied),
                "cache_key": key,
            }
            log.info("model %s evaluated as built (no training)", m.name)
            continue
        fit_cfg = fit_config_for(cfg, m)
        key = model_key(cfg, m, data_info, in_channels, parent)
        directory = trained_dir(cache, m, key)
        if is_complete(directory):
            models[m.name] = load_model(directory)
            meta = read_model_meta(directory)
            infos[m.name] = {"source": "cache", "path": str(directory), **meta, "cache_key": key}
            log.info("model %s loaded from cache %s", m.name, directory)
            continue
        if train_tensors is None:
            train_tensors = stack_images([train_ds[i] for i in range(len(train_ds))])
        model = build_untrained(m, class_names, in_channels, data_task, grants)
        copied = copy_shared_weights(models[m.init_from], model) if m.init_from else []
        task = progress.start(f"training {m.name} ({m.training})", fit_cfg.epochs)
        t0 = time.perf_counter()

        def on_epoch(epoch: int, total: int, row: dict[str, float], task: int = task) -> None:
            progress.advance(task)

        result = fit(model, train_tensors, config=fit_cfg, progress=on_epoch)
        progress.finish(task)
        meta = {
            "training": m.training,
            "weights_sha256": fingerprint,
            "init_from": m.init_from,
            "init_tensors": len(copied),
            "train_seconds": round(time.perf_counter() - t0, 2),
            "best_epoch": result.best_epoch,
            "val_accuracy": result.val_accuracy,
            "robust_val_accuracy": result.robust_val_accuracy,
            "epochs_run": len(result.history),
            "fit_config": result.config,
        }
        save_model(model, directory, meta=meta)
        mark_complete(directory)
        models[m.name] = model.eval()
        infos[m.name] = {"source": "trained", "path": str(directory), **meta, "cache_key": key}
    return models, infos
