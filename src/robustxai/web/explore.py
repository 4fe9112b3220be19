"""The explore room: every test image of the run with its metrics; images, expert truth and stored maps.

Admin only. The listing filters by model, method and condition, sorts by any map metric and paginates; the
image page shows the image with its expert points and mask outline and, per model × method, the clean map
and every attacked map side by side as overlays with an opacity slider, next to the image's metrics.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response

from robustxai.web.runview import RunView

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


def _fmt(v: float) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


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
        from robustxai.web.app import render

        request.app.state.auth.require_admin(request)
        view: RunView = request.app.state.run
        ch = view.choices()
        sel = {
            "model": _pick(model, ch["model"], "model"),
            "method": _pick(method, ch["method"], "method"),
            "condition": _pick(condition, ch["condition"], "condition"),
            "metric": _pick(metric, ch["metric"], "metric"),
        }
        rows = view.listing(sel["model"], sel["method"], sel["condition"], sel["metric"])
        rows = rows.sort_values("value", ascending=order == "asc", na_position="last", kind="mergesort")
        n_pages = max(1, math.ceil(len(rows) / PAGE_SIZE))
        page = min(page, n_pages)
        shown = rows.iloc[(page - 1) * PAGE_SIZE : page * PAGE_SIZE].to_dict("records")
        for r in shown:
            r["value_text"] = _fmt(r["value"])
        return render(
            request,
            "explore.html.j2",
            "admin",
            choices=ch,
            sel=sel,
            order=order,
            rows=shown,
            page=page,
            n_pages=n_pages,
            n_rows=len(rows),
        )

    @app.get("/explore/sample/{index}", response_class=HTMLResponse)
    def sample(
        request: Request, index: int, model: str | None = None, method: str | None = None
    ) -> HTMLResponse:
        from robustxai.web.app import render

        request.app.state.auth.require_admin(request)
        view: RunView = request.app.state.run
        if not 0 <= index < len(view.sample_ids):
            raise HTTPException(status_code=404, detail=f"no image {index} in this run")
        sid = view.sample_ids[index]
        points, outline, h, w = view.truth(sid)
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for map_id, key in view.maps_of(sid):
            if (model and key.model != model) or (method and key.explainer != method):
                continue
            groups.setdefault((key.model, key.explainer), []).append(
                {"id": map_id, "cond": key.condition_label}
            )
        for cells in groups.values():
            cells.sort(key=lambda c: (c["cond"] != "clean", c["cond"]))
        metrics = view.sample_metrics(sid).to_dict("records")
        for r in metrics:
            r["value_text"] = _fmt(r["value"])
        label = view.samples.iloc[index]
        return render(
            request,
            "sample.html.j2",
            "admin",
            index=index,
            sample_id=sid,
            label=int(label["label"]),
            has_pixels=view.has_pixels(sid),
            outline=outline,
            width=w,
            height=h,
            points=[{"x": x + 0.5, "y": y + 0.5} for x, y in points],
            groups=[{"model": m, "method": x, "cells": c} for (m, x), c in sorted(groups.items())],
            metrics=metrics,
            n=len(view.sample_ids),
        )

    @app.get("/img/sample/{index}.png")
    def image(request: Request, index: int) -> Response:
        request.app.state.auth.require_admin(request)
        return _png(request.app.state.run.image_png(index), "image")

    @app.get("/img/map/{map_id}.png")
    def overlay(request: Request, map_id: int) -> Response:
        request.app.state.auth.require_admin(request)
        return _png(request.app.state.run.overlay_png(map_id), "map")
