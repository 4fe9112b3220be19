"""Registry behaviour shared by every plug-in layer."""

from __future__ import annotations

import pytest

import robustxai as rx
from robustxai import UnknownNameError


@pytest.mark.parametrize(
    ("create", "lister", "bad"),
    [
        (rx.create_attack, rx.list_attacks, "pgdd"),
        (rx.create_explainer, rx.list_explainers, "saliencyy"),
        (rx.create_model, rx.list_models, "resnet9000"),
    ],
)
def test_unknown_name_lists_known_names(create, lister, bad) -> None:
    with pytest.raises(UnknownNameError) as err:
        create(bad)
    message = str(err.value)
    for name in lister():
        assert name in message


def test_unknown_metric_lists_known_names() -> None:
    with pytest.raises(UnknownNameError) as err:
        rx.metrics.get_metric("coverage")
    for name in rx.list_metrics():
        assert name in str(err.value)


def test_did_you_mean() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean 'pgd'"):
        rx.create_attack("pgdd")


@pytest.mark.parametrize("name", rx.list_attacks())
def test_unknown_attack_keyword(name: str) -> None:
    with pytest.raises(UnknownNameError, match="unknown keyword"):
        rx.create_attack(name, epsilon=0.1)


@pytest.mark.parametrize("name", rx.list_explainers())
def test_unknown_explainer_keyword(name: str) -> None:
    with pytest.raises(UnknownNameError, match="accepts"):
        rx.create_explainer(name, n_stepz=3)


def test_unknown_model_keyword() -> None:
    with pytest.raises(UnknownNameError, match="widths"):
        rx.create_model("smallcnn", width=3)


def test_expected_plugins_present() -> None:
    assert {"fgsm", "bim", "pgd"} <= set(rx.list_attacks())
    assert {"saliency", "integrated_gradients", "gradcam", "random"} <= set(rx.list_explainers())
    assert {"smallcnn", "smallcnn-attention"} <= set(rx.list_models())
    assert {"accuracy", "point_coverage", "topk_iou", "rmse", "ssim"} <= set(rx.list_metrics())
