"""The annotate room via the test client: images by id, saving, exports the audit reads, agreement."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from robustxai.data import read_annotations  # noqa: E402
from robustxai.web import create_app  # noqa: E402
from robustxai.web._annotations import agreement, region_mask  # noqa: E402
from test_dicom import NAME, PATIENT_ID, write_dicom  # noqa: E402
from test_web_api import csrf_of  # noqa: E402
from web_fixtures import make_run  # noqa: E402

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = "tests internals of robustxai.web._annotations"

ADMIN = "annotate-admin"


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ann") / "data"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((16, 20)) * 255).astype(np.uint8)).save(root / "a" / "img8.png")
    Image.fromarray((rng.random((16, 20)) * 4000).astype(np.uint16)).save(root / "b" / "img16.png")
    write_dicom(root / "c" / "scan.dcm", (rng.random((16, 16)) * 2000).astype(np.uint16))
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden.png").write_bytes(b"x")
    return root


@pytest.fixture()
def client(tmp_path: Path, folder: Path) -> TestClient:
    c = TestClient(create_app(make_run(tmp_path / "run"), data_dir=folder, admin_token=ADMIN))
    c.headers["x-admin-token"] = ADMIN
    return c


def test_listing_and_images_by_id(client: TestClient) -> None:
    html = client.get("/annotate").text
    for rel in ("a/img8.png", "b/img16.png", "c/scan.dcm"):
        assert rel in html
    assert "notes.txt" not in html and ".hidden" not in html
    for i in range(3):
        png = client.get(f"/annotate/img/{i}.png")
        assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
        page = client.get(f"/annotate/{i}").text
        assert NAME not in page and PATIENT_ID not in page and "Doe" not in page  # no DICOM header shown
    assert Image.open(__import__("io").BytesIO(client.get("/annotate/img/1.png").content)).size == (20, 16)
    for bad in (
        "/annotate/img/3.png",
        "/annotate/img/-1.png",
        "/annotate/img/..%2Fa%2Fimg8.png",
        "/annotate/9",
    ):
        assert client.get(bad).status_code in (404, 422)
    client.headers.pop("x-admin-token")
    assert client.get("/annotate").status_code == 401 and client.get("/annotate/img/0.png").status_code == 401


def test_without_data_folder_the_room_says_so(tmp_path: Path) -> None:
    c = TestClient(create_app(make_run(tmp_path / "run"), admin_token=ADMIN))
    r = c.get("/annotate", headers={"x-admin-token": ADMIN})
    assert r.status_code == 404 and "--data" in r.json()["detail"]


SHAPES = {
    "shapes": [
        {"type": "point", "points": [[3, 4]]},
        {"type": "point", "points": [[10, 5]]},
        {"type": "point", "points": [[7, 12]]},
        {"type": "box", "points": [[2, 3], [6, 8]]},
    ],
    "no_finding": False,
    "note": "two fragments",
}


def test_save_reload_and_export_round_trip_through_the_audit_reader(
    client: TestClient, tmp_path: Path
) -> None:
    h = {"x-csrf-token": csrf_of(client.get("/annotate/0?who=alice").text)}
    assert client.post("/annotate/0/save?who=alice", json=SHAPES).status_code == 403  # no CSRF token
    r = client.post("/annotate/0/save?who=alice", json=SHAPES, headers=h)
    assert r.status_code == 200 and r.json()["shapes"] == 4
    page = client.get("/annotate/0?who=alice").text  # reload: the page carries the saved shapes
    assert "two fragments" in page and "[[10.0, 5.0]]" in page.replace("&#34;", '"')
    assert "[[10.0, 5.0]]" not in client.get("/annotate/0?who=bob").text.replace("&#34;", '"')
    doc = client.get("/annotate/export/annotations.json?who=alice").json()
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(doc))
    res = read_annotations(path, {"a/img8.png": (16, 20), "b/img16.png": (16, 20)}, fmt="json")
    truth = res.truths["a/img8.png"]
    assert truth.points.tolist() == [[3, 4], [10, 5], [7, 12]] and not res.warnings
    assert truth.mask is not None and truth.mask.sum() == 4 * 5 and truth.mask[3:8, 2:6].all()
    coco = client.get("/annotate/export/coco.json?who=alice").json()
    assert coco["images"][0] == {"id": 0, "file_name": "a/img8.png", "width": 20, "height": 16}
    assert [a["bbox"] for a in coco["annotations"]][-1] == [2.0, 3.0, 4.0, 5.0]
    assert client.get("/annotate/export/other.json").status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        '{"shapes": [{"type": "circle", "points": [[1, 1]]}]}',
        '{"shapes": [{"type": "polygon", "points": [[1, 1], [2, 2]]}]}',
        '{"shapes": [{"type": "point", "points": [[1, 1], [2, 2]]}]}',
        '{"shapes": [{"type": "point", "points": [[NaN, 1]]}]}',
        '{"shapes": [{"type": "point", "points": [[500, 1]]}]}',
        '{"shapes": [{"type": "point", "points": [["a", 1]]}]}',
        '{"shapes": [], "extra": 1}',
        '{"shapes": "none"}',
        '{"shapes": [',
        "null",
    ],
)
def test_malformed_annotations_are_4xx_with_a_message(client: TestClient, body: str) -> None:
    h = {"x-csrf-token": csrf_of(client.get("/annotate/0").text), "content-type": "application/json"}
    r = client.post("/annotate/0/save?who=alice", content=body, headers=h)
    assert 400 <= r.status_code < 500 and r.json()["detail"], body
    assert client.post("/annotate/0/save?who=../x", content="{}", headers=h).status_code == 422
    assert client.post("/annotate/7/save?who=alice", content="{}", headers=h).status_code == 404


def test_agreement_by_hand() -> None:
    a = {"shapes": [{"type": "point", "points": [[0, 0]]}, {"type": "box", "points": [[0, 0], [4, 4]]}]}
    b = {"shapes": [{"type": "point", "points": [[3, 4]]}, {"type": "box", "points": [[2, 0], [6, 4]]}]}
    res = agreement([a, b], 10, 10)
    assert res["point_distance"] == pytest.approx(5.0)  # one point each, 3-4-5 triangle
    assert res["region_iou"] == pytest.approx(8 / 24)  # 16 + 16 pixels, 8 shared
    assert res["finding_agreement"] == 1.0
    assert region_mask(b["shapes"], 10, 10)[0:4, 2:6].all()
    none = agreement([a, {"shapes": []}], 10, 10)
    assert none["finding_agreement"] == 0.0 and np.isnan(none["point_distance"])


def test_text_from_users_is_escaped(client: TestClient) -> None:
    h = {"x-csrf-token": csrf_of(client.get("/annotate/0").text)}
    body = {"shapes": [], "note": '</textarea><script>alert("x")</script>'}
    assert client.post("/annotate/0/save?who=eve", json=body, headers=h).status_code == 200
    page = client.get("/annotate/0?who=eve").text
    assert "<script>alert" not in page and "&lt;script&gt;alert" in page
