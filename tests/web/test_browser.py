"""The upload page in a real browser (Debian's chromium through Playwright) against real uvicorn."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

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
    page.wait_for_function("document.getElementById('result-image').naturalWidth > 0", timeout=30_000)
    assert page.evaluate("document.getElementById('result-image').naturalWidth") == 30 * 16
    assert "/s/" in page.url
    session_id = page.url.rsplit("/", 1)[-1]
    assert "30 × 30 tiles" in page.text_content("#result-stats")

    with page.expect_download() as info:
        page.click("#download")
    saved = tmp_path / info.value.suggested_filename
    info.value.save_as(saved)
    assert saved.name.startswith("tessera-skimage-astronaut-30x30")
    shown = read_image(saved)
    assert shown.size == (480, 480)
    assert cell_error(read_image(cover, "RGB"), shown, 30, 30) < 12

    # The session survives a reload; another cover needs no new upload.
    page.reload()
    page.wait_for_function(
        "document.getElementById('library-status').textContent.includes('80 tile photos ready')"
    )
    assert page.locator("#gallery li").count() == 1
    page.set_input_files("#cover-input", str(corpus / "covers" / "mate-Dune.jpg"))
    page.click("#make-button")
    page.wait_for_function("document.querySelectorAll('#gallery li').length == 2", timeout=60_000)
    assert page.url.endswith(session_id)
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
