"""Issue 17, points 6 and 7: hardening headers on every response, a page that works under its
Content-Security-Policy (no inline script), /docs served from our own pinned Swagger UI, and a
title with a backslash that cannot break the share viewer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient

from tests.web.conftest import LiveServer, wait_for
from tests.web.test_browser import browser  # noqa: F401  (the module's chromium fixture)

ROUTES = ["/", "/docs", "/openapi.json", "/healthz", "/static/app.js", "/api/sessions/nope-nope-nope-nope",
          "/no-such-page", "/v/not-a-token-at-all"]  # fmt: skip


def _assert_hardened(headers: httpx.Headers | Any, where: str) -> None:
    assert headers.get("x-content-type-options") == "nosniff", where
    csp = headers.get("content-security-policy", "")
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp, (where, csp)
    assert "frame-ancestors 'none'" in csp, (where, csp)
    assert headers.get("referrer-policy") == "same-origin", where


@pytest.mark.parametrize("route", ROUTES)
def test_every_response_carries_the_hardening_headers(client: TestClient, route: str) -> None:
    _assert_hardened(client.get(route).headers, route)


def test_refusals_carry_them_too(client: TestClient) -> None:
    too_big = client.post("/api/sessions", headers={"content-length": str(10**13)}, content=b"x")
    assert too_big.status_code == 413
    _assert_hardened(too_big.headers, "413")
    bad = client.post("/api/sessions", data={"nothing": "here"})
    assert 400 <= bad.status_code < 500
    _assert_hardened(bad.headers, "4xx")


def test_frame_ancestors_is_a_setting(make_client: Callable[..., TestClient]) -> None:
    client = make_client(frame_ancestors="'self' https://intranet.example")
    csp = client.get("/").headers["content-security-policy"]
    assert "frame-ancestors 'self' https://intranet.example" in csp
    assert "x-frame-options" not in client.get("/").headers


def test_templates_have_no_inline_script_or_style() -> None:
    for template in Path(__file__).resolve().parents[2].joinpath("templates").glob("*.html"):
        text = template.read_text()
        assert "<script>" not in text and " style=" not in text, template.name
        assert "<script src=" in text, template.name


def _csp_errors(page: Any) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)
    return errors


def test_docs_work_offline_under_the_policy(browser: Any, live_server: LiveServer) -> None:  # noqa: F811
    page = browser.new_page()
    foreign: list[str] = []

    def only_ours(route: Any) -> None:
        if route.request.url.startswith(live_server.url):
            route.continue_()
        else:  # offline: nothing but our own server answers
            foreign.append(route.request.url)
            route.abort()

    page.route("**/*", only_ours)
    errors = _csp_errors(page)
    page.goto(live_server.url + "/docs")
    page.wait_for_selector(".opblock-summary-path", timeout=30_000)  # the operations are listed
    assert "/api/sessions" in page.text_content("#swagger-ui")
    assert foreign == [] and errors == []
    page.close()


def test_a_backslash_title_keeps_the_share_viewer_working(
    browser: Any,  # noqa: F811
    live_server: LiveServer,
    corpus: Path,
    photo_tiles: list[Path],
) -> None:
    files = [("tiles", (p.name, p.read_bytes(), "image/jpeg")) for p in photo_tiles[:20]]
    session = httpx.post(f"{live_server.url}/api/sessions", files=files, timeout=60).json()
    wait_for(lambda: httpx.get(live_server.url + session["status_url"]).json(), until={"ready"})
    cover = corpus / "covers" / "mate-Dune.jpg"
    name = 'a\\"</script><b>x'  # a backslash, a quote and markup in the cover's name
    created = httpx.post(
        f"{live_server.url}/api/sessions/{session['id']}/mosaics",
        files={"cover": (name, cover.read_bytes(), "image/jpeg")},
        data={"cols": "20", "tile_size": "16"},
        timeout=60,
    ).json()
    mosaic = wait_for(lambda: httpx.get(live_server.url + created["status_url"]).json(), until={"ready"})
    page = browser.new_page()
    errors = _csp_errors(page)
    page.goto(live_server.url + mosaic["viewer_url"])
    page.wait_for_function("window.tesseraViewer && window.tesseraViewer.layout", timeout=60_000)
    title = page.evaluate("document.body.dataset.title")
    assert title.startswith("a\\") and "<b>" in title  # shown as text, never as markup or code
    assert page.locator("b").count() == 0 and errors == []
    page.close()


def test_the_upload_page_runs_under_the_policy(browser: Any, live_server: LiveServer) -> None:  # noqa: F811
    page = browser.new_page()
    errors = _csp_errors(page)
    page.goto(live_server.url + "/")
    page.wait_for_load_state("networkidle")
    assert errors == []
    page.close()
