"""Explainers under a reduced-precision forward pass (``[[models]] precision``): no false verdicts.

A model set to bfloat16 rounds its logits to bfloat16's epsilon; checks written for float32 rounding must not
read that rounding as a defect of the model (DeepLIFT's completeness check) or of an engine (the incremental
occlusion engine's comparison with the model's own forward pass).
"""

from __future__ import annotations

import logging

import pytest
import torch

import robustxai as rx
from robustxai.models._wrapper import forward_dtype, full_precision

WHITE_BOX = "the autocast helpers of the model wrapper (forward_dtype, full_precision)"


@pytest.fixture()
def model() -> rx.ModelWrapper:
    torch.manual_seed(0)
    return rx.create_model("smallcnn", widths=(4, 8, 8, 8), class_names=["normal", "fracture"]).eval()


def test_deeplift_in_bfloat16_is_not_flagged_approximate(
    model: rx.ModelWrapper, caplog: pytest.LogCaptureFixture
) -> None:
    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    assert not rx.create_explainer("deeplift").explain(model, x).approximate
    model.set_precision("bfloat16")
    with caplog.at_level(logging.WARNING, logger="robustxai.explain._deeplift"):
        out = rx.create_explainer("deeplift").explain(model, x)
    assert not out.approximate
    assert "non-linearity" not in caplog.text


def test_occlusion_in_bfloat16_keeps_the_incremental_engine(
    model: rx.ModelWrapper, caplog: pytest.LogCaptureFixture
) -> None:
    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    model.set_precision("bfloat16")
    with caplog.at_level(logging.INFO, logger="robustxai.explain._incremental"):
        out = rx.create_explainer("occlusion").explain(model, x)
    assert out.engine == "incremental", caplog.text
    assert "does not reproduce" not in caplog.text
    assert model.precision == "bfloat16"  # the float32 comparison pass does not change the setting


def test_full_precision_restores_the_setting_even_on_error(model: rx.ModelWrapper) -> None:
    model.set_precision("bfloat16")
    assert forward_dtype(model) is torch.bfloat16
    with pytest.raises(RuntimeError), full_precision(model):
        assert forward_dtype(model) is None
        raise RuntimeError("boom")
    assert model.precision == "bfloat16"
