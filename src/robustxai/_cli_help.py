"""Help pages that read the classic way: ``--out PATH``, ``export RUN_DIR``, no type on a flag.

Newer typers (0.29 here, with click vendored) print each parameter's Python type in angle brackets
(``<str>``, and ``<bool>`` even on flags and on ``--help``) and a required argument in braces
(``{run_dir}``); to a user these look like unfilled placeholders. The command and group classes here give
every parameter the metavar click always printed.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

if TYPE_CHECKING:  # typer's click: vendored as typer._click by newer typers (plain click before)
    from typer._click.core import Context, Parameter

_TYPE_LABELS = {"str": "TEXT", "int": "INTEGER", "float": "FLOAT", "bool": "BOOLEAN"}


def _type_label(param: TyperOption | TyperArgument, ctx: Context) -> str:
    """The classic upper-case metavar of a parameter's type: TEXT, INTEGER, FLOAT, PATH."""
    kind = param.display_type(ctx).strip("<>")
    kind = re.sub(r"^list\[(.*)\]$", r"\1", kind)  # a repeatable option shows its element type
    return _TYPE_LABELS.get(kind, kind.upper())


class _Argument(TyperArgument):
    """An argument shown the classic way: ``RUN_DIR`` in the usage line and ``PATH`` as its type."""

    def display_type_rich(self, ctx: Context) -> str | None:
        """The type column of the help table."""
        return _type_label(self, ctx)

    def _usage_display_name(self) -> str:
        name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
        return name if self.nargs == 1 else f"{name}..."


def _plain_params(params: list[Parameter], ctx: Context) -> list[Parameter]:
    """Give every parameter the classic metavar, so help reads ``--out PATH`` and ``export RUN_DIR``.

    Flags get no metavar, other options their upper-case type, arguments their upper-case
    name. Parameters that set a metavar themselves keep it; older typers (plain click) already print
    metavars and are left alone. ``ctx`` is typer's click context.
    """
    for param in params:
        if not hasattr(param, "display_type"):
            continue
        if isinstance(param, TyperArgument) and not isinstance(param, _Argument):
            param.__class__ = _Argument
            if param.metavar is None:
                param.metavar = (param.name or "value").upper()
        elif isinstance(param, TyperOption) and param.metavar is None:
            param.metavar = "" if param.is_flag else _type_label(param, ctx)
    return params


class PlainHelpCommand(TyperCommand):
    """A typer command whose help shows classic metavars (see :func:`_plain_params`)."""

    def get_params(self, ctx: Context) -> list[Parameter]:
        """Parameters, the help option included, with their metavars set."""
        return _plain_params(super().get_params(ctx), ctx)


class PlainHelpGroup(TyperGroup):
    """A typer group whose help shows classic metavars (see :func:`_plain_params`)."""

    def get_params(self, ctx: Context) -> list[Parameter]:
        """Parameters, the help option included, with their metavars set."""
        return _plain_params(super().get_params(ctx), ctx)
