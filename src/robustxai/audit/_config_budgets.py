"""Perturbation budgets a config may give, checked where the config is validated.

Images are in [0, 1], so an L∞ budget ε ≥ 1 allows any image: it bounds nothing, and a run with
``epsilons = [2.0]`` would report "robust accuracy" under an unbounded attack without a word. Such budgets
(attack ``epsilons`` of an L∞ attack, ``training.eps`` of PGD adversarial training, ``manipulation.eps`` and
any ``eps`` in the manipulation's keyword tables) are refused; L2 budgets may exceed 1. Also here: a
model's float16 precision needs a GPU (:func:`check_precisions`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

_LINF_HINT = "budgets are in [0, 1] pixel units (4/255 ≈ 0.0157); an L∞ ε ≥ 1 allows any image"


def check_linf(values: list[float | None], where: str) -> None:
    """Raise ``ValueError`` (pydantic turns it into a config error) for L∞ budgets of 1 or more."""
    big = [v for v in values if v is not None and v >= 1]
    if big:
        raise ValueError(f"{where}: L∞ budget(s) {big} ≥ 1: {_LINF_HINT}")


def check_attack_budgets(name: str, epsilons: list[float], params: Mapping[str, object]) -> None:
    """An attack's budgets: L∞ unless ``params.norm`` says otherwise (built-in attacks default to L∞)."""
    if str(params.get("norm", "linf")).lower() == "linf":
        check_linf(list(epsilons), f"attack {name!r} epsilons")


def check_manipulation_budgets(
    eps: float | None, params: Mapping[str, object], method_params: Mapping[str, Mapping[str, object]]
) -> None:
    """The manipulation's L∞ bound, and any ``eps`` its keyword tables (per method too) would pass on."""
    tables = [params] + [
        t for m in method_params.values() for t in (m, m.get("params") or {}) if isinstance(t, Mapping)
    ]
    values = [eps] + [t.get("eps") for t in tables]
    bad = [v for v in values if v is not None and (isinstance(v, bool) or not isinstance(v, int | float))]
    if bad:
        raise ValueError(f"manipulation eps must be a number, got {bad}")
    numbers: list[float | None] = [v for v in values if isinstance(v, int | float)]  # the rest are None
    check_linf(numbers, "manipulation eps (omit it for an unbounded attack)")


def check_precisions(models: Sequence[Any], executor: Any) -> None:
    """float16 autocast only with ``executor.device = 'cuda'``, the device the plan times and the run uses.

    Ray tasks given GPUs but no ``device`` are refused too: the plan would time the models on the driver,
    whose device is then the CPU, where float16 cannot run (one rule that the check, plan and run agree on).
    """
    bad = [i for i, m in enumerate(models) if m.precision == "float16"]
    if bad and executor.device != "cuda":
        raise ValueError(
            f"models.{bad[0]}.precision = 'float16' needs a CUDA device (executor.device = 'cuda', with Ray "
            "too); on the CPU use 'bfloat16' (or 'float32')"
        )
