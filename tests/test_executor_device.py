"""Where units compute: the device rule, moving inputs and results, and CPU runs unchanged by the plumbing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from robustxai import ConfigError
from robustxai._pipeline import run_audit
from robustxai.audit import AuditConfig, load_config
from robustxai.audit._executor import LocalExecutor, choose_device, to_device
from robustxai.audit._executors import create_executor
from robustxai.audit._plan import ExplanationInput, RobustnessInput, UnitResult
from robustxai.audit._stages_eval import ExplainShard

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = (
    "tests internals of robustxai._pipeline, robustxai.audit._executor, robustxai.audit._executors, "
    "robustxai.audit._plan, robustxai.audit._stages_eval"
)

TINY: dict[str, Any] = {
    "name": "tiny-device",
    "batch_size": 4,
    "data": {"n_train": 60, "n_test": 12, "size": 32, "write_to_disk": False},
    "training": {"epochs": 1, "attack_steps": 1, "eps_warmup_epochs": 0},
    "models": [{"name": "a", "arch": "smallcnn", "arch_kwargs": {"widths": [4, 8, 8, 8]}}],
    "attacks": [{"name": "pgd", "epsilons": [4 / 255], "params": {"steps": 2, "random_start": False}}],
    "explain": {"methods": ["saliency"], "n_images": 4, "batch_size": 2, "attacks": ["pgd"]},
    "report": {"n_figure": 1},
    "sanity": {"n_images": 4},
    "manipulation": {"methods": ["saliency"], "transfer_from": [], "n_images": 2, "iterations": 2},
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Any:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_config(**changes: Any) -> AuditConfig:
    return load_config(profile="smoke", **{**TINY, **changes})


@pytest.mark.parametrize(
    ("requested", "cuda", "assigned", "expected"),
    [
        (None, False, False, "cpu"),
        (None, True, False, "cpu"),  # the local executor assigns no GPU: CPU by default, as before
        (None, True, True, "cuda"),  # a Ray task given a GPU computes on it
        (None, False, True, "cpu"),  # given a GPU that torch cannot see (CPU-only torch): CPU
        ("cpu", True, True, "cpu"),
        ("cuda", True, False, "cuda"),
        ("cuda", True, True, "cuda"),
    ],
)
def test_choose_device(requested: str | None, cuda: bool, assigned: bool, expected: str) -> None:
    assert choose_device(requested, cuda_available=cuda, gpus_assigned=assigned) == expected


def test_choose_device_refuses_what_cannot_run() -> None:
    with pytest.raises(ConfigError, match="torch sees no CUDA device"):
        choose_device("cuda", cuda_available=False)
    with pytest.raises(ConfigError, match="unknown executor device 'tpu'"):
        choose_device("tpu", cuda_available=True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error of a machine without a GPU")
def test_local_cuda_without_gpu_fails_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="torch sees no CUDA device"):
        create_executor("local", device="cuda")
    with pytest.raises(ConfigError, match="torch sees no CUDA device"):
        run_audit(tiny_config(executor={"device": "cuda"}), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_ray_cuda_needs_a_reserved_gpu() -> None:
    with pytest.raises(ConfigError, match="needs num_gpus > 0"):
        create_executor("ray", device="cuda", num_gpus=0)
    assert create_executor("ray", num_gpus=1).device is None  # type: ignore[attr-defined]


def test_config_takes_the_device() -> None:
    assert tiny_config().executor.device is None
    assert tiny_config(executor={"device": "cpu"}).executor.device == "cpu"
    with pytest.raises(ConfigError):
        tiny_config(executor={"device": "gpu"})


def test_to_device_moves_every_tensor_and_keeps_the_rest() -> None:
    shard = ExplainShard(
        ids=["s0"],
        images={("clean", 0.0): torch.zeros(1, 1, 2, 2), ("pgd", 0.1): torch.ones(1, 1, 2, 2)},
        masks=torch.zeros(1, 2, 2, dtype=torch.bool),
        points=[np.zeros((1, 2))],
        n_figure=1,
    )
    moved = to_device(ExplanationInput(shard, {("clean", 0.0)}), "meta")
    assert all(t.device.type == "meta" for t in moved.shard.images.values())
    assert moved.shard.masks.device.type == "meta" and moved.shard.masks.dtype == torch.bool
    assert moved.shard.ids == ["s0"] and moved.figure_conditions == {("clean", 0.0)}
    assert isinstance(moved.shard.points[0], np.ndarray)
    rob = to_device(RobustnessInput(torch.zeros(2, 1, 2, 2), torch.zeros(2), ["a", "b"], [0]), "meta")
    assert rob.images.device.type == "meta" and rob.labels.device.type == "meta" and rob.keep == [0]
    pair = to_device((torch.zeros(1), torch.ones(1)), "meta")  # the sanity unit's (images, labels)
    assert isinstance(pair, tuple) and all(t.device.type == "meta" for t in pair)
    back = to_device(UnitResult({"t": [("x", 1.0, np.ones(2))]}, {"a": torch.zeros(1)}), "cpu")
    assert back.rows["t"][0][:2] == ("x", 1.0) and back.arrays["a"].device.type == "cpu"


class MovingExecutor(LocalExecutor):
    """The local executor on a device string that is the CPU but not ``"cpu"``: every unit takes the moving
    path (model to the device, inputs there, results back), which is what a GPU run does."""

    device = "cpu:0"


def test_units_run_end_to_end_on_the_cpu_exactly_as_before(tmp_path: Path) -> None:
    ref = run_audit(tiny_config(), tmp_path / "default")
    pinned = run_audit(tiny_config(executor={"device": "cpu"}), tmp_path / "cpu")
    moved = run_audit(tiny_config(), tmp_path / "moved", executor=MovingExecutor())
    kinds = {u.split("/")[0] for u in _units(ref.store)}
    assert kinds == {"robustness", "explanation", "sanity", "manipulation"}  # every payload kind ran
    for run in (pinned, moved):
        assert run.units_run == ref.units_run
        for csv in sorted((ref.run_dir / "tables").glob("*.csv")):
            assert (run.run_dir / "tables" / csv.name).read_bytes() == csv.read_bytes(), csv.name


def _units(store: Path) -> list[str]:
    from robustxai.results import Store

    with Store(store, readonly=True) as s:
        return sorted(s.done_units())
