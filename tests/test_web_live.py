"""The explorer on a real audited run: maps recomputed on demand, and the report served with its links."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from robustxai.audit._reload import open_run_context  # noqa: E402
from robustxai.explain import create_explainer  # noqa: E402
from robustxai.web import create_app  # noqa: E402
from robustxai.web._runview import heat_png  # noqa: E402
from robustxai.web._security import REPORT_CSP  # noqa: E402
from web_fixtures import make_audited_run  # noqa: E402

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = "tests internals of robustxai.audit._reload, robustxai.web._runview, robustxai.web._security"

ADMIN = "admin-token-for-live-tests"
pytestmark = pytest.mark.slow  # one real (tiny) audit, shared by the module


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_audited_run(tmp_path_factory.mktemp("live"))


@pytest.fixture(scope="module")
def admin(run_dir: Path) -> TestClient:
    client = TestClient(create_app(run_dir, admin_token=ADMIN, reopen=open_run_context))
    client.headers["x-admin-token"] = ADMIN
    return client


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png))).astype(int)


def live(index: int, method: str = "saliency", condition: str = "clean") -> str:
    return f"/img/live/{index}.png?model=a&method={method}&condition={condition}"


def test_a_map_the_run_does_not_store_is_computed_on_demand(admin: TestClient, run_dir: Path) -> None:
    view = admin.app.state.run  # type: ignore[attr-defined]
    index = next(i for i, s in enumerate(view.sample_ids) if not view.has_pixels(s))
    page = admin.get(f"/explore/sample/{index}")
    assert page.status_code == 200
    assert 'data-src="/img/live/' in page.text and "computing…" in page.text
    assert '<path class="outline"' in page.text
    assert admin.get(f"/img/sample/{index}.png").status_code == 200
    r = admin.get(live(index))
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    ctx = open_run_context(run_dir)
    direct = create_explainer("saliency").explain(ctx.model("a"), ctx.image(index)[None]).maps[0].numpy()
    assert np.abs(pixels(r.content) - pixels(heat_png(direct))).max() <= 1
    assert admin.get(live(index)).content == r.content  # cached


def test_a_stored_map_is_served_as_stored(admin: TestClient) -> None:
    view = admin.app.state.run  # type: ignore[attr-defined]
    map_id, key = next((i, k) for i, k in enumerate(view.map_keys) if k.condition != "clean")
    index = view.sample_index(key.sample_id)
    r = admin.get(live(index, key.explainer, key.condition_label))
    assert r.status_code == 200
    assert r.content == admin.get(f"/img/map/{map_id}.png").content
    # and the recomputed map of a stored image matches its stored map (both drawn the same way)
    ctx = view.context()
    again = ctx.explain(index, key.model, key.explainer, key.condition, key.epsilon)
    stored_like = ((again - again.min()) / np.ptp(again)).astype(np.float16)  # the store keeps float16
    assert np.abs(pixels(r.content) - pixels(heat_png(stored_like))).max() <= 1


def test_out_of_range_and_unknown_names(admin: TestClient) -> None:
    assert admin.get(live(999)).status_code == 404
    assert admin.get(live(-1)).status_code == 404
    assert admin.get("/explore/sample/999").status_code == 404
    r = admin.get("/img/live/0.png?model=../../etc&method=saliency&condition=clean")
    assert r.status_code == 400 and "unknown model" in r.json()["detail"]
    assert admin.get("/img/live/0.png?model=a&method=saliency&condition=nope").status_code == 400
    assert admin.get("/img/live/0.png?model=a").status_code == 422


def test_a_model_missing_from_the_cache_is_one_line(run_dir: Path, tmp_path: Path) -> None:
    text = (run_dir / "config.toml").read_text()
    cache = str(run_dir.parent / "cache")
    assert cache in text
    copy = tmp_path / "run"
    copy.mkdir()
    (copy / "results.sqlite").write_bytes((run_dir / "results.sqlite").read_bytes())
    (copy / "config.toml").write_text(text.replace(cache, str(tmp_path / "empty-cache")))
    client = TestClient(create_app(copy, admin_token=ADMIN, reopen=open_run_context))
    client.headers["x-admin-token"] = ADMIN
    view = client.app.state.run  # type: ignore[attr-defined]
    index = next(i for i, s in enumerate(view.sample_ids) if not view.has_pixels(s))
    r = client.get(live(index))
    assert r.status_code == 404 and "not in the model cache" in r.json()["detail"]
    assert "\n" not in r.json()["detail"]
    assert client.get(f"/explore/sample/{index}").status_code == 200


def test_the_served_report_links_into_the_explorer(admin: TestClient, run_dir: Path) -> None:
    on_disk = (run_dir / "report.html").read_text()
    assert "/explore" not in on_disk  # opened from disk: no studio links at all
    r = admin.get("/report")
    assert r.status_code == 200 and r.headers["content-security-policy"] == REPORT_CSP
    links = re.findall(r'href="(/explore[^"]*)"', r.text)
    samples = [u for u in links if u.startswith("/explore/sample/")]
    assert samples and any("model=" in u for u in links)
    for url in links[:4] + samples:
        assert admin.get(url.replace("&amp;", "&")).status_code == 200, url
    assert r.text.count("<figure") == on_disk.count("<figure")
    assert TestClient(admin.app).get("/report").status_code == 401


def test_a_pair_the_run_did_not_audit_is_not_recomputed(admin: TestClient) -> None:
    view = admin.app.state.run  # type: ignore[attr-defined]
    index = next(i for i, s in enumerate(view.sample_ids) if not view.has_pixels(s))
    skipped = ("a", "smoothgrad", "clean")  # as if the audit had skipped it (inapplicable, or a failed model)
    view.audited.discard(skipped)
    try:
        r = admin.get(live(index, "smoothgrad", "clean"))
        assert r.status_code == 404 and "no smoothgrad maps of a under clean" in r.json()["detail"]
        assert "smoothgrad&amp;condition=clean" not in admin.get(f"/explore/sample/{index}").text
    finally:
        view.audited.add(skipped)
