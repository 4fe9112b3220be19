"""One validation helper for integer and number hyper-parameters: 2.7 and True are refused, not coerced.

Before it, ``int(v) < 1`` turned ``steps=2.7`` into 2 and accepted ``True`` as 1 in LIME, PGD and APGD.
"""

from __future__ import annotations

import numpy as np
import pytest

import robustxai as rx
from robustxai import RobustXAIError
from robustxai._validate import check_int, check_number, check_optional_int

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = "tests internals of robustxai._validate"

BAD_INTS = [2.7, True, "3", None]


@pytest.mark.parametrize("value", BAD_INTS)
def test_check_int_refuses_what_is_not_an_integer(value) -> None:
    with pytest.raises(RobustXAIError, match=r"^steps must be an integer ≥ 1, got"):
        check_int(value, "steps", minimum=1)


def test_check_int_takes_integers_and_numpy_integers() -> None:
    assert check_int(3, "steps", minimum=1) == 3 and type(check_int(np.int64(3), "n")) is int
    with pytest.raises(RobustXAIError, match="≥ 1, got 0"):
        check_int(0, "steps", minimum=1)
    assert check_optional_int(None, "window", minimum=1) is None
    with pytest.raises(RobustXAIError, match="window must be None or an integer ≥ 1, got 2.5"):
        check_optional_int(2.5, "window", minimum=1)


@pytest.mark.parametrize("value", [True, "0.5", float("nan"), float("inf"), 0.0, 1.5])
def test_check_number_refuses_bools_text_non_finite_and_out_of_range(value) -> None:
    with pytest.raises(RobustXAIError, match=r"^rho must be a finite number > 0 and ≤ 1, got"):
        check_number(value, "rho", above=0, maximum=1)


def test_check_number_takes_ints_and_floats() -> None:
    assert check_number(1, "rho", above=0, maximum=1) == 1.0
    assert check_number(np.float32(0.5), "rho") == 0.5


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda v: rx.create_explainer("lime", n_samples=v), "n_samples"),
        (lambda v: rx.create_explainer("lime", n_segments=v), "n_segments"),
        (lambda v: rx.create_explainer("lime", top_k=v), "top_k"),
        (lambda v: rx.create_attack("pgd", steps=v), "steps"),
        (lambda v: rx.create_attack("bim", steps=v), "steps"),
        (lambda v: rx.create_attack("apgd", steps=v), "steps"),
        (lambda v: rx.create_attack("apgd", restarts=v), "restarts"),
        (lambda v: rx.create_explainer("xrai", min_size=v), "min_size"),
        (lambda v: rx.create_explainer("occlusion", window=v), "window"),
        (lambda v: rx.create_explainer("integrated_gradients", n_steps=v), "n_steps"),
    ],
)
@pytest.mark.parametrize("value", [2.7, True])
def test_plugins_refuse_fractional_and_boolean_counts(make, name, value) -> None:
    with pytest.raises(RobustXAIError, match=rf"^{name} must be (None or )?an integer"):
        make(value)


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda v: rx.create_explainer("lime", kernel_width=v), "kernel_width"),
        (lambda v: rx.create_attack("apgd", rho=v), "rho"),
        (lambda v: rx.create_explainer("xrai", area_threshold=v), "area_threshold"),
        (lambda v: rx.create_explainer("deeplift", eps=v), "eps"),
    ],
)
@pytest.mark.parametrize("value", [True, "1", float("nan")])
def test_plugins_refuse_non_numbers(make, name, value) -> None:
    with pytest.raises(RobustXAIError, match=rf"^{name} must be a finite number"):
        make(value)


@pytest.mark.parametrize("name", ["epochs", "batch_size", "attack_steps", "eps_warmup_epochs", "patience"])
@pytest.mark.parametrize("value", [2.5, True])
def test_fit_config_refuses_fractional_and_boolean_counts(name, value) -> None:
    with pytest.raises(RobustXAIError, match=rf"^{name} must be an integer"):
        rx.FitConfig(**{name: value})


def _manipulate(**kw):
    from robustxai.manipulate import Manipulate

    return Manipulate(**kw)


def _selection(**kw):
    from robustxai.manipulate import Selection

    return Selection(rule="real", **kw)


def _budget(**kw):
    from robustxai.manipulate import Budget

    return Budget(**kw)


def _schedule(**kw):
    from robustxai.manipulate import beta_schedule

    return beta_schedule(**{"start": 3.0, "end": 100.0, "steps": 10, **kw})


@pytest.mark.parametrize(
    ("build", "keyword", "value"),
    [
        (_manipulate, "iterations", 2.7),
        (_manipulate, "iterations", True),
        (_manipulate, "lr", True),
        (_manipulate, "lr", float("nan")),
        (_manipulate, "target_size", True),
        (_selection, "refine_iterations", 1.5),
        (_selection, "refine_lr", True),
        (_budget, "ssim_floor", True),
        (_budget, "smooth", float("nan")),
        (_schedule, "steps", 2.7),
        (_schedule, "start", True),
    ],
)
def test_the_manipulation_attack_refuses_what_is_not_a_count_or_a_number(build, keyword, value) -> None:
    """Manipulate and its strategies used ``int(v) < 1`` and ``float(v)``: 2.7 ran as 2, True as 1."""
    with pytest.raises(RobustXAIError, match=keyword.replace("start", "beta_start")):
        build(**{keyword: value})
