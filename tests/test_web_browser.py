"""The studio in a real browser (Debian's chromium through Playwright), served by uvicorn on loopback.

Two raters complete a ten-item blinded study by clicking; the results page shows agreement and the
metric↔rating correlation; the explorer filters and sorts through its form. Screenshots of each page go to
``$ROBUSTXAI_ARTIFACTS`` (default ``tests/artifacts/``).
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
from chromium import ARGS, CHROMIUM, NEEDS_CHROMIUM, artifacts_dir  # noqa: E402
from robustxai.audit._reload import open_run_context  # noqa: E402
from robustxai.web import create_app  # noqa: E402
from robustxai.web._study import create_study  # noqa: E402
from web_fixtures import make_audited_run, make_run  # noqa: E402

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = "tests internals of robustxai.audit._reload, robustxai.web._study"

pytestmark = [pytest.mark.slow, NEEDS_CHROMIUM]
ADMIN = "browser-admin-token"


def artifacts() -> Path:
    return artifacts_dir()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    base = tmp_path_factory.mktemp("webb")
    run = make_run(base / "run")
    data = base / "data"
    data.mkdir()
    yy, xx = np.mgrid[0:64, 0:64]
    Image.fromarray((127 + 120 * np.sin(xx / 6) * np.cos(yy / 9)).astype(np.uint8)).save(data / "knee.png")
    with _serve(create_app(run, data_dir=data, admin_token=ADMIN)) as url:
        yield url, run


@contextlib.contextmanager
def _serve(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port in a thread; yield its base URL."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


def _page(browser: Any) -> Any:
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors
    return page


def test_two_raters_complete_a_blinded_study(server: tuple[str, Path], browser: Any) -> None:
    base, run = server
    study_id, tokens = create_study(run, raters=2, images=6, pairs=4, seed=3)  # the running server sees it
    for r, tok in enumerate(tokens):
        page = _page(browser)
        page.goto(f"{base}/r/{tok}")
        for step in range(10):
            page.wait_for_selector("button.answer")
            if r == 0 and step in (0, 6):
                page.click("#toggle-map")  # the image alone, then the map again
                assert page.locator("img.overlay").first.evaluate("e => e.style.visibility") == "hidden"
                page.click("#toggle-map")
                page.screenshot(path=str(artifacts() / f"studio_rate_{step}.png"), full_page=True)
            answers = page.locator("button.answer")
            answers.nth((step + r) % answers.count()).click()
            page.wait_for_url(re.compile(rf"pos={step + 1}$"))
        assert "Thank you" in page.content() and "answered 10 of 10" in page.inner_text("main")
        assert not page.errors, page.errors  # no CSP violation, no script error
        page.close()
    admin = _page(browser)
    admin.goto(f"{base}/?token={ADMIN}")
    admin.click(f"text={study_id}") if admin.locator(f"a:has-text('{study_id}')").count() else None
    admin.goto(f"{base}/studies/{study_id}")
    text = admin.inner_text("main")
    assert "20 answers from 2 raters" in text and re.search(r"interval -?[0-9.]+", admin.inner_text("#alpha"))
    assert len(admin.locator("#correlation tr").all()) == 5
    admin.screenshot(path=str(artifacts() / "studio_results.png"), full_page=True)
    assert not admin.errors, admin.errors


def test_explorer_filters_and_sorts(server: tuple[str, Path], browser: Any) -> None:
    base, _ = server
    page = _page(browser)
    page.goto(f"{base}/explore?token={ADMIN}")
    page.select_option("select[name=model]", "m2")
    page.select_option("select[name=metric]", "pointing_game")
    page.select_option("select[name=order]", "desc")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile("model=m2.*metric=pointing_game.*order=desc"))
    values = [float(v) for v in page.locator("#listing td.num").all_inner_texts()]
    assert len(values) == 6 and values == sorted(values, reverse=True)
    page.screenshot(path=str(artifacts() / "studio_explore.png"), full_page=True)
    page.locator('#listing tr:has(td:text-is("yes")) a').first.click()
    page.wait_for_selector("img.overlay")
    page.fill("#opacity", "20")
    page.dispatch_event("#opacity", "input")
    assert page.locator("img.overlay").first.evaluate("e => e.style.opacity") == "0.2"
    page.screenshot(path=str(artifacts() / "studio_sample.png"), full_page=True)
    assert not page.errors, page.errors


def test_annotate_three_points_and_a_box_survive_a_reload(server: tuple[str, Path], browser: Any) -> None:
    base, _ = server
    page = _page(browser)
    page.goto(f"{base}/annotate/0?who=dr_a&token={ADMIN}")
    page.wait_for_selector("#ann-svg")
    box = page.locator("#ann-svg").bounding_box()
    assert box is not None
    px = lambda x, y: (box["x"] + x * box["width"] / 64, box["y"] + y * box["height"] / 64)  # noqa: E731
    status = "() => document.getElementById('ann-status').textContent.includes('(%d shapes)')"
    page.keyboard.press("p")
    page.mouse.click(*px(60.5, 60.5))
    page.wait_for_function(status % 1)
    page.keyboard.press("Control+z")  # undo is saved at once too
    page.wait_for_function(status % 0)
    for x, y in ((10.5, 10.5), (30.5, 20.5), (50.5, 40.5)):
        page.mouse.click(*px(x, y))
    page.keyboard.press("b")
    page.mouse.move(*px(5, 30))
    page.mouse.down()
    page.mouse.move(*px(20, 45), steps=4)
    page.mouse.up()
    page.wait_for_function(status % 4)
    page.reload()
    page.wait_for_selector("#ann-svg .shape")
    assert (
        page.locator("#ann-svg circle.shape").count() == 3
        and page.locator("#ann-svg rect.shape").count() == 1
    )
    page.screenshot(path=str(artifacts() / "studio_annotate.png"), full_page=True)
    page.goto(f"{base}/annotate?who=dr_a")
    assert "done" in page.inner_text("#images")
    doc = page.request.get(f"{base}/annotate/export/annotations.json?who=dr_a").json()
    knee = doc["images"]["knee.png"]
    assert np.allclose(knee["points"], [[10, 10], [30, 20], [50, 40]], atol=0.05)
    assert np.allclose(knee["boxes"], [[5, 30, 20, 45]], atol=0.05)
    assert not page.errors, page.errors


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The studio on a real (tiny) audited run, whose unstored maps are recomputed on demand."""
    run = make_audited_run(tmp_path_factory.mktemp("webl"))
    with _serve(create_app(run, admin_token=ADMIN, reopen=open_run_context)) as url:
        yield url, run


def test_unstored_maps_load_and_the_report_links_into_the_explorer(
    live_server: tuple[str, Path], browser: Any
) -> None:
    base, _ = live_server
    page = _page(browser)
    page.goto(f"{base}/report?token={ADMIN}")
    assert "Explanation maps" in page.inner_text("body")
    page.screenshot(path=str(artifacts() / "studio_report.png"), full_page=True)
    page.locator(".studio-links a[href^='/explore/sample/']").first.click()
    page.wait_for_url(re.compile(r"/explore/sample/\d+"))
    page.goto(f"{base}/explore/sample/10")  # not a figure image: every map is recomputed on demand
    live = page.locator("img.overlay.live")
    assert live.count() > 0
    from playwright.sync_api import expect

    expect(page.locator(".pending")).to_have_count(0, timeout=60_000)  # every placeholder became its map
    assert all(w > 0 for w in live.evaluate_all("els => els.map(e => e.naturalWidth)"))
    page.screenshot(path=str(artifacts() / "studio_sample_live.png"), full_page=True)
    assert not page.errors, page.errors  # no CSP violation (report styles, the fetches), no script error
