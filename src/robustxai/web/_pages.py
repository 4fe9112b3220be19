"""Page rendering shared by the studio's rooms: one autoescaping Jinja2 environment and the CSRF meta tag.

It sits below ``web.app`` and the room modules, so a room can render a page without importing the app that
registers it (no import cycle).
"""

from __future__ import annotations

from pathlib import Path

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from robustxai.web._security import Auth

HERE = Path(__file__).parent
# Autoescape everything: Starlette's default only escapes names ending in .html, and ours end in .j2.
templates = Jinja2Templates(
    env=jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE / "templates")), autoescape=True)
)


def render(request: Request, name: str, identity: str, **context: object) -> HTMLResponse:
    """Render a page with the CSRF token of its session (``identity``) in a ``<meta>`` tag."""
    auth: Auth = request.app.state.auth
    return templates.TemplateResponse(request, name, {"csrf": auth.csrf_token(identity), **context})
