"""One-line messages for configuration mistakes, with a "did you mean" for misspelt names.

The plug-in registries already suggest the closest name for an unknown explainer or attack; a misspelt
profile or config key deserves the same, at whatever depth of the TOML it sits.
"""

from __future__ import annotations

import difflib
import re
import reprlib
import typing
from collections.abc import Sequence

from pydantic import BaseModel, ValidationError


def did_you_mean(name: str, known: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``known``, or an empty string when none is close."""
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def known_keys(root: type[BaseModel], loc: Sequence[int | str]) -> list[str]:
    """The keys the config table at ``loc`` accepts.

    Args:
        root: The top-level config model.
        loc: A pydantic error location without its last part (the unknown key), e.g. ``("models", 0)``.

    Returns:
        The field names of the table there, or an empty list when ``loc`` leads to no table.
    """
    model = root
    for part in loc:
        if isinstance(part, int):  # an item of a list of tables, e.g. models.0
            continue
        field = model.model_fields.get(part)
        inner = _model_in(field.annotation) if field is not None else None
        if inner is None:
            return []
        model = inner
    return list(model.model_fields)


def field_default(root: type[BaseModel], key: str) -> tuple[bool, object]:
    """The default of the setting at a dotted key such as ``data.max_pixels`` or ``models[0].lr``.

    Returns:
        ``(True, default)``, or ``(False, None)`` when the key leads to no field with a default (e.g. a key
        inside a free-form table such as ``arch_kwargs``, or a required field).
    """
    model: type[BaseModel] | None = root
    parts = [p for p in re.split(r"\.|\[\d+\]", key) if p]
    for i, part in enumerate(parts):
        field = model.model_fields.get(part) if model is not None else None
        if field is None:
            return False, None
        if i == len(parts) - 1:
            if field.is_required():
                return False, None
            return True, field.get_default(call_default_factory=True, validated_data={})
        model = _model_in(field.annotation)
    return False, None


def _model_in(annotation: object) -> type[BaseModel] | None:
    """The config table class inside an annotation such as ``X``, ``X | None`` or ``list[X]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


#: The last part of an error's location that names a branch of a union type (``bool``, ``literal['auto']``).
_UNION_BRANCH = re.compile(r"^(bool|int|float|str|none|constrained-\w+|literal\[.*\]|function-\w+\[.*\])$")
#: How a refused value is echoed: shortened (a 5000-character string is not repeated in full).
_ECHO = reprlib.Repr()
_ECHO.maxstring = _ECHO.maxother = 80
_ECHO.maxlist = _ECHO.maxdict = _ECHO.maxtuple = _ECHO.maxset = 8


def format_validation_error(err: ValidationError, source: str, root: type[BaseModel]) -> str:
    """All of a validation's errors on one line; an unknown key names the closest known one.

    A value refused by every branch of a union (``channels_last = "yes"`` against ``bool | "auto"``) is one
    part naming the setting, the branches' messages joined by "or", and the value given.
    """
    parts: dict[str, list[str]] = {}
    given: dict[str, object] = {}
    for e in err.errors():
        where = list(e["loc"])
        branch = _is_branch(e["type"], where, root)
        loc = ".".join(str(p) for p in (where[:-1] if branch else where)) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            known = known_keys(root, e["loc"][:-1])
            hint = did_you_mean(str(e["loc"][-1]), known)
            msg = "unknown key" + (hint or (f" (known keys: {', '.join(known)})" if known else ""))
        if branch:
            given[loc] = e.get("input")
        found = parts.setdefault(loc, [])
        found.append(msg if not found else msg.removeprefix("Input should be "))
    lines = [
        f"{loc}: {' or '.join(msgs)}" + (f", got {_ECHO.repr(given[loc])}" if loc in given else "")
        for loc, msgs in parts.items()
    ]
    return f"invalid config {source}: " + "; ".join(lines)


def _is_branch(kind: str, where: Sequence[int | str], root: type[BaseModel]) -> bool:
    """Whether an error's last location part names a union branch, not a key (``[[models]] int = 1`` is one).

    An unknown key (``extra_forbidden``) never is, nor a name the table knows as a key.
    """
    if kind == "extra_forbidden" or len(where) < 2 or not isinstance(where[-1], str):
        return False
    return bool(_UNION_BRANCH.match(where[-1])) and where[-1] not in known_keys(root, where[:-1])


_INT64 = (-(2**63), 2**63 - 1)


def huge_ints(value: object, where: str = "") -> list[str]:
    """Dotted keys of integers outside the 64-bit range TOML defines (Python's ``tomllib`` reads any).

    Why: such a number passes pydantic's ``int`` and then overflows inside torch with a traceback.
    """
    if isinstance(value, dict):
        return [w for k, v in value.items() for w in huge_ints(v, f"{where}.{k}" if where else str(k))]
    if isinstance(value, list):
        return [w for i, v in enumerate(value) for w in huge_ints(v, f"{where}.{i}")]
    if isinstance(value, int) and not isinstance(value, bool) and not _INT64[0] <= value <= _INT64[1]:
        return [where or "(top level)"]
    return []
