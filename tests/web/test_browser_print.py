"""The page's print file: a TIFF chosen in the form, its print size shown beside the download,
the zoomable view in place of the picture a browser cannot show, and a download that opens as a
TIFF with the size and dpi asked for."""

from __future__ import annotations

from pathlib import Path

import pytest
import tifffile
from PIL import Image

from tests.conftest import cell_error, read_image
from tests.engine.test_tiff import tiff_dpi
from tests.web.conftest import LiveServer
from tests.web.test_browser import browser  # noqa: F401 (the fixture)

pytestmark = pytest.mark.browser


def test_tiff_print_file_from_the_page(
    browser: object,  # noqa: F811
    live_server: LiveServer,
    corpus: Path,
    photo_tiles: list[Path],
    tmp_path: Path,
) -> None:
    page = browser.new_page(accept_downloads=True, viewport={"width": 1100, "height": 900})  # type: ignore[attr-defined]
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(live_server.url + "/")
    page.set_input_files("#tiles-input", [str(p) for p in photo_tiles[:200]])
    cover = corpus / "covers" / "skimage-astronaut.jpg"
    page.set_input_files("#cover-input", str(cover))
    page.fill("#cols", "30")
    page.fill("#tile_size", "20")
    page.select_option("#format", "tiff")
    page.click("details.advanced summary")  # the advanced options hold the dpi
    page.fill("#dpi", "150")
    page.click("#make-button")
    page.wait_for_selector("#result:not([hidden])", timeout=60_000)
    # 600 px at 150 dpi: 4 in, 10.2 cm
    assert page.text_content("#print-size") == "Prints at 10.2 × 10.2 cm (4 × 4 in) at 150 dpi"
    page.wait_for_function(
        "() => window.tesseraViewer && window.tesseraViewer.levelsLoaded.size > 0", timeout=60_000
    )
    page.wait_for_selector("#viewer", state="visible", timeout=30_000)  # shown once tiles are drawn
    assert not page.is_visible("#result-link")
    assert page.locator("#viewer .navigator").count() == 1  # OpenSeadragon's viewer, with the page's
    assert page.is_visible("#fullscreen")  # own full-screen button (OpenSeadragon's is hidden there)
    # the gallery shows a picture for the TIFF mosaic too (its pyramid's small level), not a broken one
    page.reload()
    thumb = page.locator("#gallery li img").first
    thumb.scroll_into_view_if_needed()
    page.wait_for_function(
        "() => { const i = document.querySelector('#gallery li img');"
        " return i && i.complete && i.naturalWidth > 0; }",
        timeout=30_000,
    )
    assert "_files/7/0_0.jpg" in (thumb.get_attribute("src") or "")

    with page.expect_download() as info:
        page.click("#download")
    saved = tmp_path / info.value.suggested_filename
    info.value.save_as(saved)
    assert saved.suffix == ".tif"
    with tifffile.TiffFile(saved) as tif:
        assert tif.pages[0].is_tiled  # type: ignore[union-attr]
        assert tiff_dpi(tif) == (150, 150)
        pixels = tif.asarray()
    assert pixels.shape == (600, 600, 3)
    # < 15: the default rules (no tile next to itself, 4 % cap) cost a small library some colour;
    # a flat grey picture is at about 25-30.
    assert cell_error(read_image(cover, "RGB"), Image.fromarray(pixels), 30, 30) < 15
    assert not errors, errors
    page.close()
