"""The annotate room: points, boxes and polygons on the images of a data folder, saved on every change.

Admin only (the person who started the server hands the admin link to the annotators on this machine);
each annotator names themselves (``?who=``), and their work is kept apart with who and when. Exports give
``annotations.json`` (read by the audit as ``fmt = "json"``) and COCO; the list shows agreement per image.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Annotated

from fastapi import Body, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from robustxai._errors import RobustXAIError
from robustxai.data._imageio import image_size
from robustxai.report._numbers import fmt_number
from robustxai.web._annotations import (
    AnnotationRecord,
    AnnotationStore,
    ImageAnnotation,
    agreement,
    display_png,
    scan_images,
    to_annotations_json,
    to_coco,
)
from robustxai.web._pages import render

WHO = "^[A-Za-z0-9_.@-]{1,40}$"
Who = Annotated[str, Query(pattern=WHO, description="the annotator's name")]


class Folder:
    """The data folder's images (found once), their display PNGs and sizes (cached)."""

    def __init__(self, root: Path, store: AnnotationStore) -> None:
        self.root = root
        self.images = scan_images(root)
        self.store = store
        self._png: dict[int, tuple[bytes, int, int]] = {}
        self._lock = threading.Lock()

    def check(self, index: int) -> str:
        """The relative path of image ``index`` (404 for an index outside the list)."""
        if not 0 <= index < len(self.images):
            raise HTTPException(status_code=404, detail=f"no image {index} in the data folder")
        return self.images[index]

    def png(self, index: int) -> tuple[bytes, int, int]:
        """Image ``index`` as a display PNG with its width and height (cached; 422 if unreadable)."""
        rel = self.check(index)
        with self._lock:
            hit = self._png.get(index)
        if hit is None:
            try:
                hit = display_png(self.root / rel)
            except RobustXAIError as exc:
                raise HTTPException(status_code=422, detail=f"cannot show image {index}: {exc}") from None
            with self._lock:
                self._png[index] = hit
        return hit

    def size(self, rel: str) -> tuple[int, int]:
        """``(width, height)`` of an image (header only); ``(0, 0)`` when it cannot be read."""
        try:
            h, w = image_size(self.root / rel)
        except RobustXAIError:
            return 0, 0
        return w, h


def _folder(request: Request) -> Folder:
    request.app.state.auth.require_admin(request)
    folder: Folder | None = request.app.state.folder
    if folder is None:
        raise HTTPException(status_code=404, detail="no data folder: start the studio with --data DIR")
    return folder


def _listing(folder: Folder, who: str) -> tuple[list[dict[str, object]], list[str]]:
    """The listing's rows (one per image: who annotated it, how well they agree) and every annotator."""
    by_image: dict[str, list[AnnotationRecord]] = {}
    for row in folder.store.load():
        by_image.setdefault(row["image"], []).append(row)
    rows: list[dict[str, object]] = []
    annotators = sorted({r["annotator"] for rs in by_image.values() for r in rs})
    for i, rel in enumerate(folder.images):
        done = by_image.get(rel, [])
        agree = agreement(done, *folder.size(rel)) if len(done) > 1 else None
        rows.append(
            {
                "index": i,
                "image": rel,
                "annotators": len(done),
                "mine": any(r["annotator"] == who for r in done),
                "agree": {k: fmt_number(v) for k, v in agree.items()} if agree else None,
            }
        )
    return rows, annotators


def _check_shapes(body: ImageAnnotation, w: int, h: int) -> None:
    """Refuse (422) a shape outside the ``w`` × ``h`` image or with the wrong number of vertices."""
    for s in body.shapes:
        n = len(s.points)
        if any(not (-1 <= x <= w + 1 and -1 <= y <= h + 1) for x, y in s.points):
            raise HTTPException(status_code=422, detail=f"a {s.type} lies outside the {w} × {h} image")
        if (s.type == "point" and n != 1) or (s.type == "box" and n != 2) or (s.type == "polygon" and n < 3):
            raise HTTPException(status_code=422, detail=f"a {s.type} cannot have {n} vertices")


def register(app: FastAPI) -> None:
    """Add the annotate room's routes to ``app`` (``app.state.folder`` is ``None`` without ``--data``)."""

    @app.get("/annotate", response_class=HTMLResponse)
    def listing(request: Request, who: Who = "annotator") -> HTMLResponse:
        rows, annotators = _listing(_folder(request), who)
        return render(request, "annotate_list.html.j2", "admin", rows=rows, who=who, annotators=annotators)

    @app.get("/annotate/{index}", response_class=HTMLResponse)
    def page(request: Request, index: int, who: Who = "annotator") -> HTMLResponse:
        folder = _folder(request)
        rel = folder.check(index)
        _, w, h = folder.png(index)
        mine = [r for r in folder.store.load(rel) if r["annotator"] == who]
        saved: dict[str, object] = {"shapes": [], "no_finding": False, "note": ""}
        if mine:
            saved = {
                "shapes": mine[0]["shapes"],
                "no_finding": mine[0]["no_finding"],
                "note": mine[0]["note"],
            }
        state = json.dumps(saved)
        return render(
            request,
            "annotate.html.j2",
            "admin",
            index=index,
            image=rel,
            who=who,
            width=w,
            height=h,
            state=state,
            n=len(folder.images),
            note=saved["note"],
        )

    @app.get("/annotate/img/{index}.png")
    def image(request: Request, index: int) -> Response:
        return Response(content=_folder(request).png(index)[0], media_type="image/png")

    @app.post("/annotate/{index}/save")
    def save(
        request: Request, index: int, body: Annotated[ImageAnnotation, Body()], who: Who = "annotator"
    ) -> JSONResponse:
        folder = _folder(request)
        request.app.state.auth.check_csrf(request, "admin")
        rel = folder.check(index)
        _, w, h = folder.png(index)
        _check_shapes(body, w, h)
        saved_at = folder.store.save(rel, who, body)
        return JSONResponse({"saved": True, "updated_at": saved_at, "shapes": len(body.shapes)})

    @app.get("/annotate/export/{name}")
    def export(request: Request, name: str, who: Who = "annotator") -> JSONResponse:
        folder = _folder(request)
        rows = folder.store.load()
        if name == "annotations.json":
            doc = to_annotations_json(rows, who)
        elif name == "coco.json":
            doc = to_coco(rows, who, {r: folder.size(r) for r in {x["image"] for x in rows}})
        else:
            raise HTTPException(status_code=404, detail="exports: annotations.json, coco.json")
        headers = {"content-disposition": f'attachment; filename="{who}-{name}"'}
        return JSONResponse(doc, headers=headers)
