"""Every error a user can trigger is a ``RobustXAIError`` (itself a ``ValueError``, so old ``except`` clauses
keep working); a raw ``ValueError``/``TypeError``/``KeyError`` raised in ``src`` is an allow-listed exception.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from robustxai import DataError, RobustXAIError
from robustxai._registry import Registry
from robustxai.audit._plan import UNIT_KINDS, register_unit_kind
from robustxai.data import Truth

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = "tests internals of robustxai._registry, robustxai.audit._plan, robustxai.web._runview"

SRC = Path(__file__).resolve().parents[1] / "src" / "robustxai"

#: Where a bare built-in error is right: pydantic validators must raise ValueError (pydantic turns it into
#: the config's one-line ConfigError), ``Dataset.__getitem__`` must raise IndexError (the sequence protocol),
#: and internal invariants a user cannot reach (caught and re-raised as RobustXAIError where they could be).
ALLOWED = {
    "audit/_config.py": "pydantic validators",
    "audit/_config_budgets.py": "pydantic validators",
    "audit/_config_toml.py": "TOML writer of a validated config",
    "web/_annotations.py": "pydantic validator",
    "data/_base.py": "IndexError of the sequence protocol",
    "explain/_incremental.py": "internal invariant of a traced graph",
    "explain/_fxgraph.py": "internal invariant of a traced graph",
    "explain/_boxes.py": "internal invariant of a traced graph (the engine falls back to Captum on it)",
    "models/_io.py": "caught on the next line and re-raised as RobustXAIError",
}
BUILTIN = {"ValueError", "TypeError", "KeyError", "IndexError", "RuntimeError"}


def _raised_builtins(path: Path) -> list[int]:
    lines = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Raise) and node.exc is not None:
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(exc, ast.Name) and exc.id in BUILTIN:
                lines.append(node.lineno)
    return lines


def test_no_raw_builtin_error_escapes_outside_the_allow_list() -> None:
    found = {
        f"{path.relative_to(SRC).as_posix()}:{line}"
        for path in SRC.rglob("*.py")
        if path.relative_to(SRC).as_posix() not in ALLOWED
        for line in _raised_builtins(path)
    }
    assert found == set()


def test_registering_a_name_twice_is_a_robustxai_error() -> None:
    registry: Registry[object] = Registry("thing")
    registry.register("a")(object)
    with pytest.raises(RobustXAIError, match="registered twice"):
        registry.register("a")(object)


def test_registering_a_unit_kind_twice_is_a_robustxai_error() -> None:
    kind = next(iter(UNIT_KINDS.values()))
    with pytest.raises(RobustXAIError, match="already registered"):
        register_unit_kind(kind)


def test_a_bad_truth_mask_is_a_data_error_and_still_a_value_error() -> None:
    with pytest.raises(DataError, match="2-D"):
        Truth(mask=np.zeros((2, 3, 4), dtype=bool))
    with pytest.raises(ValueError, match="2-D"):  # callers that catch ValueError still do
        Truth(mask=np.zeros(4, dtype=bool))


@pytest.mark.parametrize(
    "fields",
    [
        {"model": "m", "condition": "clean", "explainer": "saliency", "sample_id": "s"},  # no epsilon
        {"model": "m", "condition": "clean", "epsilon": "0", "explainer": "saliency", "sample_id": "s"},
        {"model": "m", "condition": "clean", "epsilon": True, "explainer": "saliency", "sample_id": "s"},
        {"condition": "clean", "epsilon": 0.0, "explainer": "saliency", "sample_id": "s"},  # no model
    ],
)
def test_a_damaged_stored_map_key_is_a_robustxai_error(fields) -> None:
    """A study database's map key is read back with checks: a KeyError or TypeError was a server error."""
    from robustxai.web._runview import MapKey

    with pytest.raises(RobustXAIError, match="damaged"):
        MapKey.from_json(fields)
