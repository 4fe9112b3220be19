"""Executors: Ray gives the tables of the local executor; missing Ray and bad options are clear errors."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

from robustxai import ConfigError, RobustXAIError
from robustxai._pipeline import run_audit
from robustxai.audit import load_config
from robustxai.audit._executor import LocalExecutor
from robustxai.audit._executors import create_executor
from robustxai.results import Store

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = "tests internals of robustxai._pipeline, robustxai.audit._executor, robustxai.audit._executors"

TINY = {
    "name": "tiny-ray",
    "batch_size": 4,
    "data": {"n_train": 60, "n_test": 20, "size": 32, "write_to_disk": False},
    "training": {"epochs": 1, "attack_steps": 1, "eps_warmup_epochs": 0},
    "models": [
        {"name": "a", "arch": "smallcnn", "arch_kwargs": {"widths": [4, 8, 8, 8]}},
        {"name": "b", "arch": "smallcnn-attention", "arch_kwargs": {"widths": [4, 8, 8, 8]}},
    ],
    "explain": {"methods": ["saliency", "gradcam"], "n_images": 4, "batch_size": 2},
    "report": {"n_figure": 1},
}


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield ray
    ray.shutdown()


def test_unknown_executor_and_misplaced_address() -> None:
    with pytest.raises(ConfigError, match="unknown executor 'dask'; known executors: local, ray"):
        create_executor("dask")
    with pytest.raises(ConfigError, match="--address is only used with --executor ray"):
        create_executor("local", address="10.0.0.1:6379")
    assert isinstance(create_executor("local"), LocalExecutor)


def test_missing_ray_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    executor = create_executor("ray")
    with pytest.raises(RobustXAIError, match=r"pip install 'robustxai\[ray\]'"):
        executor.run([], None, lambda unit, result: None)  # type: ignore[arg-type]


def test_config_rejects_unknown_executor_kind() -> None:
    with pytest.raises(ConfigError, match="executor.kind"):
        load_config(profile="smoke", executor={"kind": "slurm"})


def test_gpus_the_cluster_lacks_are_refused(ray_cluster: Any) -> None:
    with pytest.raises(ConfigError, match="the Ray cluster has 0 GPU"):
        create_executor("ray", num_gpus=1).run([], None, lambda unit, result: None)  # type: ignore[arg-type]


@pytest.mark.slow
def test_ray_audit_equals_local_audit(ray_cluster: Any, tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = load_config(profile="smoke", **TINY)
        local = run_audit(cfg, tmp_path / "local")
        ray_cfg = load_config(profile="smoke", **{**TINY, "executor": {"kind": "ray"}})
        remote = run_audit(ray_cfg, tmp_path / "ray")
    finally:
        torch.set_num_threads(threads)
    assert remote.units_run == local.units_run > 0
    for name in ("robustness", "alignment"):
        a = pd.read_csv(local.run_dir / "tables" / f"{name}.csv")
        b = pd.read_csv(remote.run_dir / "tables" / f"{name}.csv")
        pd.testing.assert_frame_equal(a, b, obj=name)
    # The driver alone wrote the store: every unit once, the same rows as the local run (NaN equals NaN).
    for table in ("units", "predictions", "metrics"):
        with Store(local.store, readonly=True) as a, Store(remote.store, readonly=True) as b:
            ta, tb = a.table(table), b.table(table)
        if table == "units":
            assert sorted(ta["unit"]) == sorted(tb["unit"]) and ta["unit"].is_unique
        else:
            pd.testing.assert_frame_equal(ta, tb, obj=table)
