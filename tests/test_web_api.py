"""The studio's routes through FastAPI's test client: auth, CSRF, traversal, malformed bodies, the rooms."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from robustxai.cli import app as cli_app  # noqa: E402
from robustxai.web import create_app  # noqa: E402
from robustxai.web._study import create_study  # noqa: E402
from web_fixtures import IDS, METHODS, MODELS, make_run  # noqa: E402

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = "tests internals of robustxai.web._db, robustxai.web._study"

ADMIN = "admin-token-for-tests"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("web") / "run")


@pytest.fixture()
def client(run_dir: Path) -> TestClient:
    return TestClient(create_app(run_dir, admin_token=ADMIN))


@pytest.fixture()
def admin(client: TestClient) -> TestClient:
    client.headers["x-admin-token"] = ADMIN
    return client


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf-token" content="([0-9a-f]+)"', html)
    assert found, html[:300]
    return found.group(1)


ADMIN_ROUTES = [
    "/",
    "/explore",
    "/explore/sample/0",
    "/img/sample/0.png",
    "/img/map/0.png",
]


@pytest.mark.parametrize("url", ADMIN_ROUTES)
def test_admin_routes_need_the_token(client: TestClient, url: str) -> None:
    r = client.get(url)
    assert r.status_code == 401 and "admin token required" in r.json()["detail"]
    client.headers["x-admin-token"] = "wrong"
    assert client.get(url).status_code == 401
    client.headers["x-admin-token"] = ADMIN
    assert client.get(url).status_code == 200


def test_token_link_sets_a_cookie_and_drops_the_token_from_the_url(client: TestClient) -> None:
    r = client.get(f"/explore?token={ADMIN}&order=desc", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/explore?order=desc"
    assert "HttpOnly" in r.headers["set-cookie"] and "SameSite=strict" in r.headers["set-cookie"]
    assert client.get("/explore").status_code == 200  # the cookie now authenticates
    assert client.get("/?token=nope", follow_redirects=False).status_code == 401


def test_every_response_carries_the_security_headers(admin: TestClient) -> None:
    for url in ("/", "/explore", "/static/studio.js", "/nope", "/img/sample/0.png"):
        h = admin.get(url).headers
        assert "script-src 'self'" in h["content-security-policy"], url
        assert "frame-ancestors 'none'" in h["content-security-policy"]
        assert h["x-content-type-options"] == "nosniff" and h["referrer-policy"] == "no-referrer"


def test_no_inline_script_in_pages(admin: TestClient) -> None:
    for url in ("/", "/explore", "/explore/sample/0"):
        assert re.search(r"<script(?![^>]*\bsrc=)", admin.get(url).text) is None, url


def test_explore_filters_sorts_and_paginates(admin: TestClient, run_dir: Path) -> None:
    import robustxai as rx

    r = admin.get(
        "/explore",
        params={
            "model": "m2",
            "method": "gradcam",
            "condition": "pgd@0.01569",
            "metric": "pointing_game",
            "order": "desc",
        },
    )
    assert r.status_code == 200
    m = rx.open_run(run_dir).metrics
    sel = m[
        (m.model == "m2")
        & (m.explainer == "gradcam")
        & (m.condition == "pgd")
        & (m.metric == "pointing_game")
    ]
    expected = [f"{v:.3f}" for v in sorted(sel["value"], reverse=True)]
    shown = re.findall(r'<td class="num">([0-9.]+)</td>', r.text)
    assert shown == expected
    assert admin.get("/explore", params={"page": 99}).status_code == 200  # clamped to the last page
    bad = admin.get("/explore", params={"model": "zzz"})
    assert bad.status_code == 400 and "known: m1, m2" in bad.json()["detail"]
    assert admin.get("/explore", params={"order": "sideways"}).status_code == 422


def test_sample_page_shows_truth_and_every_stored_map(admin: TestClient) -> None:
    html = admin.get("/explore/sample/0").text
    assert html.count('class="overlay"') == len(MODELS) * len(METHODS) * 2
    assert html.count("<circle") == 2 * (1 + len(MODELS) * len(METHODS) * 2)
    assert "metrics only" in admin.get("/explore/sample/5").text  # no pixels stored for it
    png = admin.get("/img/map/3.png")
    assert png.headers["content-type"] == "image/png" and png.content[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "url",
    [
        "/img/sample/..%2F..%2Fetc%2Fpasswd.png",
        "/img/sample/-1.png",
        "/img/map/99999.png",
        "/img/sample/%2Fetc%2Fpasswd",
        "/static/..%2F..%2Fweb%2Fapp.py",
        "/static/../db.py",
        "/explore/sample/99",
    ],
)
def test_no_client_path_reaches_the_file_system(admin: TestClient, url: str) -> None:
    r = admin.get(url)
    assert r.status_code in (404, 422) and b"import" not in r.content


def _study(run_dir: Path, raters: int = 2) -> tuple[str, list[str]]:
    return create_study(run_dir, raters=raters, images=4, pairs=2, seed=0)


def test_rater_pages_hide_identifiers_and_save_answers(client: TestClient, run_dir: Path) -> None:
    study_id, (tok_a, tok_b) = _study(run_dir)
    page = client.get(f"/r/{tok_a}")  # the server sees a study created after it started
    assert page.status_code == 200
    text = page.text.replace(tok_a, "<token>")  # a random token may contain "m1" by chance
    for secret in (*MODELS, *METHODS, *IDS, "pgd", study_id):
        assert secret not in text, secret
    assert client.get(f"/r/{tok_a}/img/0/image.png").content[:4] == b"\x89PNG"
    assert client.get(f"/r/{tok_a}/img/0/a.png").status_code == 200
    assert client.get(f"/r/{tok_a}/img/0/../../x.png").status_code == 404
    assert client.get("/r/not-a-real-token-123/img/0/a.png").status_code == 404
    csrf = csrf_of(page.text)
    url = f"/r/{tok_a}/answer"
    body = {"position": 0, "value": 1}
    assert client.post(url, json=body).status_code == 403  # no CSRF token
    other = csrf_of(client.get(f"/r/{tok_b}").text)
    assert client.post(url, json=body, headers={"x-csrf-token": other}).status_code == 403  # B's token
    h = {"x-csrf-token": csrf}
    for bad in (
        '{"position": 0',
        "[]",
        '{"position": "x", "value": 1}',
        '{"position": 0, "value": 9}',
        '{"position": 0, "value": 1, "extra": 1}',
        '{"position": 999, "value": 1}',
        "\xff",
    ):
        r = client.post(url, content=bad, headers={**h, "content-type": "application/json"})
        assert 400 <= r.status_code < 500 and r.json()["detail"], bad
    assert client.post(url, json=body, headers=h).json() == {"saved": True, "position": 0}
    resumed = client.get(f"/r/{tok_a}")
    assert 'data-position="1"' in resumed.text and "1 answered" in resumed.text
    assert client.post(f"/r/{tok_b}/answer", json=body, headers=h).status_code == 403  # A's CSRF for B


def test_results_page_after_two_raters(admin: TestClient, run_dir: Path) -> None:
    study_id, tokens = _study(run_dir)
    for tok in tokens:
        html = admin.get(f"/r/{tok}").text
        h = {"x-csrf-token": csrf_of(html)}
        for pos in range(6):
            kind_pair = "Left is more useful" in admin.get(f"/r/{tok}?pos={pos}").text
            value = pos % 2 if kind_pair else 1 + (pos % 5)
            assert (
                admin.post(f"/r/{tok}/answer", json={"position": pos, "value": value}, headers=h).status_code
                == 200
            )
        assert "Thank you" in admin.get(f"/r/{tok}").text
    r = admin.get(f"/studies/{study_id}")
    assert r.status_code == 200 and "Krippendorff" in r.text and "pointing_game" in r.text
    assert admin.get("/studies/nope").status_code == 404
    admin.headers.pop("x-admin-token")
    assert admin.get(f"/studies/{study_id}").status_code == 401


def test_study_create_command_prints_one_link_per_rater(run_dir: Path) -> None:
    res = CliRunner().invoke(
        cli_app,
        [
            "study",
            "create",
            str(run_dir),
            "--raters",
            "3",
            "--images",
            "2",
            "--base-url",
            "http://example.test:1/",
        ],
    )
    assert res.exit_code == 0, res.output
    links = [ln for ln in res.stdout.splitlines() if ln.startswith("http://example.test:1/r/")]
    assert len(links) == 3 and len(set(links)) == 3
    bad = CliRunner().invoke(cli_app, ["study", "create", str(run_dir), "--methods", "lime"])
    assert bad.exit_code == 2 and "no stored maps of lime" in bad.output
    assert CliRunner().invoke(cli_app, ["serve", str(run_dir / "nope")]).exit_code == 2


@pytest.mark.slow
def test_report_gains_an_expert_ratings_section(tmp_path: Path) -> None:
    from robustxai.report import build_report
    from robustxai.web._db import StudioDB

    run = make_run(tmp_path / "run")
    assert "Expert ratings" not in build_report(run).read_text()  # no study: no section
    study_id, tokens = create_study(run, raters=2, images=4, pairs=2, seed=0)
    assert "Expert ratings" not in build_report(run).read_text()  # a study without answers: no section
    db = StudioDB(run)
    for rater, tok in enumerate(tokens):
        for item_no in range(6):
            kind = db.item(study_id, item_no)
            assert kind is not None
            db.save_answer(tok, item_no, (item_no + rater) % 2 if kind["kind"] == "pair" else 1 + item_no % 5)
    html = build_report(run).read_text()
    assert 'id="ratings"' in html and "Krippendorff" in html and "Bradley–Terry" in html
    assert "pointing_game" in html.split('id="ratings"')[1]


def test_serve_prints_the_admin_link_and_warns_off_loopback(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    calls: list[dict[str, object]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(kw))
    res = CliRunner().invoke(cli_app, ["serve", str(run_dir)])
    assert res.exit_code == 0, res.output
    assert calls[-1]["host"] == "127.0.0.1" and calls[-1]["port"] == 8765
    assert (
        re.search(r"http://127\.0\.0\.1:8765/\?token=[\w-]{20,}", res.stdout) and "warning" not in res.output
    )
    res = CliRunner().invoke(cli_app, ["serve", str(run_dir), "--host", "0.0.0.0", "--port", "9000"])
    assert res.exit_code == 0 and "warning: serving on 0.0.0.0" in res.output and calls[-1]["port"] == 9000
    bad = CliRunner().invoke(cli_app, ["serve", str(run_dir), "--data", str(run_dir / "nope")])
    assert bad.exit_code == 2 and "is not a folder" in bad.output


def test_home_lists_studies_with_their_rater_links(admin: TestClient, run_dir: Path) -> None:
    study_id, tokens = _study(run_dir)
    html = admin.get("/").text
    assert study_id in html and all(f"http://testserver/r/{t}" in html for t in tokens)
    assert "--data FOLDER" in html
