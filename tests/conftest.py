"""Shared fixtures: tiny models and images, and an isolated cache for every test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import robustxai as rx


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep the data and model cache out of ~/.cache (session-wide, so module fixtures see it too)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ROBUSTXAI_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        yield


@pytest.fixture
def tiny_model() -> rx.ModelWrapper:
    torch.manual_seed(0)
    return rx.create_model("smallcnn", widths=(4, 8, 8, 8), class_names=["normal", "fracture"]).eval()


@pytest.fixture
def tiny_attention_model() -> rx.ModelWrapper:
    torch.manual_seed(1)
    return rx.create_model("smallcnn-attention", widths=(4, 8, 8, 8)).eval()


@pytest.fixture
def images() -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.rand(4, 1, 32, 32, generator=gen)


@pytest.fixture
def labels() -> torch.Tensor:
    return torch.tensor([0, 1, 1, 0])


@pytest.fixture
def run_root(tmp_path: Path) -> Path:
    return tmp_path / "runs"


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread, and far faster than two on a loaded machine.

    Test files of tiny-model explainers use it for every test: ``pytestmark = pytest.mark.usefixtures(...)``.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
