"""The rating room: rater pages behind secret per-rater links, and the admin's results page.

A rater's token is the only credential of their pages; it opens only their own study, and their pages never
show a model, method, condition or sample identifier (images are addressed by the position in the rater's
own order). Every answer is saved in its own transaction the moment it is given.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Body, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from robustxai._errors import RobustXAIError
from robustxai.report._numbers import fmt_number
from robustxai.web._db import Rater, StudioDB, StudyItem
from robustxai.web._pages import render
from robustxai.web._runview import MapKey, RunView

QUESTION = "Does the highlighted region correspond to the finding?"
PAIR_QUESTION = "Which map is more useful for locating the finding?"


class Answer(BaseModel):
    """One answer: the position in the rater's order and the value (1–5, or 0 = left / 1 = right)."""

    model_config = ConfigDict(extra="forbid")
    position: int = Field(ge=0, le=100_000)
    value: int = Field(ge=0, le=5)


def _rater(request: Request, token: str) -> Rater:
    db: StudioDB = request.app.state.db
    rater = db.rater(token) if 8 <= len(token) <= 64 else None
    if rater is None:
        raise HTTPException(status_code=404, detail="unknown rater link")
    return rater


def _item_at(request: Request, rater: Rater, position: int) -> StudyItem:
    if not 0 <= position < len(rater["order"]):
        raise HTTPException(status_code=404, detail=f"no item {position}")
    item = request.app.state.db.item(rater["study_id"], rater["order"][position])
    if item is None:  # pragma: no cover - the order is written with the items
        raise HTTPException(status_code=404, detail=f"no item {position}")
    return item


def register(app: FastAPI) -> None:
    """Add the rater pages and the admin's study results to ``app``."""

    @app.get("/r/{token}", response_class=HTMLResponse)
    def rate(request: Request, token: str, pos: int | None = Query(None, ge=0, le=100_000)) -> HTMLResponse:
        rater = _rater(request, token)
        order, answers = rater["order"], rater["answers"]
        if pos is None:
            pos = next((p for p, no in enumerate(order) if no not in answers), len(order))
        done = sum(1 for no in order if no in answers)
        if pos >= len(order):
            return render(
                request, "rate_done.html.j2", f"rater:{token}", token=token, done=done, n=len(order)
            )
        item = _item_at(request, rater, pos)
        return render(
            request,
            "rate.html.j2",
            f"rater:{token}",
            token=token,
            pos=pos,
            n=len(order),
            done=done,
            kind=item["kind"],
            answer=answers.get(item["item_no"]),
            question=QUESTION,
            pair_question=PAIR_QUESTION,
        )

    @app.get("/r/{token}/img/{position}/{which}.png")
    def rater_image(request: Request, token: str, position: int, which: str) -> Response:
        rater = _rater(request, token)
        item = _item_at(request, rater, position)
        view: RunView = request.app.state.run
        if which == "image":
            png = view.image_png(view.sample_index(item["sample_id"]))
        elif which in ("a", "b") and (shown := item["map_a"] if which == "a" else item["map_b"]) is not None:
            try:
                map_id = view.map_id(MapKey.from_json(shown))
            except RobustXAIError:  # a damaged study database: no such image, not a server error
                map_id = None
            png = view.overlay_png(map_id) if map_id is not None else None
        else:
            png = None
        if png is None:
            raise HTTPException(status_code=404, detail="no such image")
        return Response(content=png, media_type="image/png")

    @app.post("/r/{token}/answer")
    def answer(request: Request, token: str, body: Annotated[Answer, Body()]) -> JSONResponse:
        rater = _rater(request, token)
        request.app.state.auth.check_csrf(request, f"rater:{token}")
        item = _item_at(request, rater, body.position)
        valid = range(1, 6) if item["kind"] == "likert" else range(0, 2)
        if body.value not in valid:
            raise HTTPException(status_code=422, detail=f"value must be in {valid.start}–{valid.stop - 1}")
        request.app.state.db.save_answer(token, item["item_no"], body.value)
        return JSONResponse({"saved": True, "position": body.position})

    @app.get("/studies/{study_id}", response_class=HTMLResponse)
    def results(request: Request, study_id: str) -> HTMLResponse:
        from robustxai.web._study import study_results

        request.app.state.auth.require_admin(request)
        db: StudioDB = request.app.state.db
        if study_id not in {s["study_id"] for s in db.studies()}:
            raise HTTPException(status_code=404, detail=f"no study {study_id!r}")
        res = study_results(request.app.state.run, db, study_id)
        return render(request, "results.html.j2", "admin", study_id=study_id, res=res, fmt=fmt_number)
