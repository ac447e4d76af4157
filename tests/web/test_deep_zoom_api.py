"""The server's zoom pyramid reaches down to the photos: deep tiles drawn on request, sharp."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from numpy.typing import NDArray
from PIL import Image

from app.engine.pyramid import DziLayout
from tests.engine.test_deep_zoom import photo_at, sharpness
from tests.web.test_api import make, ready_session
from tests.web.test_zoom_api import wait_until

COLS, TILE = 30, 16


@pytest.fixture(scope="module")
def deep(tmp_path_factory: pytest.TempPathFactory, corpus: Path) -> Iterator[Any]:
    from app.main import create_app
    from app.settings import Settings

    data = tmp_path_factory.mktemp("deep") / "data"
    client = TestClient(create_app(Settings(data_dir=data)))
    client.__enter__()
    photos = sorted((corpus / "tiles_photo").glob("*.jpg"))[:100]
    session = ready_session(client, photos)
    mosaic = make(
        client, session["id"], corpus / "covers" / "mate-Dune.jpg", cols=COLS, tile_size=TILE, tint=25
    )
    assert mosaic["state"] == "ready", mosaic
    mosaic = wait_until(lambda: client.get(mosaic["status_url"]).json(), lambda m: m["dzi_url"] is not None)
    image = np.asarray(Image.open(io.BytesIO(client.get(mosaic["image_url"]).content)).convert("RGB"))
    yield client, mosaic, image, photos
    client.__exit__(None, None, None)
    client.app.state.services.jobs.shutdown(wait=True)  # type: ignore[attr-defined]


def read(content: bytes) -> NDArray[np.uint8]:
    return np.asarray(Image.open(io.BytesIO(content)).convert("RGB"))


def test_deepest_tiles_show_the_photos_and_the_render_level_is_the_render(deep: Any) -> None:
    client, mosaic, image, photos = deep
    layout = DziLayout.from_descriptor(client.get(mosaic["dzi_url"]).text)
    height, width = image.shape[:2]
    assert layout.width % width == 0
    depth = (layout.width // width).bit_length() - 1
    assert depth >= 2 and layout.width == width << depth and layout.height == height << depth
    cell = TILE << depth  # each cell's size at the deepest level
    files = mosaic["dzi_url"].removesuffix(".dzi") + "_files"

    render_level = layout.max_level - depth
    for col, row in list(layout.tiles(render_level))[:4]:  # the render's level: the render (JPEG tiles)
        x0, y0, x1, y1 = layout.tile_box(render_level, col, row)
        tile = read(client.get(f"{files}/{render_level}/{col}_{row}.jpg").content).astype(float)
        assert np.abs(tile - image[y0:y1, x0:x1]).mean() < 5  # JPEG q90 of 16 px cells

    # The deepest tile (1, 1): the cells it holds are the photos, tinted, not the render enlarged.
    response = client.get(f"{files}/{layout.max_level}/1_1.jpg")
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    assert "immutable" in response.headers["cache-control"]
    tile = read(response.content).astype(float)
    x0, y0, _, _ = layout.tile_box(layout.max_level, 1, 1)
    col, row = -(-x0 // cell), -(-y0 // cell)  # the first cell wholly inside the tile
    inside = tile[row * cell - y0 : (row + 1) * cell - y0, col * cell - x0 : (col + 1) * cell - x0]
    assert inside.shape == (cell, cell, 3)
    placement = np.load(
        client.app.state.services.storage.mosaic_dir(mosaic["session_id"], mosaic["id"]) / "grid.npy"
    )  # type: ignore[attr-defined]
    # the session's tiles are its uploads in order: the placement's index is the photo's
    offsets = mosaic_offsets(client, mosaic)
    truth = photo_at(photos[int(placement[row, col])], cell, None if offsets is None else offsets[row, col])
    rendered = image[row * TILE : (row + 1) * TILE, col * TILE : (col + 1) * TILE]
    enlarged = np.asarray(
        Image.fromarray(rendered).resize((cell, cell), Image.Resampling.BICUBIC), dtype=float
    )
    assert np.abs(inside - truth).mean() < 4
    assert np.abs(enlarged - truth).mean() > 2 * np.abs(inside - truth).mean()
    assert sharpness(inside) > 1.3 * sharpness(enlarged)

    assert (
        client.get(f"{files}/{layout.max_level}/{layout.tile_counts(layout.max_level)[0]}_0.jpg").status_code
        == 404
    )
    again = client.get(f"{files}/{layout.max_level}/1_1.jpg")
    assert again.content == response.content  # from the cache, the same bytes


def mosaic_offsets(client: TestClient, mosaic: dict[str, Any]) -> NDArray[np.int16] | None:
    folder = client.app.state.services.storage.mosaic_dir(mosaic["session_id"], mosaic["id"])  # type: ignore[attr-defined]
    path = folder / "offsets.npy"
    return np.load(path) if path.exists() else None
