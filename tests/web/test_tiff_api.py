"""``format=tiff`` over HTTP: a real server makes a tiled print file with the dpi asked for; the
TIFF's output-pixel cap is its own (``TESSERA_MAX_TIFF_PIXELS``), above the other formats'."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import httpx2 as httpx
import numpy as np
import tifffile
from fastapi.testclient import TestClient
from PIL import Image

from tests.conftest import cell_error, read_image
from tests.engine.test_tiff import tiff_dpi
from tests.web.conftest import LiveServer, wait_for
from tests.web.test_api import files_of


def test_a_tiff_mosaic_over_http(live_server: LiveServer, corpus: Path, photo_tiles: list[Path]) -> None:
    cover = corpus / "covers" / "mate-FreshFlower.jpg"
    with httpx.Client(base_url=live_server.url, timeout=60) as http:
        created = http.post(
            "/api/mosaics",
            files=[("cover", (cover.name, cover.read_bytes(), "image/jpeg")), *files_of(photo_tiles[:150])],
            data={"cols": "40", "tile_size": "20", "format": "tif", "dpi": "200"},
        )
        assert created.status_code == 202, created.text
        mosaic = wait_for(lambda: http.get(created.json()["status_url"]).json(), until={"ready", "failed"})
        assert mosaic["state"] == "ready", mosaic
        assert mosaic["format"] == "tiff"
        image = http.get(mosaic["image_url"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/tiff"
    rows = mosaic["rows"]
    with tifffile.TiffFile(io.BytesIO(image.content)) as tif:
        assert tif.pages[0].is_tiled  # type: ignore[union-attr]
        assert tiff_dpi(tif) == (200, 200)
        pixels = tif.asarray()
    assert pixels.shape == (rows * 20, 40 * 20, 3)
    assert cell_error(read_image(cover, "RGB"), Image.fromarray(pixels), 40, rows) < 12
    assert mosaic["report"]["print"]["dpi"] == 200
    assert mosaic["report"]["print"]["width_in"] == 4.0  # 800 px at 200 dpi


def test_tiff_has_its_own_pixel_cap(
    make_client: Callable[..., TestClient], corpus: Path, photo_tiles: list[Path]
) -> None:
    client = make_client(max_output_pixels=50_000, max_tiff_pixels=500_000)
    cover = corpus / "covers" / "mate-Dune.jpg"

    def ask(fmt: str, cols: int) -> httpx.Response:
        return client.post(
            "/api/mosaics",
            files=[("cover", (cover.name, cover.read_bytes(), "image/jpeg")), *files_of(photo_tiles[:20])],
            data={"cols": str(cols), "tile_size": "16", "format": fmt},
        )  # type: ignore[return-value]

    refused = ask("png", 30)  # 480 px wide: about 150,000 px, over the 50,000 of other formats
    assert refused.status_code == 413 and refused.json()["field"] == "cols", refused.text
    accepted = ask("tiff", 30)
    assert accepted.status_code == 202, accepted.text
    mosaic = wait_for(lambda: client.get(accepted.json()["status_url"]).json(), until={"ready", "failed"})
    assert mosaic["state"] == "ready", mosaic
    with tifffile.TiffFile(io.BytesIO(client.get(mosaic["image_url"]).content)) as tif:
        assert tif.asarray().shape[1] == 480 and np.all(tif.asarray().shape[:2])
    too_big = ask("tiff", 80)  # 1280 px wide: about 1 MP, over the TIFF cap of 500,000
    assert too_big.status_code == 413 and too_big.json()["field"] == "cols", too_big.text
