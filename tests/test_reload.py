"""open_run_context: a finished run's maps recomputed on demand equal the audited ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from robustxai import RobustXAIError
from robustxai.audit._reload import open_run_context
from robustxai.explain import create_explainer
from robustxai.results import Store
from web_fixtures import make_audited_run

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = "tests internals of robustxai.audit._reload"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny audited run (one model, PGD with a random start, a stochastic explainer)."""
    return make_audited_run(tmp_path_factory.mktemp("reload"))


def stored_maps(run: Path) -> Any:
    with Store(run / "results.sqlite", readonly=True) as store:
        return store.figure_maps()


@pytest.mark.slow
def test_recomputed_maps_equal_the_stored_ones(run: Path) -> None:
    ctx = open_run_context(run)
    maps = stored_maps(run)
    assert len(maps) > 0
    for r in maps.itertuples():
        index = ctx.sample_ids.index(r.sample_id)
        got = ctx.explain(index, r.model, r.explainer, r.condition, r.epsilon)
        # The store keeps maps min-max normalised as float16: encode the recomputed one the same way.
        assert np.ptp(got) > 0
        encoded = ((got - got.min()) / np.ptp(got)).astype(np.float16).astype(np.float32)
        np.testing.assert_allclose(encoded, r.map, atol=1e-5, err_msg=f"{r.explainer} {r.condition}")


@pytest.mark.slow
def test_recomputed_adversarial_image_equals_the_persisted_one(run: Path) -> None:
    ctx = open_run_context(run)
    adv_files = sorted((run / "adv").glob("*.safetensors"))
    assert adv_files
    index = ctx.data.subset[0]
    saved = ctx.adversarial(index, "a", "pgd", 4 / 255)
    for f in adv_files:  # without the file, the attack is rerun under the unit's seed
        f.rename(f.with_suffix(".bak"))
    try:
        again = open_run_context(run).adversarial(index, "a", "pgd", 4 / 255)
    finally:
        for f in adv_files:
            f.with_suffix(".bak").rename(f)
    torch.testing.assert_close(again, saved, atol=1e-6, rtol=0)


@pytest.mark.slow
def test_an_image_outside_the_subset_is_explained_on_demand(run: Path) -> None:
    ctx = open_run_context(run)
    index = next(i for i in range(len(ctx.sample_ids)) if i not in ctx.data.subset)
    got = ctx.explain(index, "a", "saliency", "clean", 0.0)
    direct = create_explainer("saliency").explain(ctx.model("a"), ctx.image(index)[None]).maps[0]
    np.testing.assert_allclose(got, direct.numpy(), atol=1e-6)
    assert got.shape == tuple(ctx.image(index).shape[-2:])


@pytest.mark.slow
def test_unknown_names_and_a_missing_model_are_one_line_errors(run: Path, tmp_path: Path) -> None:
    ctx = open_run_context(run)
    with pytest.raises(RobustXAIError, match="no test image 99"):
        ctx.explain(99, "a", "saliency", "clean", 0.0)
    with pytest.raises(RobustXAIError, match="no model"):
        ctx.explain(0, "zz", "saliency", "clean", 0.0)
    with pytest.raises(RobustXAIError, match="no explainer"):
        ctx.explain(0, "a", "gradcam", "clean", 0.0)
    with pytest.raises(RobustXAIError, match="no condition"):
        ctx.explain(0, "a", "saliency", "fgsm", 0.1)
    text = (run / "config.toml").read_text().replace(str(run.parent / "cache"), str(tmp_path / "empty"))
    other = tmp_path / "copy"
    other.mkdir()
    (other / "config.toml").write_text(text)
    with pytest.raises(RobustXAIError, match="not in the model cache"):
        open_run_context(other).model("a")


@pytest.mark.slow
def test_synthetic_images_missing_from_the_cache_are_refused_not_written(run: Path, tmp_path: Path) -> None:
    text = (run / "config.toml").read_text()
    assert "write_to_disk = false" in text
    text = text.replace(str(run.parent / "cache"), str(tmp_path / "empty"))
    (tmp_path / "config.toml").write_text(text.replace("write_to_disk = false", "write_to_disk = true"))
    with pytest.raises(RobustXAIError, match="not in the data cache"):
        open_run_context(tmp_path)
    assert not (tmp_path / "empty").exists()
