"""``tessera make -o mosaic.tif``: a tiled print file with the dpi asked for, the print size printed."""

from __future__ import annotations

from pathlib import Path

import tifffile
from PIL import Image

from tests.conftest import cell_error, read_image
from tests.engine.test_tiff import tiff_dpi
from tests.test_cli import tessera


def test_make_writes_a_tiled_tiff_at_the_dpi(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "print.tif"
    cover = corpus / "covers" / "mate-FreshFlower.jpg"
    run = tessera("make", cover, corpus / "tiles_photo", "-o", out, "--cols", "40", "--tile-size", "25",
                  "--dpi", "250")  # fmt: skip
    assert run.returncode == 0, run.stderr
    rows = round(40 * 1203 / 1600)
    # 1000 px at 250 dpi: 4 in, 10.2 cm
    assert f"print: 10.2 x {round(rows * 25 / 250 * 2.54, 1)} cm (4.0 x" in run.stdout
    with tifffile.TiffFile(out) as tif:
        assert tif.pages[0].is_tiled  # type: ignore[union-attr]
        assert tiff_dpi(tif) == (250, 250)
        pixels = tif.asarray()
    assert pixels.shape == (rows * 25, 1000, 3)
    assert (
        cell_error(read_image(cover, "RGB"), Image.fromarray(pixels), 40, rows) < 15
    )  # a flat grey picture scores 25-31
