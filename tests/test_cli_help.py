"""Every ``--help`` page reads cleanly, and ``robustxai list`` names the profiles."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from robustxai.audit._config import PROFILES, profile_description
from robustxai.cli import app

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = "tests internals of robustxai.audit._config"

runner = CliRunner()
# Typer's own type labels (``<str>``, ``<bool>``, ``<path>`` …) and brace placeholders (``{run_dir}``):
# a user reads them as text that was never filled in.
_STRAY = re.compile(r"<(?:bool|str|int|float|path|file|directory|list\[[^\]]*\])>|\{[A-Za-z_][\w-]*\}")


def _command_paths(command: object, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        paths += _command_paths(sub, (*prefix, name))
    return paths


COMMANDS = _command_paths(typer.main.get_command(app))


def test_every_command_is_walked() -> None:
    names = {p[0] for p in COMMANDS if p}
    assert {"audit", "report", "export", "train", "list", "data"} <= names
    assert ("data", "synth") in COMMANDS


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "robustxai")
def test_help_has_no_stray_placeholders(path: tuple[str, ...]) -> None:
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output and result.exception is None
    assert "Usage:" in result.output
    assert not _STRAY.findall(result.output), result.output


def test_usage_names_arguments_plainly() -> None:
    assert "export [OPTIONS] RUN_DIR" in runner.invoke(app, ["export", "--help"]).output
    assert "audit [OPTIONS] [CONFIG]" in runner.invoke(app, ["audit", "--help"]).output
    train = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"}).output
    assert re.search(r"--epochs\s+INTEGER", train) and re.search(r"--out\s+PATH", train)
    assert re.search(r"--allow-download\s+Let", train), "a flag takes no value, so it shows no type"


def test_missing_argument_names_it() -> None:
    result = runner.invoke(app, ["report"])
    assert result.exit_code == 2 and "RUN_DIR" in result.output and "{" not in result.output


@pytest.mark.parametrize("kind", ["all", "profiles"])
def test_list_names_profiles_with_a_description(kind: str) -> None:
    result = runner.invoke(app, ["list", kind], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    for profile in PROFILES:
        description = profile_description(profile)
        assert description, f"profile {profile} has no first-line comment"
        assert f"{profile}: {description}" in text.replace("│ │", " ").replace(" │ ", " ")


def test_list_suggests_a_kind() -> None:
    result = runner.invoke(app, ["list", "profils"])
    assert result.exit_code == 2
    assert "did you mean 'profiles'?" in result.output
