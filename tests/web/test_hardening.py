"""Issue 17, points 6 and 7: hardening headers on every response, a page that works under its
Content-Security-Policy (no inline script), /docs served from our own pinned Swagger UI, and a
title with a backslash that cannot break the share viewer."""

from __future__ import annotations

import time
import zipfile
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


def _wait_until(page: Any, expression: str, timeout: float = 60) -> None:
    """Poll ``expression`` with ``page.evaluate`` (a DevTools call, which the page's CSP allows;
    Playwright's ``wait_for_function`` evaluates a string, which the policy rightly blocks)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(f"Boolean({expression})"):
        assert time.monotonic() < deadline, f"{expression} stayed false"
        time.sleep(0.2)


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
    _wait_until(page, "window.tesseraViewer && window.tesseraViewer.layout")
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


def test_zip_member_names_are_capped_like_upload_names(
    make_client: Callable[..., TestClient], corpus: Path, tmp_path: Path
) -> None:
    client = make_client(max_zip_members=30)
    png = (corpus / "odd" / "tiny_1x1.png").read_bytes()
    archive = tmp_path / "long.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(300):  # names of 60,000 characters; more members than the limit
            zf.writestr(f"{i:03d}" + "n" * 60_000 + ".png", png if i % 2 else b"not an image")
    session = client.post(
        "/api/sessions", files={"tiles": ("long.zip", archive.read_bytes(), "application/zip")}
    )
    assert session.status_code == 202
    status = wait_for(lambda: client.get(session.json()["status_url"]).json(), until={"ready", "failed"})
    names = [r["file"] for r in status["rejected"]]
    assert names and all(len(n) <= 200 for n in names)
    assert any("were not unpacked" in r["reason"] for r in status["rejected"])
    assert len(status["rejected"]) <= 31  # 15 bad members and one line for the 270 past the limit
    assert len(client.get(session.json()["status_url"]).content) < 50_000


def test_the_policy_allows_openseadragons_style_by_its_hash_only() -> None:
    """The hash in the policy is the one of the <style> text the vendored OpenSeadragon adds (a
    new OpenSeadragon version with another text fails here, not silently in the browser)."""
    import base64
    import hashlib
    import re

    from app.web.headers import OPENSEADRAGON_STYLE_HASH, content_security_policy

    source = (Path(__file__).parents[2] / "static/vendor/openseadragon/openseadragon.min.js").read_text()
    texts = re.findall(r'data-openseadragon-mobile-css","true"\);\w+\.textContent="([^"]*)"', source)
    assert len(texts) == 1
    digest = base64.b64encode(hashlib.sha256(texts[0].encode()).digest()).decode()
    assert f"'sha256-{digest}'" == OPENSEADRAGON_STYLE_HASH
    csp = content_security_policy(frame_ancestors="'none'", extra_origins=[])
    assert f"style-src 'self' {OPENSEADRAGON_STYLE_HASH}" in csp and "unsafe-inline" not in csp
