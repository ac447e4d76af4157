"""The upload page in a real browser (Debian's chromium through Playwright) against real uvicorn."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import cell_error, read_image
from tests.web.conftest import LiveServer

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not shutil.which(CHROMIUM) and not os.path.exists(CHROMIUM):
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed: run `bash scripts/test.sh`, which installs it")
        pytest.skip("chromium is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def test_upload_make_download_and_reload(
    browser: object, live_server: LiveServer, corpus: Path, photo_tiles: list[Path], tmp_path: Path
) -> None:
    page = browser.new_page(accept_downloads=True)  # type: ignore[attr-defined]
    page.goto(live_server.url + "/")
    page.set_input_files("#tiles-input", [str(p) for p in photo_tiles[:80]])
    assert "80 files picked" in page.text_content("#tiles-picked")
    cover = corpus / "covers" / "skimage-astronaut.jpg"
    page.set_input_files("#cover-input", str(cover))
    page.fill("#cols", "30")
    page.fill("#tile_size", "16")
    page.click("#make-button")
    page.wait_for_selector("#result:not([hidden])", timeout=60_000)
    page.wait_for_function("() => document.getElementById('result-image').naturalWidth > 0", timeout=30_000)
    assert page.evaluate("document.getElementById('result-image').naturalWidth") == 30 * 16
    assert "/s/" in page.url
    session_id = page.url.split("/s/", 1)[1].split("#", 1)[0]
    assert "30 × 30 tiles" in page.text_content("#result-stats")
    assert "behind transparent tiles: each cell's own colour" in page.text_content("#result-stats")

    with page.expect_download() as info:
        page.click("#download")
    saved = tmp_path / info.value.suggested_filename
    info.value.save_as(saved)
    assert saved.name.startswith("tessera-skimage-astronaut-30x30")
    shown = read_image(saved)
    assert shown.size == (480, 480)
    # < 15: the default rules (no tile next to itself, 4 % cap) cost a small library some colour;
    # a flat grey picture is at about 25-30.
    assert cell_error(read_image(cover, "RGB"), shown, 30, 30) < 15

    # The session survives a reload; another cover needs no new upload.
    page.reload()
    page.wait_for_function(
        "() => document.getElementById('library-status').textContent.includes('80 tile photos ready')"
    )
    assert page.locator("#gallery li").count() == 1
    page.set_input_files("#cover-input", str(corpus / "covers" / "mate-Dune.jpg"))
    page.click("#make-button")
    page.wait_for_function("() => document.querySelectorAll('#gallery li').length == 2", timeout=60_000)
    assert f"/s/{session_id}#" in page.url
    uploads = list((live_server.data_dir / "sessions" / session_id / "uploads").glob("0*"))
    assert len(uploads) == 80
    page.close()


def test_errors_appear_next_to_their_inputs(browser: object, live_server: LiveServer, corpus: Path) -> None:
    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto(live_server.url + "/")
    page.click("#make-button")
    assert page.is_visible("#tiles-error") and page.is_visible("#cover-error")
    assert "tile photos" in page.text_content("#tiles-error")

    page.set_input_files("#tiles-input", [str(p) for p in sorted((corpus / "tiles_photo").glob("*.jpg"))[:5]])
    page.set_input_files("#cover-input", str(corpus / "odd" / "text_named.jpg"))
    page.click("#make-button")
    page.wait_for_selector("#cover-error:not([hidden])", timeout=30_000)
    message = page.text_content("#cover-error")
    assert "text_named.jpg" in message and "not a supported image" in message
    assert page.is_hidden("#result")

    page.set_input_files("#cover-input", str(corpus / "covers" / "mate-Dune.jpg"))
    page.fill("#cols", "400")
    page.fill("#tile_size", "512")
    page.select_option("#format", "webp")
    page.click("#make-button")
    page.wait_for_selector("#format-error:not([hidden])", timeout=30_000)
    assert "too large for WEBP" in page.text_content("#format-error")
    page.close()


def test_page_fits_a_phone(browser: object, live_server: LiveServer) -> None:
    page = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2)  # type: ignore[attr-defined]
    page.goto(live_server.url + "/")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    button = page.locator("#make-button").bounding_box()
    assert button is not None and button["height"] >= 44
    page.close()


def test_viewer_zooms_into_deeper_tiles_picks_a_cell_and_animates(
    browser: object, live_server: LiveServer, corpus: Path, photo_tiles: list[Path]
) -> None:
    page = browser.new_page(viewport={"width": 1100, "height": 900})  # type: ignore[attr-defined]
    loaded: list[str] = []
    page.on("response", lambda r: loaded.append(r.url) if "_files/" in r.url and r.status == 200 else None)
    page.goto(live_server.url + "/")
    page.set_input_files("#tiles-input", [str(p) for p in photo_tiles[:60]])
    page.set_input_files("#cover-input", str(corpus / "covers" / "mate-LadyBird.jpg"))
    page.fill("#cols", "60")
    page.fill("#tile_size", "32")  # 1920 x 1184 px: the render is level 11
    page.click("#make-button")
    page.wait_for_selector("#viewer:not([hidden]):not(.loading)", timeout=90_000)
    page.wait_for_function("() => window.tesseraViewer && window.tesseraViewer.layout", timeout=30_000)
    deepest = page.evaluate("window.tesseraViewer.layout.maxLevel")
    depth = deepest - 11  # levels below the render, drawn from the photos (cells of 32 * 2**depth px)
    assert depth >= 1 and page.evaluate("window.tesseraViewer.layout.width") == 1920 << depth
    page.wait_for_function("() => document.getElementById('viewer').dataset.level !== undefined")
    start_level = int(page.get_attribute("#viewer", "data-level") or "0")
    assert start_level < 11 and any(f"_files/{start_level}/" in url for url in loaded)
    assert not any("_files/11/" in url for url in loaded)  # only what the view needs

    page.wait_for_timeout(800)  # the page scrolls smoothly to the result
    page.locator("#viewer").evaluate("(el) => el.scrollIntoView({ block: 'center' })")  # all of it in view
    box = page.locator("#viewer").bounding_box()
    assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= 900
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    for _ in range(8 + 4 * depth):  # into the photos: the deepest level
        page.mouse.wheel(0, -400)
        page.wait_for_timeout(120)
    page.wait_for_function(
        f"() => document.getElementById('viewer').dataset.level === '{deepest}'", timeout=20_000
    )
    page.wait_for_function(f"() => window.tesseraViewer.levelsLoaded.has({deepest})", timeout=20_000)
    deep = {url for url in loaded if f"_files/{deepest}/" in url}
    cols, rows = -(-(1920 << depth) // 254), -(-(1184 << depth) // 254)
    assert deep and len(deep) < cols * rows / 4  # the tiles in view of the deepest level only

    # A click picks the cell under the pointer for the zoom animation.
    # (off the middle: with an even number of columns the middle is a cell boundary)
    px, py = round(box["width"] / 2) + 7, round(box["height"] / 2) + 7
    point = page.evaluate(f"window.tesseraViewer.toImage({px}, {py})")
    page.mouse.click(box["x"] + px, box["y"] + py)
    cell = 32 << depth  # a cell's size in the pyramid's full-size pixels
    expected = f"column {int(point['x'] // cell) + 1}, row {int(point['y'] // cell) + 1}"
    assert page.input_value("#anim-cell") == expected

    page.select_option("#anim-format", "gif")
    page.fill("#anim-seconds", "1")
    page.click("#anim-button")
    page.wait_for_selector("#anim-result:not([hidden])", timeout=60_000)
    href = page.get_attribute("#anim-download", "href")
    assert href and "/animations/" in href
    gif = page.request.get(live_server.url + href)
    assert gif.ok and gif.headers["content-type"] == "image/gif"

    # The share link opens the viewer alone, with no session id in it.
    share = page.get_attribute("#share-link", "href")
    session_id = page.url.split("/s/", 1)[1].split("#", 1)[0]
    assert share and "/v/" in share and session_id not in share
    viewer = browser.new_page()  # type: ignore[attr-defined]
    shared: list[str] = []
    viewer.on("response", lambda r: shared.append(r.url) if "/mosaic_files/" in r.url and r.ok else None)
    viewer.goto(share)
    viewer.wait_for_function("() => window.tesseraViewer && window.tesseraViewer.layout", timeout=30_000)
    viewer.wait_for_function("() => window.tesseraViewer.levelsLoaded.size > 0")
    assert shared and all("/v/" in url for url in shared)
    viewer.close()
    page.close()


def ready_mosaic(live_server: LiveServer, corpus: Path, photo_tiles: list[Path]) -> dict[str, Any]:
    """A 40-column mosaic of mate-Dune made over HTTP, once it is ready."""
    import httpx2 as httpx

    from tests.web.conftest import wait_for

    files = [("tiles", (p.name, p.read_bytes(), "image/jpeg")) for p in photo_tiles[:30]]
    session = httpx.post(f"{live_server.url}/api/sessions", files=files, timeout=60).json()
    wait_for(lambda: httpx.get(live_server.url + session["status_url"]).json(), until={"ready"})
    cover = corpus / "covers" / "mate-Dune.jpg"
    created = httpx.post(
        f"{live_server.url}/api/sessions/{session['id']}/mosaics",
        files={"cover": (cover.name, cover.read_bytes(), "image/jpeg")},
        data={"cols": "40", "tile_size": "32"},
        timeout=60,
    ).json()
    mosaic: dict[str, Any] = wait_for(
        lambda: httpx.get(live_server.url + created["status_url"]).json(), until={"ready"}
    )
    return mosaic


def test_share_viewer_has_fullscreen_navigator_keyboard_and_destroy(
    browser: object, live_server: LiveServer, corpus: Path, photo_tiles: list[Path]
) -> None:
    mosaic = ready_mosaic(live_server, corpus, photo_tiles)
    page = browser.new_page(viewport={"width": 1000, "height": 800})  # type: ignore[attr-defined]
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    # a 409 on the descriptor while the pyramid is still being built is the viewer's documented wait
    page.on(
        "response",
        lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 and r.status != 409 else None,
    )
    page.goto(live_server.url + mosaic["viewer_url"])
    page.wait_for_function(
        "() => window.tesseraViewer && window.tesseraViewer.levelsLoaded.size > 0", timeout=60_000
    )
    assert page.locator("#viewer .navigator").count() == 1
    # OpenSeadragon's buttons: home, zoom in/out and the fullscreen toggle ("full page")
    assert page.locator("#viewer [title='Toggle full page']").count() == 1
    page.locator("#viewer [title='Toggle full page']").click()
    page.wait_for_function("() => window.tesseraViewer.osd.isFullPage()", timeout=5_000)
    page.keyboard.press("Escape")
    page.evaluate("window.tesseraViewer.osd.setFullPage(false)")

    before = page.evaluate("window.tesseraViewer.scale")
    page.locator("#viewer .openseadragon-canvas").first.focus()
    for _ in range(4):
        page.keyboard.press("+")  # zoom in by keyboard
        page.wait_for_timeout(300)
    page.wait_for_timeout(1500)
    assert page.evaluate("window.tesseraViewer.scale") > before * 1.3
    page.keyboard.press("0")  # home
    page.wait_for_timeout(1500)
    assert page.evaluate("window.tesseraViewer.scale") == pytest.approx(before, rel=0.05)

    page.evaluate("window.tesseraViewer.destroy()")
    assert page.evaluate("document.getElementById('viewer').children.length") == 0
    assert not errors, errors
    page.close()


def test_share_viewer_pinch_zooms_on_a_phone(
    browser: object, live_server: LiveServer, corpus: Path, photo_tiles: list[Path]
) -> None:
    mosaic = ready_mosaic(live_server, corpus, photo_tiles)

    context = browser.new_context(  # type: ignore[attr-defined]
        viewport={"width": 390, "height": 844}, device_scale_factor=2, has_touch=True, is_mobile=True
    )
    page = context.new_page()
    page.goto(live_server.url + mosaic["viewer_url"])
    page.wait_for_function("() => window.tesseraViewer && window.tesseraViewer.layout", timeout=60_000)
    before = page.evaluate("window.tesseraViewer.scale")
    cdp = context.new_cdp_session(page)
    box = page.locator("#viewer").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2

    def touch(kind: str, spread: float) -> None:
        points = [{"x": cx - spread, "y": cy, "id": 1}, {"x": cx + spread, "y": cy, "id": 2}]
        cdp.send(
            "Input.dispatchTouchEvent", {"type": kind, "touchPoints": [] if kind == "touchEnd" else points}
        )

    touch("touchStart", 20)
    for spread in range(30, 160, 10):  # the fingers move apart: zoom in
        touch("touchMove", spread)
    touch("touchEnd", 0)
    after = page.evaluate("window.tesseraViewer.scale")
    assert after > before * 3, (before, after)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    context.close()
