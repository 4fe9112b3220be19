"""The studio's FastAPI application: security middleware, the admin home page and the static files.

The rooms register their routes from their own modules (:mod:`robustxai.web._explore`,
:mod:`robustxai.web._rating`); they find the run, the studio database and the auth object on ``app.state``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from html import escape
from pathlib import Path
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from robustxai.web._db import StudioDB
from robustxai.web._pages import HERE, render
from robustxai.web._runview import MapSource, RunView
from robustxai.web._security import ADMIN_COOKIE, REPORT_CSP, SECURITY_HEADERS, Auth


async def _headers_and_token(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """Turn a one-time ``?token=`` admin link into a cookie; add the security headers to every response."""
    token = request.query_params.get("token")
    if token is not None and request.method == "GET":
        auth: Auth = request.app.state.auth
        if not auth.is_admin_token(token):
            response: Response = JSONResponse({"detail": "wrong admin token"}, status_code=401)
        else:
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            response = RedirectResponse(request.url.path + (f"?{urlencode(rest)}" if rest else ""), 303)
            response.set_cookie(ADMIN_COOKIE, token, httponly=True, samesite="strict")
    else:
        response = await call_next(request)
    for key, value in SECURITY_HEADERS.items():
        if key != "cache-control" or not request.url.path.startswith("/static/"):
            response.headers[key] = value
    if request.url.path == "/report":
        response.headers["content-security-policy"] = REPORT_CSP
    return response


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    """A malformed request is a 422 that says which field is wrong, in one line."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    parts = [f"{'.'.join(str(x) for x in e.get('loc', ()))}: {e.get('msg', '')}" for e in errors[:5]]
    return JSONResponse({"detail": "malformed request: " + "; ".join(parts)}, status_code=422)


async def _http_error(request: Request, exc: Exception) -> Response:
    """HTTP errors as JSON for the API, as a short page for a browser."""
    assert isinstance(exc, StarletteHTTPException)
    if "text/html" in request.headers.get("accept", ""):
        code = exc.status_code
        body = f"<!doctype html><title>{code}</title><p>{code}: {escape(str(exc.detail))}</p>"
        return HTMLResponse(body, status_code=exc.status_code)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)


def create_app(
    run_dir: str | Path,
    data_dir: str | Path | None = None,
    admin_token: str | None = None,
    reopen: Callable[[Path], MapSource] | None = None,
) -> FastAPI:
    """Build the studio for one run.

    Args:
        run_dir: The run directory (its ``results.sqlite`` is read; ``studio.sqlite`` is written next to it).
        data_dir: A data folder to annotate (the annotate room; optional).
        admin_token: The admin token (a fresh random one when ``None``); read it back from
            ``app.state.auth.admin_token``.
        reopen: Reopens the run to recompute maps it does not store (``robustxai serve`` passes
            :func:`robustxai.audit._reload.open_run_context`); ``None``: stored maps and metrics only.

    Returns:
        The FastAPI application.

    Raises:
        RobustXAIError: If the run cannot be read.
    """
    from robustxai.web import (
        _annotate as annotate,
        _explore as explore,
        _rating as rating,
        _reportview as reportview,
    )
    from robustxai.web._annotations import AnnotationStore

    app = FastAPI(title="robustxai studio", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.run = RunView(Path(run_dir), reopen)
    app.state.db = StudioDB(Path(run_dir))
    app.state.auth = Auth(admin_token)
    store = AnnotationStore(app.state.db.path)
    app.state.folder = annotate.Folder(Path(data_dir), store) if data_dir is not None else None
    app.middleware("http")(_headers_and_token)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.get("/", response_class=HTMLResponse)
    def home(request: Request) -> HTMLResponse:
        request.app.state.auth.require_admin(request)
        view: RunView = request.app.state.run
        db: StudioDB = request.app.state.db
        studies = db.studies()
        base = str(request.base_url).rstrip("/")
        for st in studies:
            st["links"] = [f"{base}/r/{tok}" for tok in db.rater_tokens(st["study_id"])]
        has_data = request.app.state.folder is not None
        return render(request, "home.html.j2", "admin", run=view, studies=studies, has_data=has_data)

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return Response(status_code=204)  # no icon, and no 404 in the browser's console

    explore.register(app)
    rating.register(app)
    annotate.register(app)
    reportview.register(app)
    return app
