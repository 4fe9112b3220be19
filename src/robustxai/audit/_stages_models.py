"""Audit stage 2: the models — loaded from a checkpoint, or trained on the spot and cached by config hash."""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

import torch

from robustxai._errors import RobustXAIError
from robustxai.audit._cache import is_complete, key_of, mark_complete
from robustxai.audit._config import DATA_GUARD_KEYS, AuditConfig, ModelConfig
from robustxai.audit._grants import Grants, model_kwargs
from robustxai.audit._progress import Progress
from robustxai.audit._stages_data import DataInfo
from robustxai.data._base import ImageDataset, stack_images
from robustxai.models import ModelWrapper, create_model, load_model, read_model_meta, save_model
from robustxai.models._io import check_checkpoint_file
from robustxai.models._zoo import default_model_dir
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
    word alone (:mod:`robustxai.audit._grants`).
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


def check_fits(name: str, model: ModelWrapper, info: DataInfo) -> None:
    """Refuse a saved model whose classes, task or image channels are not the data's, naming both sides."""
    classes, task = list(info["class_names"]), str(info.get("task", "multiclass"))
    if model.class_names != classes:
        raise RobustXAIError(f"model {name!r} predicts {model.class_names} but the data has {classes}")
    if model.task != task:
        raise RobustXAIError(f"model {name!r} is a {model.task} model but the data are {task}")
    channels = info.get("channels")
    if channels is not None and model.in_channels != channels:
        raise RobustXAIError(
            f"model {name!r} takes {model.in_channels}-channel images but the data has {channels} "
            "(data.channels): set data.channels to the model's, or use a model saved for these images"
        )


def planning_model(m: ModelConfig, info: DataInfo) -> ModelWrapper:
    """The model the cost plan times: a saved robustxai model as saved, else the architecture, random.

    A zoo model's weight file is not loaded (it might be a pickle), only checked to be readable
    (:func:`~robustxai.models._io.check_checkpoint_file`), so a plan refuses an empty, cut-short or garbage
    file before the audit trains anything; a missing one is left to the audit, which says where to put it.
    """
    if m.checkpoint:
        saved = load_model(m.checkpoint).eval()
        check_fits(m.name, saved, info)
        return saved
    if (weights := weights_path(m)) is not None and weights.exists():
        check_checkpoint_file(weights)
    task = str(info.get("task", "multiclass"))
    return build_architecture(m, list(info["class_names"]), int(info["channels"]), task).eval()


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
    cfg: AuditConfig, m: ModelConfig, data_info: DataInfo, in_channels: int | None, parent: str | None
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


def models_to_train(cfg: AuditConfig, data_info: DataInfo, cache: Path) -> list[str]:
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


class _ModelSource:
    """Builds the audited models one by one, in config order (a model may start from an earlier one)."""

    def __init__(
        self,
        cfg: AuditConfig,
        train_ds: ImageDataset,
        data_info: DataInfo,
        cache: Path,
        progress: Progress,
        grants: Grants,
    ) -> None:
        self.cfg, self.train_ds, self.data_info = cfg, train_ds, data_info
        self.cache, self.progress, self.grants = cache, progress, grants
        self.class_names = list(data_info["class_names"])
        self.data_task = str(data_info.get("task", "multiclass"))
        self.in_channels = int(data_info["channels"]) if "channels" in data_info else None
        self.models: dict[str, ModelWrapper] = {}
        self.infos: dict[str, dict[str, object]] = {}
        self._train_tensors: tuple[torch.Tensor, torch.Tensor] | None = None

    def add(self, m: ModelConfig) -> None:
        """Load, build or train model ``m`` and record it with its description."""
        if m.checkpoint:
            self._from_checkpoint(m, m.checkpoint)
            return
        if self.in_channels is None:
            self.in_channels = int(self.train_ds[0].image.shape[0])
        parent = str(self.infos[m.init_from]["cache_key"]) if m.init_from else None
        key = model_key(self.cfg, m, self.data_info, self.in_channels, parent)
        if m.training == "none":
            self._as_built(m, self.in_channels, key)
            return
        directory = trained_dir(self.cache, m, key)
        if is_complete(directory):
            self.models[m.name] = load_model(directory)
            meta = read_model_meta(directory)
            self.infos[m.name] = {"source": "cache", "path": str(directory), **meta, "cache_key": key}
            log.info("model %s loaded from cache %s", m.name, directory)
            return
        self._train(m, self.in_channels, key, directory)

    def _from_checkpoint(self, m: ModelConfig, checkpoint: str) -> None:
        model = load_model(checkpoint)
        check_fits(m.name, model, self.data_info)
        self.models[m.name] = model
        self.infos[m.name] = {
            "source": "checkpoint",
            "path": checkpoint,
            **read_model_meta(checkpoint),
            "cache_key": model_key(self.cfg, m, self.data_info, self.in_channels, None),
        }

    def _untrained(self, m: ModelConfig, in_channels: int) -> tuple[ModelWrapper, list[str]]:
        model = build_untrained(m, self.class_names, in_channels, self.data_task, self.grants)
        copied = copy_shared_weights(self.models[m.init_from], model) if m.init_from else []
        return model, copied

    def _as_built(self, m: ModelConfig, in_channels: int, key: str) -> None:
        """Record ``m`` evaluated as built (e.g. a zoo checkpoint), untrained and uncached.

        Nothing is cached, but the key (which names the model for workers) follows the weights' bytes.
        """
        weights = weights_path(m)
        fingerprint = weights_fingerprint(weights)
        model, copied = self._untrained(m, in_channels)
        self.models[m.name] = model.eval()
        self.infos[m.name] = {
            "source": "checkpoint file" if weights is not None else "as built",
            "training": "none",
            "path": str(weights) if weights is not None else None,
            "weights_sha256": fingerprint,
            "init_from": m.init_from,
            "init_tensors": len(copied),
            "cache_key": key,
        }
        log.info("model %s evaluated as built (no training)", m.name)

    def _train(self, m: ModelConfig, in_channels: int, key: str, directory: Path) -> None:
        fingerprint = weights_fingerprint(weights_path(m))
        fit_cfg = fit_config_for(self.cfg, m)
        if self._train_tensors is None:
            self._train_tensors = stack_images([self.train_ds[i] for i in range(len(self.train_ds))])
        model, copied = self._untrained(m, in_channels)
        progress = self.progress
        task = progress.start(f"training {m.name} ({m.training})", fit_cfg.epochs)
        t0 = time.perf_counter()

        def on_epoch(epoch: int, total: int, row: dict[str, float], task: int = task) -> None:
            progress.advance(task)

        result = fit(model, self._train_tensors, config=fit_cfg, progress=on_epoch)
        progress.finish(task)
        meta: dict[str, object] = {
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
        self.models[m.name] = model.eval()
        self.infos[m.name] = {"source": "trained", "path": str(directory), **meta, "cache_key": key}


def get_models(
    cfg: AuditConfig,
    train_ds: ImageDataset,
    data_info: DataInfo,
    cache: Path,
    progress: Progress,
    grants: Grants = NO_GRANTS,
) -> tuple[dict[str, ModelWrapper], dict[str, dict[str, object]]]:
    """Return the audited models by name and a description of each (where it came from, its validation).

    ``grants`` is what the caller allows beyond safe loading; a model whose config asks for more is refused.
    """
    source = _ModelSource(cfg, train_ds, data_info, cache, progress, grants)
    for m in cfg.models:
        source.add(m)
    return source.models, source.infos
