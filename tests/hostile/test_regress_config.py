"""Regression tests for hostile configs (issue 13): meaningless budgets, unreadable files: one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import robustxai as rx
from robustxai import ConfigError, RobustXAIError
from robustxai.audit._config import load_config, profile_dict, validate_config

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = "tests internals of robustxai.audit._config"


def smoke(**changes: Any) -> dict[str, Any]:
    raw = profile_dict("smoke")
    for key, value in changes.items():
        raw[key] = value if not isinstance(value, dict) else raw.get(key, {}) | value
    return raw


def refused(raw: dict[str, Any], *needles: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_config(raw, "(test)")
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message


@pytest.mark.parametrize("name", ["pgd", "fgsm", "bim", "apgd"])
@pytest.mark.parametrize("eps", [1.0, 2.0, 255.0])
def test_linf_epsilon_of_one_or_more_is_refused(name: str, eps: float) -> None:
    refused(
        smoke(attacks=[{"name": name, "epsilons": [4 / 255, eps]}]), "epsilons", "≥ 1", "[0, 1] pixel units"
    )
    refused(smoke(attacks=[{"name": name, "epsilons": [eps], "params": {"norm": "LINF"}}]), "≥ 1")


def test_l2_budgets_may_exceed_one_and_small_linf_budgets_pass() -> None:
    cfg = validate_config(smoke(attacks=[{"name": "pgd", "epsilons": [0.5, 2.0], "params": {"norm": "l2"}}]))
    assert cfg.attacks[0].epsilons == [0.5, 2.0]
    cfg = validate_config(smoke(attacks=[{"name": "apgd", "epsilons": [0.00125, 0.32, 0.99]}]))
    assert cfg.attacks[0].epsilons[-1] == 0.99
    refused(smoke(attacks=[{"name": "pgd", "epsilons": [float("inf")]}]), "finite")


def test_training_and_manipulation_budgets_of_one_or_more_are_refused() -> None:
    refused(smoke(training={"eps": 2.0}), "training.eps", "≥ 1")
    refused(smoke(manipulation={"eps": 1.0}), "manipulation eps", "unbounded")
    refused(smoke(manipulation={"params": {"eps": 8.0}}), "manipulation eps")
    refused(smoke(manipulation={"method_params": {"saliency": {"eps": 3.0}}}), "manipulation eps")
    refused(smoke(manipulation={"method_params": {"saliency": {"params": {"eps": 1.5}}}}), "manipulation eps")
    refused(smoke(manipulation={"params": {"eps": "big"}}), "must be a number")
    assert validate_config(smoke(manipulation={"eps": 8 / 255})).manipulation is not None
    with pytest.raises(RobustXAIError, match="below 1"):
        rx.FitConfig(adversarial="pgd", eps=2.0)
    assert rx.FitConfig(eps=2.0).eps == 2.0  # standard training ignores the budget


def test_profiles_are_still_valid() -> None:
    for profile in ("smoke", "default"):
        cfg = load_config(profile=profile)
        assert cfg.data.max_pixels == 100_000_000 and cfg.data.allow_outside_root is True


def test_new_data_keys_are_validated() -> None:
    cfg = validate_config(smoke(data={"max_pixels": 4096, "allow_outside_root": False}))
    assert cfg.data.max_pixels == 4096 and cfg.data.allow_outside_root is False
    refused(smoke(data={"max_pixels": 0}), "data.max_pixels")
    refused(smoke(data={"max_pixels": "many"}), "data.max_pixels")


def test_cli_refuses_a_linf_budget_of_two(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from robustxai.cli import app

    cfg = tmp_path / "c.toml"
    cfg.write_text('[[attacks]]\nname = "pgd"\nepsilons = [2.0]\n')
    result = CliRunner().invoke(
        app, ["audit", str(cfg), "--profile", "smoke", "--out", str(tmp_path / "run")]
    )
    assert result.exit_code != 0 and "Traceback" not in result.output and "≥ 1" in result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "content",
    [
        "name = 'caf\xe9'\n".encode("cp1252"),
        b"\xff\xfe[\x00d\x00",
        b"a = " + b"[" * 50_000 + b"]" * 50_000,
        b"a = " + b"{b = " * 5_000 + b"1" + b"}" * 5_000,
    ],
)
def test_unreadable_config_file_is_one_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "c.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        load_config(path, profile="smoke")
    assert "\n" not in str(info.value)
