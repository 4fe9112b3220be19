"""Plug-in hyper-parameters: ``params()`` is the typed constructor config, stable and free of per-call state.

The golden dicts below are what ``params()`` returned before it was built from the constructor's declared
keywords (DeepLIFT's per-call ``summation_held`` aside, which moved into the call's ``Explanation``). No
cache key of the audit is built from ``params()`` today (its caches are keyed by its configuration:
``audit/cache.key_of`` called by ``stages_models.model_key`` and ``stages_data``); pinning the dicts and
their hashes keeps any report or key built from them stable, and proves the move changed none of them.
"""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

import robustxai as rx
from robustxai import RobustXAIError

GOLDEN_EXPLAINERS = {
    "attention_rollout": {"head_fusion": "mean", "reduction": "max_abs"},
    "deeplift": {
        "baseline": "zero",
        "batch_size": None,
        "blur_sigma": 5.0,
        "eps": 1e-10,
        "reduction": "max_abs",
    },
    "gradcam": {"layer": None, "reduction": "max_abs"},
    "gradient_rollout": {"reduction": "max_abs"},
    "guided_gradcam": {"interpolate_mode": "bilinear", "layer": None, "reduction": "max_abs"},
    "input_x_gradient": {"reduction": "max_abs"},
    "integrated_gradients": {
        "baseline": "zero",
        "batch_size": None,
        "blur_sigma": 5.0,
        "method": "riemann_middle",
        "n_steps": 20,
        "reduction": "max_abs",
    },
    "lime": {
        "alpha": 1.0,
        "batch_size": None,
        "compactness": 10.0,
        "kernel_size": 4.0,
        "kernel_width": 1.0,
        "max_dist": 200.0,
        "n_samples": 256,
        "n_segments": 50,
        "ratio": 0.2,
        "reduction": "max_abs",
        "seed": 0,
        "segmentation": "quickshift",
        "top_k": None,
    },
    "occlusion": {"baseline": "zero", "batch_size": None, "reduction": "max", "stride": None, "window": None},
    "random": {"reduction": "max_abs", "seed": 0},
    "saliency": {"reduction": "max_abs"},
    "smoothgrad": {"batch_size": None, "n_samples": 25, "noise": 0.15, "reduction": "max_abs", "seed": 0},
    "xrai": {
        "area_threshold": 1.0,
        "baseline": "zero",
        "batch_size": None,
        "dilation_radius": 5,
        "min_pixel_diff": 50,
        "min_size": 150,
        "n_steps": 20,
        "reduction": "max",
        "reference_size": 224,
        "scales": (50.0, 100.0, 150.0, 250.0, 500.0, 1200.0),
        "sigma": 0.8,
    },
}
_EPS = {"eps": 4 / 255, "norm": "linf", "targeted": False}
GOLDEN_ATTACKS = {
    "apgd": {**_EPS, "loss": "ce", "restarts": 1, "rho": 0.75, "seed": 0, "steps": 100},
    "bim": {**_EPS, "random_start": False, "seed": 0, "step_size": None, "steps": 10},
    "fgsm": _EPS,
    "pgd": {**_EPS, "random_start": True, "seed": 0, "step_size": None, "steps": 10},
}
#: A key of each plug-in's default ``params()`` as the code before the typed params computed it
#: (``vars(self)``); DeepLIFT's changed by design: its per-call ``summation_held`` is no longer a parameter.
GOLDEN_KEYS = {
    "attention_rollout": "3b1b527c456fed2d",
    "gradcam": "bf9fb85b37d1b79c",
    "gradient_rollout": "0eeb0a3e80b9dde3",
    "guided_gradcam": "3fb115def13e2dca",
    "input_x_gradient": "0eeb0a3e80b9dde3",
    "integrated_gradients": "1d852b4354122d2c",
    "lime": "ce0c55437a169629",
    "occlusion": "000766727c08be9d",
    "random": "706c748dfb2c03f8",
    "saliency": "0eeb0a3e80b9dde3",
    "smoothgrad": "caae30991c8eac19",
    "xrai": "339b24f22e3b324c",
    "apgd": "0566bbcefc16916d",
    "bim": "c79528b9074f6eb3",
    "fgsm": "b9ac6791cbf8900f",
    "pgd": "848fdcb19a88f3c0",
}


def _key(params: dict[str, object]) -> str:
    """A cache key of a params dict, as ``audit/cache.key_of`` hashes its parts (without its version)."""
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:16]


def test_every_plugin_is_pinned() -> None:
    assert sorted(GOLDEN_EXPLAINERS) == rx.list_explainers()
    assert sorted(GOLDEN_ATTACKS) == rx.list_attacks()


@pytest.mark.parametrize("name", sorted(GOLDEN_EXPLAINERS))
def test_explainer_params_are_the_constructor_config(name) -> None:
    explainer = rx.create_explainer(name)
    assert explainer.params() == GOLDEN_EXPLAINERS[name]
    keywords = {k: v for k, v in explainer.params().items() if k not in explainer.fixed_params}
    rebuilt = rx.create_explainer(name, **keywords)  # the config rebuilds the explainer
    assert rebuilt.params() == explainer.params()


@pytest.mark.parametrize("name", sorted(GOLDEN_ATTACKS))
def test_attack_params_are_the_constructor_config(name) -> None:
    attack = rx.create_attack(name, eps=4 / 255)
    assert attack.params() == GOLDEN_ATTACKS[name]
    keywords = {k: v for k, v in attack.params().items() if k not in attack.fixed_params}
    assert rx.create_attack(name, **keywords).params() == attack.params()


def test_cache_keys_of_params_are_unchanged() -> None:
    found = {name: _key(rx.create_explainer(name).params()) for name in rx.list_explainers()}
    found |= {name: _key(rx.create_attack(name, eps=4 / 255).params()) for name in rx.list_attacks()}
    del found["deeplift"]
    assert found == GOLDEN_KEYS


@pytest.mark.parametrize("name", ["occlusion", "deeplift"])
def test_a_call_leaves_params_and_the_explainer_unchanged(tiny_model, name) -> None:
    """Per-call diagnostics come back in the Explanation; nothing of a call stays on the explainer."""
    explainer = rx.create_explainer(name)
    before, state = explainer.params(), dict(vars(explainer))
    found = explainer.explain(tiny_model.eval(), torch.rand(2, 1, 32, 32), target=0)
    assert explainer.params() == before and vars(explainer).keys() == state.keys()
    if name == "occlusion":
        assert found.engine == "incremental"
    else:
        assert found.approximate is False and found.engine is None


def test_calling_an_explainer_is_a_deprecated_alias_of_explain(tiny_model) -> None:
    explainer, x = rx.create_explainer("saliency"), torch.rand(2, 1, 32, 32)
    with pytest.warns(DeprecationWarning, match="explain"):
        maps = explainer(tiny_model, x, target=1)
    torch.testing.assert_close(maps, explainer.explain(tiny_model, x, target=1).maps)


def test_the_verb_is_explain() -> None:
    """One public verb: the method hooks are private, the multi-target helper a function."""
    for name in rx.list_explainers():
        explainer = rx.create_explainer(name)
        for gone in ("attribute", "attribute_predicted", "explain_targets", "last_approximate", "last_path"):
            assert not hasattr(explainer, gone), (name, gone)


def test_a_plugin_attribute_that_is_not_a_hyper_parameter_is_refused() -> None:
    explainer = rx.create_explainer("saliency")
    explainer.reduction = torch.zeros(1)  # type: ignore[assignment]
    with pytest.raises(RobustXAIError, match="not a plain hyper-parameter"):
        explainer.params()


def test_an_attack_is_called_and_its_hook_is_private() -> None:
    for name in rx.list_attacks():
        assert not hasattr(rx.create_attack(name, eps=4 / 255), "perturb"), name
