"""The ``dpi`` option: written into every output format, and the report's print size."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from app.engine import BadParameter, MosaicParams, TileSet, make_mosaic
from app.engine.mosaic import MosaicResult
from app.engine.render import encode, print_size


def file_dpi(data: bytes) -> tuple[float, float]:
    """The resolution a file records: the format's own field, else EXIF's (as WebP carries it)."""
    with Image.open(io.BytesIO(data)) as im:
        if "dpi" in im.info:
            x, y = im.info["dpi"]
            return float(x), float(y)
        exif = im.getexif()
        assert exif.get(296) == 2, "resolution unit must be inches"
        return float(exif[282]), float(exif[283])


@pytest.fixture(scope="module")
def result(photo_tiles: list[Path], corpus: Path) -> MosaicResult:
    tiles = TileSet.from_paths(photo_tiles[:60], size=(16, 16))
    params = MosaicParams(cols=30, tile_size=16, dpi=150)
    return make_mosaic(corpus / "covers" / "mate-Dune.jpg", tiles, params)


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp"])
@pytest.mark.parametrize("dpi", [72, 300, 1200])
def test_every_format_records_the_dpi(result: MosaicResult, fmt: str, dpi: int) -> None:
    out = io.BytesIO()
    encode(result.image, out, fmt, dpi=dpi)
    x, y = file_dpi(out.getvalue())
    assert x == pytest.approx(dpi, abs=0.01) and y == pytest.approx(dpi, abs=0.01)


def test_report_gives_the_print_size(result: MosaicResult) -> None:
    width, height = result.image.shape[1], result.image.shape[0]
    printed = result.report()["print"]
    assert printed["dpi"] == 150
    assert printed["width_in"] == pytest.approx(width / 150, abs=0.005)
    assert printed["height_cm"] == pytest.approx(height / 150 * 2.54, abs=0.05)


def test_print_size_of_a_known_picture() -> None:
    # 32,000 px at 300 dpi: 106.67 in, 270.9 cm
    assert print_size(32_000, 20_000, 300) == {
        "dpi": 300, "width_cm": 270.9, "height_cm": 169.3, "width_in": 106.67, "height_in": 66.67,
    }  # fmt: skip


@pytest.mark.parametrize("dpi", [0, 2401, -5])
def test_dpi_out_of_range_is_refused(dpi: int) -> None:
    with pytest.raises(BadParameter) as err:
        MosaicParams(dpi=dpi).validate()
    assert err.value.field == "dpi"
