"""Shared type aliases: the JSON values that configs, metadata and the store pass around.

Why one place: a value read from JSON (a model's spec, a run's metadata, an annotation file) has a known
shape, and naming it once lets every layer say so instead of leaving it untyped.
"""

from __future__ import annotations

from typing import TypeAlias

#: A JSON scalar.
JsonScalar: TypeAlias = str | int | float | bool | None
#: A JSON value: a scalar, an array or an object, nested to any depth.
JsonValue: TypeAlias = JsonScalar | list["JsonValue"] | dict[str, "JsonValue"]
#: A JSON object (what ``json.loads`` gives for ``{…}``).
JsonObject: TypeAlias = dict[str, JsonValue]

__all__ = ["JsonObject", "JsonScalar", "JsonValue"]
