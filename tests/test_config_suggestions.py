"""A misspelt profile or config key is a one-line error that names the closest known one."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from robustxai import ConfigError
from robustxai.audit._config import AuditConfig, ModelConfig, load_config
from robustxai.audit._config_errors import known_keys
from robustxai.cli import app

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = "tests internals of robustxai.audit._config, robustxai.audit._config_errors"


@pytest.mark.parametrize(
    ("toml", "where", "suggestion"),
    [
        ('nme = "x"\n', "nme", "name"),
        ('[data]\nsorce = "folder"\n', r"data\.sorce", "source"),
        ('[[models]]\nname = "m"\ntrainig = "pgd"\n', r"models\.0\.trainig", "training"),
        ('[[attacks]]\nname = "pgd"\nepsilon = [0.01]\n', r"attacks\.0\.epsilon", "epsilons"),
        ("[explain]\nn_imgs = 3\n", r"explain\.n_imgs", "n_images"),
        ("[manipulation]\niteratons = 3\n", r"manipulation\.iteratons", "iterations"),
        ("[executor]\nnum_gpu = 1\n", r"executor\.num_gpu", "num_gpus"),
        ("[sanity]\nenable = false\n", r"sanity\.enable", "enabled"),
        ("[report]\nprimary_atack = 'pgd'\n", r"report\.primary_atack", "primary_attack"),
        ("[training]\nepoch = 2\n", r"training\.epoch", "epochs"),
    ],
)
def test_unknown_key_suggests_the_closest(toml: str, where: str, suggestion: str, tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=rf"{where}: unknown key \(did you mean '{suggestion}'\?\)") as info:
        load_config(path, profile="smoke")
    assert "\n" not in str(info.value)


def test_unknown_key_without_a_close_one_lists_the_table(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[executor]\nzzzz = 1\n")
    with pytest.raises(ConfigError, match=r"executor\.zzzz: unknown key \(known keys: kind, address, "):
        load_config(path, profile="smoke")


def test_known_keys_follow_the_location() -> None:
    assert known_keys(AuditConfig, ("models", 0)) == list(ModelConfig.model_fields)
    assert "iterations" in known_keys(AuditConfig, ("manipulation",))
    assert known_keys(AuditConfig, ("no_such_table",)) == []


@pytest.mark.parametrize(("name", "suggestion"), [("smok", "smoke"), ("defualt", "default")])
def test_unknown_profile_suggests_the_closest(name: str, suggestion: str) -> None:
    with pytest.raises(ConfigError, match=rf"unknown profile '{name}' \(did you mean '{suggestion}'\?\)"):
        load_config(profile=name)


def test_cli_shows_the_suggestion_on_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["audit", "--profile", "smok", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0, result.output
    assert "did you mean 'smoke'?" in result.output
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("key", ["int", "bool", "str", "none"])
def test_an_unknown_key_named_like_a_type_keeps_its_name(key: str, tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'[[models]]\nname = "m"\n{key} = 1\n')
    with pytest.raises(ConfigError, match=rf"models\.0\.{key}: unknown key") as info:
        load_config(path, profile="smoke")
    assert "got 1" not in str(info.value)  # an unknown key is not a refused union value


def test_a_long_refused_value_is_echoed_shortened(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'[[models]]\nname = "m"\nchannels_last = "{"y" * 5000}"\n')
    with pytest.raises(ConfigError, match=r"models\.0\.channels_last: .*, got 'y+\.\.\.y+'$") as info:
        load_config(path, profile="smoke")
    assert len(str(info.value)) < 500
