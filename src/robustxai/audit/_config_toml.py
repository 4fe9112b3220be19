"""Writing a resolved configuration back as TOML (``config.toml`` next to every run's results).

The standard library reads TOML but cannot write it; this small writer covers what a config holds: tables,
arrays of tables, strings, numbers, booleans and lists.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TypeGuard


def dump_toml(data: Mapping[str, object]) -> str:
    """Write a resolved config as TOML (scalars, lists, tables and arrays of tables)."""
    lines: list[str] = []
    _emit(data, [], lines)
    return "\n".join(lines).strip() + "\n"


def _value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _emit(table: Mapping[str, object], path: list[str], lines: list[str]) -> None:
    scalars = {k: v for k, v in table.items() if v is not None and not _is_table(v) and not _is_table_list(v)}
    for k, v in scalars.items():
        lines.append(f"{k} = {_value(v)}")
    for k, v in table.items():
        if _is_table(v):
            lines.append("")
            lines.append(f"[{'.'.join([*path, k])}]")
            _emit(v, [*path, k], lines)
        elif _is_table_list(v):
            for item in v:
                lines.append("")
                lines.append(f"[[{'.'.join([*path, k])}]]")
                _emit(item, [*path, k], lines)


def _is_table(v: object) -> TypeGuard[Mapping[str, object]]:
    return isinstance(v, dict)


def _is_table_list(v: object) -> TypeGuard[list[Mapping[str, object]]]:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)
