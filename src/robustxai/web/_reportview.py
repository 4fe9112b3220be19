"""The run's static report served by the studio, with links from its figures into the explore room.

``report.html`` is self-contained (inline CSS, figures as data URIs) and carries no link into the studio, so
opened from disk it is unchanged. Served here (``GET /report``, admin only), a short navigation line is added
under its title (the explorer, filtered by each model and method) and, under each model's explanation-map
grid, a link per figure image to that image's page with every map of the model. The report's file is read
from its fixed place in the run directory; nothing from the client reaches the file system. Its CSP allows
its inline styles and data-URI images and no script at all (:data:`robustxai.web._security.REPORT_CSP`).
"""

from __future__ import annotations

import html
import re
from urllib.parse import urlencode

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse

from robustxai.report._figures import MAX_GRID_SAMPLES
from robustxai.web._runview import RunView

REPORT_FILE = "report.html"
_GRID = re.compile(
    r'(<figure class="grid">\s*<img src="[^"]*" alt="Explanation maps of (?P<model>[^"]*?) for each'
    r".*?</figure>)",
    re.DOTALL,
)


def _link(path: str, text: str, **query: str) -> str:
    url = path + (f"?{urlencode(query)}" if query else "")
    return f'<a href="{html.escape(url)}">{html.escape(text)}</a>'


def nav_line(view: RunView) -> str:
    """The line added under the report's title: the explorer, and the explorer filtered per model/method."""
    ch = view.choices()
    models = " · ".join(_link("/explore", m, model=m) for m in ch["model"])
    methods = " · ".join(_link("/explore", x, method=x) for x in ch["method"])
    explore = _link("/explore", "explore every image and map")
    return (
        f'<p class="meta studio-links">Served by the robustxai studio: {explore}'
        f" · by model: {models} · by method: {methods}</p>"
    )


def grid_links(view: RunView, model: str) -> str:
    """Links from one model's map grid to the pages of its figure images (the grid's rows)."""
    if model not in view.choices()["model"]:
        return ""
    shown = sorted(view.pixels)[:MAX_GRID_SAMPLES]  # the grid's images, in the grid's order
    links = " · ".join(_link(f"/explore/sample/{view.sample_index(s)}", s, model=model) for s in shown)
    return f'<p class="studio-links">Every map of {html.escape(model)} on these images: {links}</p>'


def linked_report(view: RunView, text: str) -> str:
    """``report.html`` with the studio's links added (the rest of the document is unchanged)."""

    def under_grid(match: re.Match[str]) -> str:
        return match.group(1) + "\n" + grid_links(view, html.unescape(match.group("model")))

    text = _GRID.sub(under_grid, text)
    nav = nav_line(view)
    return re.sub(r"(<h1>.*?</h1>)", lambda m: m.group(1) + "\n" + nav, text, count=1, flags=re.DOTALL)


def register(app: FastAPI) -> None:
    """Add ``GET /report`` to ``app``."""

    @app.get("/report", response_class=HTMLResponse)
    def report(request: Request) -> HTMLResponse:
        request.app.state.auth.require_admin(request)
        view: RunView = request.app.state.run
        path = view.path / REPORT_FILE
        if path.is_symlink() or not path.is_file():
            detail = "the run has no report.html (write it with: robustxai report RUN_DIR)"
            raise HTTPException(status_code=404, detail=detail)
        return HTMLResponse(linked_report(view, path.read_text(encoding="utf-8", errors="replace")))
