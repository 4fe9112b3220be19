"""Reopen a finished run to recompute any map on demand, exactly as the audit computed it (the studio's hook).

A run stores pixels and maps only for the report's figure images; the studio shows every test image with
every map, so it asks this module for the rest. :func:`open_run_context` rebuilds the run's world from its
resolved ``config.toml``: the test set (:func:`robustxai.audit._stages_data.build_datasets`), the models
from the model cache (loaded lazily, never trained: a model missing from the cache is a one-line
:class:`~robustxai._errors.RobustXAIError`), the attacks and explainers from their registries with the run's
parameters.

Exactness: an attacked image is read from the run's ``adv/`` file when the audit persisted it, else the
robustness unit holding the image is rerun with the unit's own seed (:func:`robustxai.audit._plan.unit_seed`)
on the same shard, so batches and random starts are those of the audit. A map of an image of the
explanation subset reruns its explanation unit's batch, condition by condition, under the unit's seed (what
a stochastic explainer draws depends on what was drawn before); any other image is explained alone under a
seed derived from the run seed and the map's identity (reproducible, though the audit never explained it).
Nothing is written: not in the run directory, not in the cache (synthetic images missing from the data
cache are refused, not regenerated).
"""

from __future__ import annotations

import logging
import threading
import tomllib
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from robustxai._errors import RobustXAIError
from robustxai.audit._cache import cache_root, is_complete
from robustxai.audit._config import AuditConfig, validate_config
from robustxai.audit._plan import (
    EXPLANATION_SHARD_BATCHES,
    ROBUSTNESS_SHARD_BATCHES,
    AuditData,
    explained_conditions,
    shards,
    unit_seed,
)
from robustxai.audit._progress import LogProgress
from robustxai.audit._stages_data import DataInfo, build_datasets, synthetic_root
from robustxai.audit._stages_eval import explainer_for, robustness_shard
from robustxai.audit._stages_models import build_untrained, copy_shared_weights, model_key, trained_dir
from robustxai.models import ModelWrapper, load_model
from robustxai.results._schema import CLEAN_CONDITION as CLEAN, Condition

log = logging.getLogger(__name__)

_ADV_CACHE = 8  # attacked shards kept in memory (a shard is 4 batches of images)


@dataclass
class RunContext:
    """A finished run reopened for recomputation. Build it with :func:`open_run_context`.

    Attributes:
        run_dir: The run directory.
        cfg: The run's resolved configuration.
        data: The test set as the audit saw it (ids, labels, the explanation subset and its truth).
        data_info: The data description the model cache keys depend on.
    """

    run_dir: Path
    cfg: AuditConfig
    data: AuditData
    data_info: DataInfo
    _models: dict[str, ModelWrapper] = field(default_factory=dict)
    _keys: dict[str, str] = field(default_factory=dict)
    _adv: OrderedDict[str, torch.Tensor] = field(default_factory=OrderedDict)
    _lock: threading.RLock = field(default_factory=threading.RLock)

    @property
    def sample_ids(self) -> list[str]:
        """The test images' ids, in test-set order (an image is addressed by its index here)."""
        return self.data.ids

    def image(self, index: int) -> torch.Tensor:
        """Test image ``index`` ``[C, H, W]`` in [0, 1]."""
        return self.data.dataset[self._check(index)].image

    def truth(self, index: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The expert truth of image ``index``: its mask ``[H, W]`` and points ``[P, 2]`` (x, y), or None."""
        t = self.data.dataset[self._check(index)].truth
        return t.mask, (np.asarray(t.points) if t.points is not None else None)

    def model(self, name: str) -> ModelWrapper:
        """The audited model ``name``, from its checkpoint or the model cache (never trained here).

        Raises:
            RobustXAIError: If the run has no such model or its trained weights are not in the cache.
        """
        with self._lock:
            if name not in self._models:
                precision = next((m.precision for m in self.cfg.models if m.name == name), "float32")
                self._models[name] = self._load(name).set_precision(precision)  # as the audit ran it
            return self._models[name]

    def _load(self, name: str) -> ModelWrapper:
        m = next((m for m in self.cfg.models if m.name == name), None)
        if m is None:
            raise RobustXAIError(f"the run has no model {name!r}")
        if m.checkpoint:
            return load_model(m.checkpoint).eval()
        parent = self._key(m.init_from) if m.init_from else None
        key = model_key(self.cfg, m, self.data_info, int(self.data_info["channels"]), parent)
        if m.training == "none":
            model = build_untrained(
                m,
                list(self.data_info["class_names"]),
                int(self.data_info["channels"]),
                str(self.data_info.get("task", "multiclass")),
            )
            if m.init_from:
                copy_shared_weights(self.model(m.init_from), model)
            return model.eval()
        directory = trained_dir(cache_root(self.cfg.cache_dir), m, key)
        if not is_complete(directory):
            raise RobustXAIError(
                f"model {name!r} is not in the model cache ({directory}); maps cannot be recomputed "
                "without retraining it (rerun the audit to restore the cache)"
            )
        return load_model(directory).eval()

    def _key(self, name: str) -> str:
        if name not in self._keys:
            m = next(m for m in self.cfg.models if m.name == name)
            parent = self._key(m.init_from) if m.init_from else None
            self._keys[name] = model_key(self.cfg, m, self.data_info, int(self.data_info["channels"]), parent)
        return self._keys[name]

    def _check(self, index: int) -> int:
        if not 0 <= index < len(self.data):
            raise RobustXAIError(f"no test image {index} in this run (it has {len(self.data)})")
        return index

    def _condition(self, condition: str, epsilon: float) -> Condition:
        if condition == CLEAN[0]:
            return CLEAN
        for a in self.cfg.attacks:
            for e in a.epsilons:
                if a.name == condition and abs(float(e) - epsilon) <= 1e-9 * max(1.0, abs(epsilon)):
                    return (a.name, float(e))
        raise RobustXAIError(f"the run has no condition {condition}@{epsilon:g}")

    def adversarial(self, index: int, model: str, condition: str, epsilon: float) -> torch.Tensor:
        """Image ``index`` as the audit attacked it for ``model`` (the clean image under ``clean``)."""
        cond = self._condition(condition, epsilon)
        if cond == CLEAN:
            return self.image(index)
        size = ROBUSTNESS_SHARD_BATCHES * self.cfg.batch_size
        k = self._check(index) // size
        uid = f"robustness/{model}/{cond[0]}@{cond[1]!r}/{k}"  # the audit's unit id (plan._robustness_id)
        path = self.data.adv_path(uid)
        if path.is_file():
            saved = load_file(str(path))
            where = (saved["indices"] == index).nonzero().flatten().tolist()
            if where:
                return saved["images"][where[0]]
        with self._lock:
            adv = self._adv.get(uid)
            if adv is None:
                indices = shards(len(self.data), size)[k]
                images, labels = self.data.load(indices)
                net = self.model(model)
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(unit_seed(self.cfg.seed, uid))
                    ids = [self.data.ids[i] for i in indices]
                    _, adv, _ = robustness_shard(model, net, self.cfg, cond, images, labels, ids)
                self._adv[uid] = adv
                if len(self._adv) > _ADV_CACHE:
                    self._adv.popitem(last=False)
            self._adv.move_to_end(uid)
            return adv[index - k * size]

    def explain(self, index: int, model: str, method: str, condition: str, epsilon: float) -> np.ndarray:
        """The map ``[H, W]`` of ``method`` on image ``index`` for ``model`` under a condition, as audited.

        Raises:
            RobustXAIError: For an unknown image, model, method or condition, or a model not in the cache.
        """
        cond = self._condition(condition, epsilon)
        if method not in [*self.cfg.explain.methods, "random"]:
            raise RobustXAIError(f"the run has no explainer {method!r}")
        net = self.model(model)
        bs = self.cfg.explain.batch_size
        with self._lock:  # torch's global RNG is seeded below: one recomputation at a time
            if self._check(index) in self.data.subset:
                p = self.data.subset.index(index)
                k = p // (EXPLANATION_SHARD_BATCHES * bs)
                positions = shards(len(self.data.subset), EXPLANATION_SHARD_BATCHES * bs)[k]
                test_idx = [self.data.subset[q] for q in positions]
                conds = explained_conditions(self.cfg)
                if cond in conds:
                    conds = conds[: conds.index(cond) + 1]
                    uid = f"explanation/{model}/{method}/{k}"  # the audit's unit id (plan._plan_explanations)
                    images = {c: self._stack(test_idx, model, c) for c in conds}
                    with torch.random.fork_rng(devices=[]):
                        torch.manual_seed(unit_seed(self.cfg.seed, uid))
                        explainer = explainer_for(self.cfg, method)
                        for c in conds:
                            maps = torch.cat([explainer.explain(net, x).maps for x in images[c].split(bs)])
                    return maps[test_idx.index(index)].detach().cpu().numpy()
            image = self.adversarial(index, model, *cond)[None]
            uid = f"studio/{model}/{method}/{cond[0]}@{cond[1]!r}/{self.data.ids[index]}"
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(unit_seed(self.cfg.seed, uid))
                return explainer_for(self.cfg, method).explain(net, image).maps[0].detach().cpu().numpy()

    def _stack(self, test_idx: list[int], model: str, cond: Condition) -> torch.Tensor:
        if cond == CLEAN:
            return self.data.load(tuple(test_idx))[0]
        return torch.stack([self.adversarial(i, model, *cond) for i in test_idx])


def open_run_context(run_dir: str | Path) -> RunContext:
    """Reopen a finished run for recomputing maps (see the module docstring).

    Args:
        run_dir: The run directory (its ``config.toml`` is read).

    Returns:
        The run's context; its models are loaded on first use.

    Raises:
        RobustXAIError: If the run has no readable config or its data cannot be rebuilt.
    """
    path = Path(run_dir)
    try:
        raw = tomllib.loads((path / "config.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise RobustXAIError(f"cannot read the run's config.toml in {path}: {err}") from None
    cfg = validate_config(raw, str(path / "config.toml"))
    cache = cache_root(cfg.cache_dir)
    if cfg.data.source == "synthetic-fracture" and cfg.data.write_to_disk:
        root = synthetic_root(cfg, cache)
        if not all(is_complete(root / part) for part in ("train", "test")):  # never rewrite the cache here
            raise RobustXAIError(
                f"the run's synthetic images are not in the data cache ({root}); rerun the audit"
            )
    _, test_ds, info = build_datasets(cfg, cache, LogProgress())
    return RunContext(path, cfg, AuditData(test_ds, cfg.explain.n_images, path), info)
