"""The explore room: every test image of the run with its metrics, expert truth and every map.

Admin only. The listing filters by model, method and condition, sorts by any map metric and paginates; the
image page shows the image with its expert points and mask outline and, per model × method, the clean map
and every attacked map side by side as overlays with an opacity slider, next to the image's metrics. Maps the
run stores (the report's figure images) are served from the store; every other one is recomputed from the
run on demand (:mod:`robustxai.audit._reload`) and cached, and the page fetches it asynchronously.
"""

from __future__ import annotations

import math
from typing import TypedDict
from urllib.parse import urlencode

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response

from robustxai.report._numbers import fmt_number
from robustxai.web._pages import render
from robustxai.web._runview import RunView

PAGE_SIZE = 50


def _pick(value: str | None, options: list[str], what: str) -> str:
    """The chosen filter value (the first option when none is given); an unknown one is a 400."""
    if value is None or value == "":
        if not options:
            raise HTTPException(status_code=404, detail=f"the run has no {what} to show")
        return options[0]
    if value not in options:
        raise HTTPException(status_code=400, detail=f"unknown {what} {value!r}; known: {', '.join(options)}")
    return value


def _png(data: bytes | None, what: str) -> Response:
    if data is None:
        raise HTTPException(status_code=404, detail=f"no such {what}")
    return Response(content=data, media_type="image/png")


class _Cell(TypedDict):
    """One map panel: where its PNG is, its condition, and whether it is recomputed on demand."""

    src: str
    cond: str
    live: bool


def _cells(
    view: RunView, index: int, model: str | None, method: str | None, live: bool
) -> list[dict[str, object]]:
    """The map panels of one image, grouped by model × method, clean first.

    Every model × method × condition of the run when maps can be recomputed (``live``): a stored map is
    served by its id, any other one from ``/img/live/…`` (recomputed on demand, fetched by the page's script
    after the page shows); otherwise the stored maps only.
    """
    sid = view.sample_ids[index]
    groups: dict[tuple[str, str], list[_Cell]] = {}
    for map_id, key in view.maps_of(sid):
        groups.setdefault((key.model, key.explainer), []).append(
            {"src": f"/img/map/{map_id}.png", "cond": key.condition_label, "live": False}
        )
    if live:
        ch = view.choices()
        for m in ch["model"]:
            for x in ch["method"]:
                if not any((m, x, c) in view.audited for c in ch["condition"]):
                    continue
                cells = groups.setdefault((m, x), [])
                have = {c["cond"] for c in cells}
                for cond in ch["condition"]:
                    if cond not in have and (m, x, cond) in view.audited:
                        query = urlencode({"model": m, "method": x, "condition": cond})
                        cells.append({"src": f"/img/live/{index}.png?{query}", "cond": cond, "live": True})
    out: list[dict[str, object]] = []
    for (m, x), cells in sorted(groups.items()):
        if (model and m != model) or (method and x != method):
            continue
        cells.sort(key=lambda c: (c["cond"] != "clean", c["cond"]))
        out.append({"model": m, "method": x, "cells": cells})
    return out


def _listing_page(view: RunView, sel: dict[str, str], order: str, page: int) -> dict[str, object]:
    """One page of the listing: its rows (sorted by the chosen metric), the page number and the counts."""
    rows = view.listing(sel["model"], sel["method"], sel["condition"], sel["metric"])
    rows = rows.sort_values("value", ascending=order == "asc", na_position="last", kind="mergesort")
    n_pages = max(1, math.ceil(len(rows) / PAGE_SIZE))
    page = min(page, n_pages)
    shown = rows.iloc[(page - 1) * PAGE_SIZE : page * PAGE_SIZE].to_dict("records")
    for r in shown:
        r["value_text"] = fmt_number(r["value"], 3)
    return {"rows": shown, "page": page, "n_pages": n_pages, "n_rows": len(rows)}


def _sample_page(view: RunView, index: int, model: str | None, method: str | None) -> dict[str, object]:
    """What the image page shows: the image, its truth, its map panels and its metrics."""
    if not 0 <= index < len(view.sample_ids):
        raise HTTPException(status_code=404, detail=f"no image {index} in this run")
    sid = view.sample_ids[index]
    points, outline, h, w = view.truth(sid)
    groups = _cells(view, index, model, method, live=view.context_error() is None and h > 0)
    metrics = view.sample_metrics(sid).to_dict("records")
    for r in metrics:
        r["value_text"] = fmt_number(r["value"], 3)
    label = view.samples.iloc[index]
    return {
        "index": index,
        "sample_id": sid,
        "label": int(label["label"]),
        "has_pixels": h > 0,
        "stored": view.has_pixels(sid),
        "context_error": view.context_error(),
        "outline": outline,
        "width": w,
        "height": h,
        "points": [{"x": x + 0.5, "y": y + 0.5} for x, y in points],
        "groups": groups,
        "metrics": metrics,
        "n": len(view.sample_ids),
    }


def register(app: FastAPI) -> None:
    """Add the explore room's routes to ``app``."""

    @app.get("/explore", response_class=HTMLResponse)
    def explore(
        request: Request,
        model: str | None = None,
        method: str | None = None,
        condition: str | None = None,
        metric: str | None = None,
        order: str = Query("asc", pattern="^(asc|desc)$"),
        page: int = Query(1, ge=1, le=1_000_000),
    ) -> HTMLResponse:
        request.app.state.auth.require_admin(request)
        view: RunView = request.app.state.run
        ch = view.choices()
        sel = {
            "model": _pick(model, ch["model"], "model"),
            "method": _pick(method, ch["method"], "method"),
            "condition": _pick(condition, ch["condition"], "condition"),
            "metric": _pick(metric, ch["metric"], "metric"),
        }
        listing = _listing_page(view, sel, order, page)
        return render(request, "explore.html.j2", "admin", choices=ch, sel=sel, order=order, **listing)

    @app.get("/explore/sample/{index}", response_class=HTMLResponse)
    def sample(
        request: Request, index: int, model: str | None = None, method: str | None = None
    ) -> HTMLResponse:
        request.app.state.auth.require_admin(request)
        return render(
            request, "sample.html.j2", "admin", **_sample_page(request.app.state.run, index, model, method)
        )

    @app.get("/img/sample/{index}.png")
    def image(request: Request, index: int) -> Response:
        request.app.state.auth.require_admin(request)
        return _png(request.app.state.run.image_png(index), "image")

    @app.get("/img/live/{index}.png")
    def live(request: Request, index: int, model: str, method: str, condition: str) -> Response:
        """One map of any test image: the stored overlay, else recomputed from the run (then cached)."""
        request.app.state.auth.require_admin(request)
        view: RunView = request.app.state.run
        ch = view.choices()
        _pick(model, ch["model"], "model")
        _pick(method, ch["method"], "method")
        _pick(condition, ch["condition"], "condition")
        try:
            return Response(content=view.live_png(index, model, method, condition), media_type="image/png")
        except LookupError as err:
            raise HTTPException(status_code=404, detail=str(err.args[0])) from None

    @app.get("/img/map/{map_id}.png")
    def overlay(request: Request, map_id: int) -> Response:
        request.app.state.auth.require_admin(request)
        return _png(request.app.state.run.overlay_png(map_id), "map")
