"""``format=tiff``: a tiled print file streamed from the cells, with its dpi; BigTIFF when needed."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import tifffile

from app.engine import MosaicParams, TileSet, make_mosaic, write_mosaic
from app.engine import tiff as tiff_module
from app.engine.mosaic import MosaicResult
from app.engine.render import encode, format_for_path
from app.engine.tiff import TILE


def tiff_dpi(tif: tifffile.TiffFile) -> tuple[float, float]:
    """The (x, y) resolution a TIFF records, in dots per inch."""
    tags = tif.pages[0].tags  # type: ignore[union-attr]
    assert tags["ResolutionUnit"].value == 2, "resolution unit must be inches"
    x, y = tags["XResolution"].value, tags["YResolution"].value
    return x[0] / x[1], y[0] / y[1]


@pytest.fixture(scope="module")
def tiles(photo_tiles: list[Path]) -> TileSet:
    return TileSet.from_paths(photo_tiles[:80], size=(24, 24))


@pytest.fixture(scope="module")
def params() -> MosaicParams:
    # 37 x 24 px cells: neither the width nor the height is a multiple of a TIFF tile, tinted
    return MosaicParams(cols=23, tile_size=37, aspect=(3, 2), tint=40, dpi=600)


@pytest.fixture(scope="module")
def stitched(corpus: Path, tiles: TileSet, params: MosaicParams) -> MosaicResult:
    return make_mosaic(corpus / "covers" / "mate-Dune.jpg", tiles, params)


def test_streamed_tiff_equals_the_stitched_mosaic(
    corpus: Path, tiles: TileSet, params: MosaicParams, stitched: MosaicResult, tmp_path: Path
) -> None:
    streamed = make_mosaic(corpus / "covers" / "mate-Dune.jpg", tiles, params, stitched=False)
    assert streamed.image is None and stitched.image is not None
    assert streamed.report()["print"] == stitched.report()["print"]
    out = tmp_path / "mosaic.tif"
    bands: list[int] = []
    with open(out, "wb") as fh:
        write_mosaic(streamed, fh, "tiff", progress=lambda done, total: bands.append(total))
    with tifffile.TiffFile(out) as tif:
        page = tif.pages[0]
        assert page.is_tiled and (page.tilelength, page.tilewidth) == (TILE, TILE)  # type: ignore[union-attr]
        assert not tif.is_bigtiff
        assert tiff_dpi(tif) == pytest.approx((600, 600))
        pixels = tif.asarray()
    height, width = stitched.image.shape[:2]
    assert pixels.shape == (height, width, 3) == (streamed.height, streamed.width, 3)
    assert width % TILE and height % TILE
    np.testing.assert_array_equal(pixels, stitched.image)  # tint and cells as the render has them
    assert bands and bands[0] == -(-height // TILE)


def test_encoding_an_image_as_tiff_keeps_pixels_and_dpi(stitched: MosaicResult) -> None:
    assert stitched.image is not None
    out = io.BytesIO()
    encode(stitched.image, out, "tiff", dpi=72)
    with tifffile.TiffFile(io.BytesIO(out.getvalue())) as tif:
        assert tiff_dpi(tif) == pytest.approx((72, 72))
        np.testing.assert_array_equal(tif.asarray(), stitched.image)


def test_a_file_past_4_gb_of_pixels_is_a_bigtiff(
    stitched: MosaicResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the switch, not 4 GB of disk: lower the threshold below this picture's size
    assert stitched.image is not None
    monkeypatch.setattr(tiff_module, "BIGTIFF_BYTES", stitched.image.size - 1)
    out = tmp_path / "big.tif"
    encode(stitched.image, out, "tiff")
    with tifffile.TiffFile(out) as tif:
        assert tif.is_bigtiff
        assert tiff_dpi(tif) == pytest.approx((300, 300))
        np.testing.assert_array_equal(tif.asarray(), stitched.image)


def test_tif_names_mean_tiff() -> None:
    assert format_for_path("print.tif") == format_for_path("PRINT.TIFF") == "tiff"


def test_an_unstitched_mosaic_is_only_streamed_as_tiff(corpus: Path, tiles: TileSet) -> None:
    streamed = make_mosaic(corpus / "covers" / "mate-Dune.jpg", tiles, MosaicParams(cols=8), stitched=False)
    with pytest.raises(ValueError, match="TIFF"):
        write_mosaic(streamed, io.BytesIO(), "png")
