"""The zoom pyramid, the share link and animations through the REST API, on real corpus photos."""

from __future__ import annotations

import io
import re
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import numpy as np
import pytest
from fastapi.testclient import TestClient
from numpy.typing import NDArray
from PIL import Image

from app.engine.pyramid import DziLayout
from tests.web.conftest import wait_for
from tests.web.test_api import make, ready_session

COVER = "mate-LadyBird.jpg"
COLS, TILE = 40, 16  # 640 x 400 px: 25 rows


def wait_until(get: Callable[[], dict[str, Any]], done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    deadline = time.monotonic() + 90
    while not done(record := get()):
        assert time.monotonic() < deadline, f"gave up waiting: {record}"
        time.sleep(0.1)
    return record


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, corpus: Path) -> Any:
    """One server with one ready PNG mosaic and its pyramid, shared by the tests of this module."""
    from app.main import create_app
    from app.settings import Settings

    data = tmp_path_factory.mktemp("zoom") / "data"
    client = TestClient(create_app(Settings(data_dir=data)))
    client.__enter__()
    photos = sorted((corpus / "tiles_photo").glob("*.jpg"))[:120]
    session = ready_session(client, photos)
    # zoom_tile_size = the tile size: a pyramid that ends at the render (deeper: test_deep_zoom_api.py)
    mosaic = make(
        client, session["id"], corpus / "covers" / COVER, cols=COLS, tile_size=TILE, format="png",
        zoom_tile_size=TILE,
    )  # fmt: skip
    assert mosaic["state"] == "ready", mosaic
    mosaic = wait_until(lambda: client.get(mosaic["status_url"]).json(), lambda m: m["dzi_url"] is not None)
    image = np.asarray(Image.open(io.BytesIO(client.get(mosaic["image_url"]).content)).convert("RGB"))
    yield client, mosaic, image
    client.__exit__(None, None, None)
    client.app.state.services.jobs.shutdown(wait=True)  # type: ignore[attr-defined]


def read_png(content: bytes) -> NDArray[np.uint8]:
    return np.asarray(Image.open(io.BytesIO(content)).convert("RGB"))


def test_pyramid_descriptor_levels_and_tiles(shared: Any) -> None:
    client, mosaic, image = shared
    assert mosaic["pyramid"]["state"] == "ready"
    response = client.get(mosaic["dzi_url"])
    assert response.status_code == 200 and "xml" in response.headers["content-type"]
    layout = DziLayout.from_descriptor(response.text)
    assert (layout.width, layout.height) == (COLS * TILE, mosaic["rows"] * TILE) == (640, 400)
    assert layout.levels == 11 == mosaic["pyramid"]["levels"]  # ceil(log2(640)) + 1
    assert layout.fmt == "png" and layout.tile_size == 254 and layout.overlap == 1
    files = mosaic["dzi_url"].removesuffix(".dzi") + "_files"
    expected_counts = {10: (3, 2), 9: (2, 1), 8: (1, 1), 0: (1, 1)}
    for level, (cols, rows) in expected_counts.items():
        assert layout.tile_counts(level) == (cols, rows)
        width, height = layout.level_size(level)
        last = read_png(client.get(f"{files}/{level}/{cols - 1}_{rows - 1}.png").content)
        first = read_png(client.get(f"{files}/{level}/0_0.png").content)
        assert first.shape[:2] == (min(height, 255), min(width, 255))
        x0, y0, x1, y1 = layout.tile_box(level, cols - 1, rows - 1)
        assert last.shape[:2] == (y1 - y0, x1 - x0)
        assert client.get(f"{files}/{level}/{cols}_0.png").status_code == 404
    assert read_png(client.get(f"{files}/0/0_0.png").content).shape == (1, 1, 3)
    assert layout.level_size(9) == (320, 200)
    # The deepest level is the render itself, pixel for pixel, at every tile.
    for col, row in layout.tiles(10):
        x0, y0, x1, y1 = layout.tile_box(10, col, row)
        tile = read_png(client.get(f"{files}/10/{col}_{row}.png").content)
        np.testing.assert_array_equal(tile, image[y0:y1, x0:x1])
    # A level above is the 2x2 mean of the render.
    half = read_png(client.get(f"{files}/9/0_0.png").content).astype(int)
    means = image[:400, :510].reshape(200, 2, 255, 2, 3).mean(axis=(1, 3))
    assert np.abs(half - means).max() <= 1


def test_share_link_opens_the_viewer_without_the_session_id(shared: Any) -> None:
    client, mosaic, _ = shared
    viewer = mosaic["viewer_url"]
    assert viewer.startswith("/v/") and mosaic["session_id"] not in viewer and mosaic["id"] not in viewer
    page = client.get(viewer)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert f"{viewer}/mosaic.dzi" in page.text and "tessera-viewer.js" in page.text
    assert mosaic["session_id"] not in page.text
    assert client.get(f"{viewer}/mosaic.dzi").text == client.get(mosaic["dzi_url"]).text
    files = mosaic["dzi_url"].removesuffix(".dzi") + "_files"
    assert (
        client.get(f"{viewer}/mosaic_files/10/1_1.png").content == client.get(f"{files}/10/1_1.png").content
    )
    assert client.get(f"{viewer}/image").content == client.get(mosaic["image_url"]).content
    # Read-only: nothing can be made or deleted through it; a wrong token is a JSON 404.
    assert client.post(f"{viewer}/animations", json={}).status_code in (404, 405)
    missing = client.get("/v/" + "x" * 32)
    assert missing.status_code == 404 and missing.json()["field"] == "token"
    listed = client.get(f"/api/sessions/{mosaic['session_id']}").json()["mosaics"][0]
    assert listed["viewer_url"] == viewer and listed["dzi_url"] == mosaic["dzi_url"]


def animate(client: TestClient, mosaic: dict[str, Any], **options: Any) -> dict[str, Any]:
    response = client.post(mosaic["animations_url"], json=options)
    assert response.status_code == 202, response.text
    record = response.json()
    assert record["state"] in ("queued", "rendering") and record["status_url"].endswith(record["id"])
    done = wait_for(lambda: client.get(record["status_url"]).json(), until={"ready", "failed"})
    assert done["state"] == "ready", done
    return done


def letterboxed(image: NDArray[np.uint8], size: tuple[int, int]) -> NDArray[np.float64]:
    """The whole mosaic fitted into a frame of ``size`` (as the first zoom frame shows it)."""
    width, height = size
    scale = min(width / image.shape[1], height / image.shape[0])
    fitted = Image.fromarray(image).resize((round(image.shape[1] * scale), round(image.shape[0] * scale)))
    frame = Image.new("RGB", size, (17, 17, 17))
    frame.paste(fitted, ((width - fitted.width) // 2, (height - fitted.height) // 2))
    return np.asarray(frame, dtype=np.float64)


def cell_errors(picture: NDArray[np.uint8], image: NDArray[np.uint8]) -> NDArray[np.float64]:
    """Mean absolute difference between ``picture`` shrunk to one cell and every cell of the mosaic:
    ``(rows, cols)``."""
    small = np.asarray(Image.fromarray(picture).resize((4, 4), Image.Resampling.BOX), dtype=np.float64)
    rows, cols = image.shape[0] // TILE, image.shape[1] // TILE
    cells = np.asarray(Image.fromarray(image).resize((cols * 4, rows * 4), Image.Resampling.BOX), float)
    cells = cells.reshape(rows, 4, cols, 4, 3).transpose(0, 2, 1, 3, 4)
    return np.abs(cells - small).mean(axis=(2, 3, 4))


def test_zoom_mp4_has_the_asked_size_length_and_ends_in_the_chosen_cell(shared: Any, tmp_path: Path) -> None:
    client, mosaic, image = shared
    col, row = 31, 9
    record = animate(client, mosaic, kind="zoom", format="mp4", seconds=2, width=320, height=240, fps=12,
                     col=col, row=row)  # fmt: skip
    assert (record["frames"], record["progress"]["done"]) == (24, 24)
    video = client.get(record["url"], params={"download": 1})
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    assert "attachment" in video.headers["content-disposition"]
    frames, meta = read_mp4(video.content, tmp_path)
    assert meta["size"] == (320, 240) and meta["fps"] == 12 and meta["codec"] == "h264"
    assert len(frames) == 24 and abs(meta["duration"] - 2.0) < 0.01
    first_error = np.abs(frames[0].astype(float) - letterboxed(image, (320, 240))).mean()
    assert first_error < 10, f"first frame differs from the whole mosaic by {first_error:.1f}"
    errors = cell_errors(frames[-1][:, 40:280], image)  # the cell fills the frame's height
    assert errors[row, col] < 0.5 * np.median(errors), (errors[row, col], np.median(errors))
    assert errors[row, col] <= errors.min() + 2  # the best match (or as good as another use of its tile)


def read_mp4(content: bytes, tmp: Path) -> tuple[list[NDArray[np.uint8]], dict[str, Any]]:
    """Decode an MP4 with the ffmpeg that imageio-ffmpeg carries: every frame, and what the
    container says (codec, size, fps, duration)."""
    path = tmp / "video.mp4"
    path.write_bytes(content)
    run = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path),
         "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True, check=True, timeout=60,
    )  # fmt: skip
    info = run.stderr.decode()
    video = re.search(r"Video: (\w+).*?, (\d+)x(\d+).*?, ([\d.]+) fps", info)
    duration = re.search(r"Duration: (\d+):(\d+):([\d.]+)", info)
    assert video and duration, info
    width, height = int(video[2]), int(video[3])
    hours, minutes, seconds = duration.groups()
    meta = {
        "codec": video[1],
        "size": (width, height),
        "fps": float(video[4]),
        "duration": int(hours) * 3600 + int(minutes) * 60 + float(seconds),
    }
    frames = list(np.frombuffer(run.stdout, np.uint8).reshape(-1, height, width, 3))
    return frames, meta


def read_animated(content: bytes) -> tuple[list[NDArray[np.uint8]], list[int], tuple[int, int], str]:
    frames, durations = [], []
    with Image.open(io.BytesIO(content)) as im:
        size, fmt = im.size, str(im.format)
        for index in range(im.n_frames):
            im.seek(index)
            frames.append(np.asarray(im.convert("RGB")))
            durations.append(int(im.info["duration"]))
    return frames, durations, size, fmt


@pytest.mark.parametrize(("kind", "fmt"), [("assemble", "gif"), ("disperse", "webp")])
def test_assemble_and_disperse_as_gif_and_webp(shared: Any, kind: str, fmt: str) -> None:
    client, mosaic, image = shared
    record = animate(client, mosaic, kind=kind, format=fmt, seconds=2, width=200, height=150, fps=10)
    response = client.get(record["url"])
    assert response.headers["content-type"] == f"image/{fmt}"
    frames, durations, size, found = read_animated(response.content)
    assert found == fmt.upper() and size == (200, 150)
    assert sum(durations) == 2000 and min(durations) == 100  # identical frames are merged, time kept
    assembled, scattered = (frames[-1], frames[0]) if kind == "assemble" else (frames[0], frames[-1])
    whole = letterboxed(image, size)
    assert np.abs(assembled.astype(float) - whole).mean() < 12
    assert np.abs(scattered.astype(float) - whole).mean() > 25  # tiles all over, not yet a picture


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"format": "avi"}, "format"),
        ({"kind": "spin"}, "kind"),
        ({"width": 15}, "width"),
        ({"width": 321, "format": "mp4"}, "width"),
        ({"fps": 0}, "fps"),
        ({"seconds": 0}, "seconds"),
        ({"col": 40}, "col"),
        ({"row": 25}, "row"),
        ({"width": 1280, "height": 720, "format": "gif", "seconds": 60}, "seconds"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_animation_parameters_are_422_naming_the_field(
    shared: Any, options: dict[str, Any], field: str
) -> None:
    client, mosaic, _ = shared
    response = client.post(mosaic["animations_url"], json=options)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field


def test_unknown_ids_are_404(shared: Any) -> None:
    client, mosaic, _ = shared
    base = mosaic["status_url"]
    other = "y" * 32
    assert client.get(f"{base}/animations/{other}").json()["field"] == "animation_id"
    assert client.get(f"{base}/animations/{other}/file").status_code == 404
    wrong_mosaic = base.rsplit("/", 1)[0] + f"/{other}"
    assert client.post(f"{wrong_mosaic}/animations", json={}).status_code == 404
    assert client.get(f"{wrong_mosaic}/dzi/mosaic.dzi").status_code == 404
    assert client.get(mosaic["dzi_url"].removesuffix(".dzi") + "_files/10/99_99.png").status_code == 404


def test_unfinished_animations_are_rendered_again_after_a_restart(
    make_client: Callable[..., TestClient], corpus: Path, photo_tiles: list[Path], tmp_path: Path
) -> None:
    client = make_client()
    session = ready_session(client, photo_tiles[:30])
    mosaic = make(client, session["id"], corpus / "covers" / "mate-Dune.jpg", cols=20, tile_size=8)
    mosaic = wait_until(lambda: client.get(mosaic["status_url"]).json(), lambda m: m["dzi_url"] is not None)
    record = animate(client, mosaic, kind="zoom", format="gif", seconds=1, width=64, height=48, fps=10)
    client.app.state.services.jobs.shutdown(wait=True)  # type: ignore[attr-defined]
    # As a crash leaves it: the job was running, its file never written; the pyramid half done.
    with sqlite3.connect(tmp_path / "data" / "tessera.sqlite3") as db:
        db.execute("UPDATE animations SET state = 'rendering', done = 3 WHERE id = ?", (record["id"],))
        db.execute("UPDATE pyramids SET state = 'building' WHERE mosaic_id = ?", (mosaic["id"],))
    folder = tmp_path / "data" / "sessions" / session["id"] / "mosaics" / mosaic["id"]
    (folder / "animations" / f"{record['id']}.gif").unlink()

    again = make_client()
    resumed = wait_for(lambda: again.get(record["status_url"]).json(), until={"ready", "failed"})
    assert resumed["state"] == "ready" and resumed["progress"]["done"] == 10
    assert again.get(resumed["url"]).status_code == 200
    rebuilt = wait_until(lambda: again.get(mosaic["status_url"]).json(), lambda m: m["dzi_url"] is not None)
    assert rebuilt["viewer_url"] == mosaic["viewer_url"]  # the share link survives
    assert again.get(rebuilt["dzi_url"]).status_code == 200


def test_deleting_a_session_removes_its_pyramid_and_animations(
    make_client: Callable[..., TestClient], corpus: Path, photo_tiles: list[Path], tmp_path: Path
) -> None:
    client = make_client()
    session = ready_session(client, photo_tiles[:20])
    mosaic = make(client, session["id"], corpus / "covers" / "mate-Dune.jpg", cols=16, tile_size=8)
    mosaic = wait_until(lambda: client.get(mosaic["status_url"]).json(), lambda m: m["dzi_url"] is not None)
    record = animate(client, mosaic, kind="zoom", format="gif", seconds=1, width=64, height=48, fps=10)
    folder = tmp_path / "data" / "sessions" / session["id"] / "mosaics" / mosaic["id"]
    assert (folder / "dzi" / "mosaic.dzi").is_file() and (
        folder / "animations" / f"{record['id']}.gif"
    ).is_file()
    database = tmp_path / "data" / "tessera.sqlite3"

    def rows() -> tuple[int, int]:
        with sqlite3.connect(database) as db:
            pyramids = db.execute("SELECT COUNT(*) FROM pyramids WHERE session_id = ?", (session["id"],))
            animations = db.execute("SELECT COUNT(*) FROM animations WHERE session_id = ?", (session["id"],))
            return pyramids.fetchone()[0], animations.fetchone()[0]

    assert rows() == (1, 1)
    assert client.delete(f"/api/sessions/{session['id']}").status_code == 204
    assert rows() == (0, 0) and not folder.exists()
    assert client.get(mosaic["viewer_url"]).status_code == 404  # the share link died with it
    assert client.get(f"{mosaic['viewer_url']}/mosaic.dzi").status_code == 404


def test_the_sweeper_counts_animations_as_use_of_a_session(
    make_client: Callable[..., TestClient], corpus: Path, photo_tiles: list[Path], tmp_path: Path
) -> None:
    from app.jobs.sweeper import sweep

    client = make_client()
    services = client.app.state.services  # type: ignore[attr-defined]
    session = ready_session(client, photo_tiles[:20])
    mosaic = make(client, session["id"], corpus / "covers" / "mate-Dune.jpg", cols=16, tile_size=8)
    mosaic = wait_until(lambda: client.get(mosaic["status_url"]).json(), lambda m: m["dzi_url"] is not None)
    record = animate(client, mosaic, kind="assemble", format="gif", seconds=1, width=64, height=48, fps=10)
    with sqlite3.connect(tmp_path / "data" / "tessera.sqlite3") as db:  # the session and its mosaic: idle
        db.execute("UPDATE sessions SET updated = updated - 172800 WHERE id = ?", (session["id"],))
        db.execute("UPDATE mosaics SET updated = updated - 172800 WHERE session_id = ?", (session["id"],))
        db.execute("UPDATE pyramids SET updated = updated - 172800 WHERE session_id = ?", (session["id"],))
    assert sweep(services) == []  # but an animation was made just now
    assert client.get(record["url"]).status_code == 200
    with sqlite3.connect(tmp_path / "data" / "tessera.sqlite3") as db:
        db.execute("UPDATE animations SET updated = updated - 172800 WHERE session_id = ?", (session["id"],))
    assert sweep(services) == [session["id"]]
    assert client.get(record["status_url"]).status_code == 404
    with sqlite3.connect(tmp_path / "data" / "tessera.sqlite3") as db:
        assert db.execute("SELECT COUNT(*) FROM animations").fetchone()[0] == 0
        assert db.execute("SELECT COUNT(*) FROM pyramids").fetchone()[0] == 0
