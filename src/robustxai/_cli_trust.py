"""The command-line flags with which the caller, and only the caller, grants trust to an audit.

A config file may ask for ``arch_kwargs.trust_checkpoint`` or ``allow_download`` (see
:mod:`robustxai.audit._grants`); these flags are the grant. They live here so that ``cli.py`` stays a thin
list
of commands.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from robustxai.audit._config import AuditConfig

TrustCheckpoint = Annotated[
    bool,
    typer.Option(
        "--trust-checkpoint",
        help="Honour arch_kwargs.trust_checkpoint = true in the config: full-pickle checkpoints, which run "
        "code from the file. A config cannot grant this itself.",
    ),
]
AllowDownload = Annotated[
    bool,
    typer.Option(
        "--allow-download",
        help="Honour arch_kwargs.allow_download = true in the config (the library downloads weights).",
    ),
]


def refuse_ungranted(cfg: AuditConfig, trust: bool, download: bool) -> None:
    """Refuse, in one line, a config that asks for trust these flags did not grant (before any work).

    Raises:
        ConfigError: Naming the config key (see :func:`robustxai.audit._grants.check_grants`).
    """
    from robustxai.audit._grants import Grants, check_grants

    check_grants(cfg, Grants(trust_checkpoint=trust, allow_download=download))
