"""The expert studio: explore a run, blinded rating studies (FastAPI, server-rendered, the ``web`` extra).

``create_app(run_dir)`` builds the application; ``robustxai serve RUN_DIR`` runs it with uvicorn and
``robustxai study create RUN_DIR`` adds a rating study. It reads runs through the results API only.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

    from robustxai.web._runview import MapSource


def create_app(
    run_dir: str | Path,
    data_dir: str | Path | None = None,
    admin_token: str | None = None,
    reopen: Callable[[Path], MapSource] | None = None,
) -> FastAPI:
    """Build the studio for one run (see :func:`robustxai.web._app.create_app`)."""
    from robustxai.web._app import create_app as _create

    return _create(run_dir, data_dir=data_dir, admin_token=admin_token, reopen=reopen)


__all__ = ["create_app"]
