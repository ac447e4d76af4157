"""Issue 17, point 1: decoding costs about the 8-bit decoded image, whatever the source's depth.

Each file is decoded in a fresh process and its peak RSS measured. The issue's 16-bit PNG of
9400 x 9400 (0.2 MB on disk) used to take +2.9 GB; Pillow keeps an 8-bit RGB picture in 4 bytes
a pixel, so that is 353 MB here, and the 16-bit source itself 177 MB.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.hostile import DECODE_COVER, DECODE_TILE, SIDE, child_peak_mb, float_tiff, grey16_png, palette_png

MB_PER_PIXEL = SIDE * SIDE / 1048576


@pytest.mark.parametrize(
    ("make", "name", "source_bytes_per_pixel"),
    [(grey16_png, "g.png", 2), (float_tiff, "f.tif", 4), (palette_png, "p.png", 1)],
    ids=["grey16-png", "float-tiff", "palette-png"],
)
def test_a_deep_image_costs_about_its_8bit_decode(
    tmp_path: Path, make: Callable[[Path], Path], name: str, source_bytes_per_pixel: int
) -> None:
    path = make(tmp_path / name)
    assert path.stat().st_size < 1_000_000  # a small upload
    source = source_bytes_per_pixel * MB_PER_PIXEL  # what Pillow's decoder itself needs
    rgb = 4 * MB_PER_PIXEL  # the 8-bit RGB picture, as Pillow stores it
    if make is palette_png:  # transparent: its 8-bit alpha plane is kept too (the tile's opacity)
        rgb += MB_PER_PIXEL
    tile = child_peak_mb(DECODE_TILE, str(path))
    assert tile > source / 2, f"the measure missed the decode itself ({tile:.0f} MB)"
    assert tile < source + rgb + 40, f"a tile decode took {tile:.0f} MB"
    if make is grey16_png:
        assert tile < 700 / 2, f"the issue's 16-bit tile took {tile:.0f} MB"
        cover = child_peak_mb(DECODE_COVER, str(path))
        assert cover < source + rgb + 40, f"a cover decode took {cover:.0f} MB"
