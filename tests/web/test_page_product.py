"""The page as a product, in Debian's chromium against real uvicorn, at desktop and phone sizes:
keyboard alone, axe-core (WCAG 2 A/AA), a saved project on reload, the cover checked in the page,
honest progress, print sizes, before/after, the tint preview, the viewer's shape and full screen."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from PIL import Image

from tests.conftest import cell_error, read_image
from tests.web.conftest import LiveServer, wait_for
from tests.web.test_browser import browser  # noqa: F401  (the module's chromium)
from tests.web.test_restart import get, post_mosaic, post_session

pytestmark = pytest.mark.browser
SIZES = {"desktop": {"width": 1366, "height": 900}, "phone": {"width": 390, "height": 844}}
UPLOADING = r"/Uploading tiles: [0-9.]+ MB of/"
WCAG = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}


def serious_violations(page: Any) -> list[str]:
    """What axe-core (WCAG 2 A/AA) finds serious or critical on the page as it is now."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page, options=WCAG)
    return [
        f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:5]}"
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def tab_to(page: Any, selector: str, *, limit: int = 60) -> None:
    """Press Tab until ``selector`` has the focus; fail if it never gets it. Its focus is visible."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("(s) => document.activeElement && document.activeElement.matches(s)", selector):
            outline = page.evaluate(
                "() => { const s = getComputedStyle(document.activeElement); "
                "return [s.outlineStyle, parseFloat(s.outlineWidth)]; }"
            )
            assert outline[0] != "none" and outline[1] >= 2, (selector, outline)
            return
    raise AssertionError(f"Tab never reached {selector}")


def ready_session(server: LiveServer, tiles: list[Path]) -> dict[str, Any]:
    session = post_session(server, tiles)
    return wait_for(lambda: get(server, session["status_url"]), until={"ready"})


def made(server: LiveServer, session_id: str, cover: Path, **fields: Any) -> dict[str, Any]:
    created = post_mosaic(server, session_id, cover, **fields)
    return wait_for(lambda: get(server, created["status_url"]), until={"ready"})


WATCH_FRAMES = """() => {
  const w = window.watched = { picture: 0, viewer: 0, empty: 0, seen: false };
  const tick = () => {
    const img = document.getElementById("result-image"), v = document.getElementById("viewer");
    const picture = !document.getElementById("result").hidden && img.offsetParent !== null
      && img.complete && img.naturalWidth > 0;
    const view = window.tesseraViewer;
    const tiles = Boolean(view && view.levelsLoaded.size > 0 && v.dataset.level);
    const viewer = !v.hidden && !v.classList.contains("loading") && v.getBoundingClientRect().height > 0;
    if (picture) { w.picture += 1; w.seen = true; }
    if (viewer && tiles) w.viewer += 1;
    if (w.seen && !picture && !(viewer && tiles)) w.empty += 1;
    requestAnimationFrame(tick);
  };
  tick();
}"""


PREVIEW_MEANS = """() => {
  const c = document.getElementById("tint-preview"), x = c.getContext("2d"), half = c.width / 2;
  const mean = (d) => {
    const s = [0, 0, 0];
    for (let i = 0; i < d.length; i += 4) { s[0] += d[i]; s[1] += d[i + 1]; s[2] += d[i + 2]; }
    return s.map((v) => v / (d.length / 4));
  };
  const part = (left) => mean(x.getImageData(left, 0, half, c.height).data);
  return [part(0), part(half)];
}"""


def wait_for_viewer(page: Any) -> None:
    page.wait_for_selector("#viewer:not([hidden]):not(.loading)", timeout=90_000)


@pytest.mark.parametrize("size", SIZES)
def test_keyboard_alone_makes_a_mosaic_with_honest_progress_and_axe_finds_nothing_serious(
    browser: Any,  # noqa: F811
    live_server: LiveServer,
    corpus: Path,
    photo_tiles: list[Path],
    size: str,
) -> None:
    context = browser.new_context(viewport=SIZES[size])
    page = context.new_page()
    # Listening from the start: Playwright intercepts file choosers only once a listener is set.
    choosers: list[Any] = []
    page.on("filechooser", lambda chooser: choosers.append(chooser))
    page.goto(live_server.url + "/")
    assert serious_violations(page) == [], "empty page"

    def choose(key: str, files: list[str]) -> None:
        before = len(choosers)
        page.keyboard.press(key)
        for _ in range(50):
            if len(choosers) > before:
                choosers[-1].set_files(files)
                return
            page.wait_for_timeout(100)
        raise AssertionError(f"{key} opened no file chooser")

    # Enter on the tile drop zone, Space on "Choose photos": both open the file chooser.
    tab_to(page, "#tiles-drop")
    choose("Enter", [str(p) for p in photo_tiles[:40]])
    tab_to(page, "button[data-opens=tiles-input]")
    choose(" ", [str(p) for p in photo_tiles[40:120]])
    assert "120 files picked" in page.text_content("#tiles-picked")
    tab_to(page, "#cover-drop")
    cover = corpus / "covers" / "mate-LadyBird.jpg"
    choose(" ", [str(cover)])
    tab_to(page, "#cols")
    page.keyboard.press("Control+A")
    page.keyboard.type("40")
    tab_to(page, "#tile_size")
    page.keyboard.press("Control+A")
    page.keyboard.type("24")

    # A slow uplink: the upload's progress counts real bytes as they leave.
    total = sum(p.stat().st_size for p in photo_tiles[:120])
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    throttle = {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": total / 4}
    cdp.send("Network.emulateNetworkConditions", throttle)
    tab_to(page, "#make-button")
    page.keyboard.press("Enter")
    page.wait_for_function(f"() => {UPLOADING}.test(document.getElementById('progress-label').textContent)")
    assert serious_violations(page) == [], "during progress"
    seen, totals = set(), set()
    for _ in range(40):
        label = page.text_content("#progress-label") or ""
        match = re.search(r"Uploading tiles: ([0-9.]+) MB of ([0-9.]+) MB", label)
        if not match:
            break
        seen.add(float(match.group(1)))
        totals.add(float(match.group(2)))
        page.wait_for_timeout(100)
    assert len(seen) >= 3 and min(seen) < max(seen), seen  # not "all of it" from the start
    assert totals == {round(total / 1048576, 1)}, totals
    cdp.send("Network.emulateNetworkConditions", {**throttle, "uploadThroughput": -1})

    wait_for_viewer(page)
    stats = page.text_content("#result-stats") or ""
    waited = float(re.search(r"you waited ([0-9.]+) s", stats).group(1))  # type: ignore[union-attr]
    made_in = float(re.search(r"made in ([0-9.]+) s", stats).group(1))  # type: ignore[union-attr]
    assert waited >= 3.5 and waited > made_in, stats  # the throttled upload took ~4 s of it
    assert serious_violations(page) == [], "finished page"

    # Keyboard reaches the result's tools: full screen, before/after, download, the gallery.
    tools = ("#fullscreen", "#compare-toggle", "#download", "#share-copy", "#anim-button", ".gallery .thumb")
    for selector in tools:
        tab_to(page, selector, limit=120)
    context.close()


def test_cover_is_checked_in_the_page_and_costs_the_server_nothing(
    browser: Any,  # noqa: F811
    live_server: LiveServer,
    corpus: Path,
    photo_tiles: list[Path],
) -> None:
    page = browser.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if "/api/" in r.url else None)
    page.goto(live_server.url + "/")
    page.set_input_files("#tiles-input", [str(p) for p in photo_tiles[:30]])
    page.set_input_files("#cover-input", str(corpus / "odd" / "text_named.jpg"))
    page.wait_for_selector("#cover-error:not([hidden])")  # at once, when picked
    message = page.text_content("#cover-error") or ""
    assert message.startswith("text_named.jpg: "), message
    assert "not a supported image" in message and message.count("text_named.jpg") == 1
    page.click("#make-button")
    page.wait_for_timeout(500)
    assert page.is_visible("#cover-error") and page.is_hidden("#result")
    assert requests == []  # not one tile left the browser
    sessions = live_server.data_dir / "sessions"
    assert not sessions.exists() or not any(sessions.iterdir())
    page.close()


@pytest.mark.parametrize("size", SIZES)
def test_reload_is_a_saved_project_and_the_gallery_opens_and_deletes(
    browser: Any,  # noqa: F811
    live_server: LiveServer,
    corpus: Path,
    photo_tiles: list[Path],
    size: str,
) -> None:
    session = ready_session(live_server, photo_tiles[:60])
    older = made(live_server, session["id"], corpus / "covers" / "mate-Dune.jpg", cols=30, tile_size=16)
    newer = made(
        live_server, session["id"], corpus / "covers" / "mate-LadyBird.jpg", cols=24, tile_size=20, tint=40,
        color_space="rgb", format="png", cell_grid=2, min_distance=1,
    )  # fmt: skip
    page = browser.new_page(viewport=SIZES[size])
    page.goto(f"{live_server.url}/s/{session['id']}")
    wait_for_viewer(page)
    # The newest mosaic with its tools, and the settings it was made with.
    assert newer["id"] in (page.get_attribute("#result-image", "src") or "")
    assert page.is_visible("#share") and "/v/" in (page.get_attribute("#share-link", "href") or "")
    assert page.is_visible("#anim-form") and page.is_visible("#download")
    asked = {"cols": "24", "tile_size": "20", "tint": "40", "color_space": "rgb", "format": "png"}
    asked |= {"cell_grid": "2", "min_distance": "1"}
    assert {k: page.input_value(f"#{k}") for k in asked} == asked
    assert page.text_content("#tint-value") == "40 %"
    assert page.locator("#gallery li").count() == 2

    # A gallery item opens its mosaic in the page; the address keeps it over a reload.
    page.click(f"#gallery li[data-mosaic='{older['id']}'] .thumb")
    wait_for_viewer(page)
    assert older["id"] in (page.get_attribute("#result-image", "src") or "")
    assert page.url.endswith(f"#{older['id']}")
    assert f"30 × {older['rows']} tiles" in (page.text_content("#result-stats") or "")
    page.reload()
    wait_for_viewer(page)
    assert older["id"] in (page.get_attribute("#result-image", "src") or "")

    # Delete it from the gallery: gone from the page, the API and the disk.
    folder = live_server.data_dir / "sessions" / session["id"] / "mosaics" / older["id"]
    assert folder.exists()
    page.on("dialog", lambda d: d.accept())
    page.click(f"#gallery li[data-mosaic='{older['id']}'] .delete")
    page.wait_for_function("() => document.querySelectorAll('#gallery li').length === 1")
    assert page.is_hidden("#result")
    assert httpx.get(live_server.url + older["status_url"]).status_code == 404
    assert not folder.exists()
    assert httpx.get(live_server.url + newer["image_url"]).status_code == 200
    page.close()


@pytest.mark.parametrize("size", SIZES)
def test_print_presets_tint_preview_before_after_and_the_viewer_shape(
    browser: Any,  # noqa: F811
    live_server: LiveServer,
    corpus: Path,
    photo_tiles: list[Path],
    size: str,
) -> None:
    page = browser.new_page(viewport=SIZES[size])
    page.goto(live_server.url + "/")
    page.set_input_files("#tiles-input", [str(p) for p in photo_tiles[:100]])
    cover = corpus / "covers" / "mate-Dune.jpg"
    cover_image = read_image(cover, "RGB")
    page.set_input_files("#cover-input", str(cover))
    page.wait_for_function(
        r"() => /tiles, \d+ × \d+ px/.test(document.getElementById('size-hint').textContent)"
    )

    # Presets set columns and tile size for the print, in the cover's orientation, at 300 dpi.
    landscape = cover_image.width > cover_image.height
    papers = (("a4", 21.0, 29.7), ("a3", 29.7, 42.0), ("50x70", 50.0, 70.0), ("18x24in", 45.72, 60.96))
    for preset, short_cm, long_cm in papers:
        page.select_option("#preset", preset)
        cols, tile = int(page.input_value("#cols")), int(page.input_value("#tile_size"))
        width_cm = cols * tile / 300 * 2.54
        assert abs(width_cm - (long_cm if landscape else short_cm)) < 0.02 * long_cm, (preset, cols, tile)
        hint = page.text_content("#size-hint") or ""
        said = re.search(r"a print of ([0-9.]+) × ([0-9.]+) cm \(([0-9.]+) × ([0-9.]+) in\) at 300 dpi", hint)
        assert said, hint
        assert abs(float(said.group(1)) - width_cm) <= 0.06, hint
        assert abs(float(said.group(3)) - width_cm / 2.54) <= 0.06, hint
    page.select_option("#preset", "phone")
    phone_width = int(page.input_value("#cols")) * int(page.input_value("#tile_size"))
    assert phone_width == pytest.approx(1170, rel=0.02)

    # The tint preview: at 100 % the tile takes its cell's mean colour, at 0 % it keeps its own.
    page.click("details.advanced summary")

    def preview_means() -> tuple[list[float], list[float]]:
        return page.evaluate(PREVIEW_MEANS)

    page.fill("#tint", "100")
    page.dispatch_event("#tint", "input")
    assert page.text_content("#tint-value") == "100 %"
    cell, tile = preview_means()
    assert max(abs(a - b) for a, b in zip(cell, tile, strict=True)) < 4, (cell, tile)
    page.fill("#tint", "0")
    page.dispatch_event("#tint", "input")
    cell, tile = preview_means()
    assert max(abs(a - b) for a, b in zip(cell, tile, strict=True)) > 10, (cell, tile)
    page.fill("#tint", "10")
    page.dispatch_event("#tint", "input")

    page.fill("#cols", "40")
    page.fill("#tile_size", "20")
    # Every frame from the first showing of the finished picture on, either it or a viewer that
    # has drawn tiles is on screen (never an empty viewer in its place).
    page.evaluate(WATCH_FRAMES)
    page.click("#make-button")
    wait_for_viewer(page)
    page.wait_for_timeout(300)
    frames = page.evaluate("window.watched")
    assert frames["picture"] > 0 and frames["viewer"] > 0 and frames["empty"] == 0, frames
    status_url = (page.get_attribute("#result-image", "src") or "").removesuffix("/image")
    mosaic = httpx.get(live_server.url + status_url).json()
    box = page.locator("#viewer").bounding_box()
    card = page.locator("#result").bounding_box()
    assert box is not None and card is not None
    assert box["width"] > card["width"] * 0.85  # the available width
    assert box["width"] / box["height"] == pytest.approx(mosaic["width"] / mosaic["height"], rel=0.03)
    assert page.evaluate("document.documentElement.scrollWidth") <= SIZES[size]["width"]

    # Before / after: the slider shows the cover at one end, the mosaic at the other.
    page.click("#compare-toggle")
    assert page.get_attribute("#compare-toggle", "aria-pressed") == "true"
    assert page.is_visible("#compare-slider")
    loaded = "(el) => el.complete && el.naturalWidth > 0"
    page.wait_for_function(loaded, arg=page.query_selector("#compare-cover"))
    rows = mosaic["rows"]

    def shown() -> Image.Image:
        return Image.open(io.BytesIO(page.locator("#compare").screenshot())).convert("RGB")

    page.fill("#compare-slider", "100")
    page.dispatch_event("#compare-slider", "input")
    as_cover = cell_error(cover_image, shown(), 40, rows)
    page.fill("#compare-slider", "0")
    page.dispatch_event("#compare-slider", "input")
    mosaic_bytes = httpx.get(live_server.url + mosaic["image_url"]).content
    mosaic_file = Image.open(io.BytesIO(mosaic_bytes)).convert("RGB")
    as_mosaic = cell_error(mosaic_file, shown(), 40, rows)
    assert as_cover < 3 and as_mosaic < 3, (as_cover, as_mosaic)
    assert cell_error(mosaic_file, shown(), 160, rows * 4) < cell_error(cover_image, shown(), 160, rows * 4)
    page.click("#compare-toggle")
    assert page.is_visible("#viewer")

    # Full screen, from a real button: the page's own, and only that one (no second OpenSeadragon toggle).
    assert page.locator("#viewer [title='Toggle full page']").count() == 0
    page.click("#fullscreen")
    page.wait_for_function("() => document.fullscreenElement && document.fullscreenElement.id === 'viewer'")
    page.evaluate("document.exitFullscreen()")
    page.close()


@pytest.mark.parametrize("size", SIZES)
def test_a_rule_the_library_is_too_small_for_is_said_next_to_the_result(
    browser: Any,  # noqa: F811
    live_server: LiveServer,
    corpus: Path,
    photo_tiles: list[Path],
    size: str,
) -> None:
    page = browser.new_page(viewport=SIZES[size])
    page.goto(live_server.url + "/")
    page.set_input_files("#tiles-input", [str(p) for p in photo_tiles[:30]])
    page.set_input_files("#cover-input", str(corpus / "covers" / "mate-Dune.jpg"))
    page.fill("#cols", "20")
    page.fill("#tile_size", "16")
    page.click("details.advanced summary")
    page.check("#unique")
    page.click("#make-button")
    page.wait_for_selector("#rules-note:not([hidden])", timeout=90_000)
    status_url = (page.get_attribute("#result-image", "src") or "").removesuffix("/image")
    raised = httpx.get(live_server.url + status_url).json()["report"]["rules_raised"]
    assert [r["rule"] for r in raised] == ["unique"]
    note = page.text_content("#rules-note") or ""
    assert '"Use each photo once" could not be kept' in note, note
    assert f"needs {raised[0]['tiles_needed']:,} different photos" in note and raised[0]["tiles_needed"] > 30
    note_box, result_box = (
        page.locator("#rules-note").bounding_box(),
        page.locator("#result-stats").bounding_box(),
    )
    assert note_box is not None and result_box is not None and note_box["y"] < result_box["y"]  # beside it
    assert serious_violations(page) == []
    page.close()
