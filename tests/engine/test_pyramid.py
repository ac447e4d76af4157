"""Deep Zoom pyramids: the layout arithmetic, and pyramids cut from the grid equal the render."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.engine import MosaicParams, TileSet, make_mosaic
from app.engine.pyramid import BitmapSource, DziLayout, GridSource, shrink2, write_pyramid


@pytest.fixture(scope="module")
def mosaic(photo_tiles: list[Path], corpus: Path) -> tuple[TileSet, object]:
    tiles = TileSet.from_paths(photo_tiles[:150], size=(48, 48))
    params = MosaicParams(cols=45, tile_size=20, aspect=(4, 3))  # 20 x 15 cells: not square
    return tiles, make_mosaic(corpus / "covers" / "mate-Storm.jpg", tiles, params)


@pytest.mark.parametrize(
    ("size", "levels"),
    [((1, 1), 1), ((2, 1), 2), ((3, 3), 3), ((256, 100), 9), ((257, 3), 10), ((900, 600), 11)],
)
def test_levels_are_ceil_log2_of_the_longer_side_plus_one(size: tuple[int, int], levels: int) -> None:
    layout = DziLayout(*size)
    assert layout.levels == levels == math.ceil(math.log2(max(size))) + 1
    assert layout.level_size(layout.max_level) == size
    assert layout.level_size(0) == (1, 1)
    for level in range(1, layout.levels):  # each level halves the next, rounding up
        w, h = layout.level_size(level)
        assert layout.level_size(level - 1) == (math.ceil(w / 2), math.ceil(h / 2))


def test_tiles_cover_each_level_with_overlap() -> None:
    layout = DziLayout(900, 600, tile_size=254, overlap=1)
    assert (
        layout.tile_counts(10) == (4, 3)
        and layout.tile_counts(9) == (2, 2)
        and layout.tile_counts(8) == (1, 1)
    )
    assert layout.tile_box(10, 0, 0) == (0, 0, 255, 255)
    assert layout.tile_box(10, 1, 1) == (253, 253, 509, 509)
    assert layout.tile_box(10, 3, 2) == (761, 507, 900, 600)
    assert layout.tile_total() == 12 + 4 + 1 * 9


def test_descriptor_round_trips_and_is_deep_zoom_xml() -> None:
    layout = DziLayout(1234, 567, tile_size=256, overlap=0, fmt="png")
    xml = layout.descriptor()
    assert 'xmlns="http://schemas.microsoft.com/deepzoom/2008"' in xml and 'Format="png"' in xml
    assert DziLayout.from_descriptor(xml) == layout
    with pytest.raises(ValueError):
        DziLayout.from_descriptor("<Image/>")


def test_shrink2_means_blocks_and_repeats_an_odd_edge() -> None:
    image = np.arange(5 * 3 * 3, dtype=np.uint8).reshape(5, 3, 3)
    half = shrink2(image)
    assert half.shape == (3, 2, 3)
    assert half[0, 0, 0] == round(image[:2, :2, 0].mean())
    assert half[2, 1, 0] == image[4, 2, 0]  # the corner pixel, alone in its block


def test_grid_pyramid_equals_the_bitmap_pyramid_and_the_render(mosaic: tuple, tmp_path: Path) -> None:
    tiles, result = mosaic
    source = GridSource.from_tiles(tiles, result.grid, result.params.tile_shape, result.cell_offsets)
    assert result.cell_offsets is not None  # the default tint shifts every cell a little
    assert source.size == (result.image.shape[1], result.image.shape[0]) == (900, 600)
    # A small budget, so that the large levels are drawn region by region from the grid.
    grid_layout = write_pyramid(source, tmp_path / "grid", fmt="png", budget_pixels=50_000, workers=2)
    bitmap_layout = write_pyramid(BitmapSource(result.image), tmp_path / "bitmap", fmt="png")
    assert grid_layout == bitmap_layout and grid_layout.levels == 11
    files = sorted((tmp_path / "grid" / "mosaic_files").rglob("*.png"))
    assert len(files) == grid_layout.tile_total()
    for path in files:
        other = tmp_path / "bitmap" / path.relative_to(tmp_path / "grid")
        np.testing.assert_array_equal(np.asarray(Image.open(path)), np.asarray(Image.open(other)))
    top = grid_layout.max_level
    for col, row in grid_layout.tiles(top):
        x0, y0, x1, y1 = grid_layout.tile_box(top, col, row)
        tile = np.asarray(Image.open(tmp_path / "grid" / "mosaic_files" / str(top) / f"{col}_{row}.png"))
        np.testing.assert_array_equal(tile, result.image[y0:y1, x0:x1])


def test_jpeg_tiles_and_progress(mosaic: tuple, tmp_path: Path) -> None:
    tiles, result = mosaic
    seen: list[tuple[int, int]] = []
    source = GridSource.from_tiles(tiles, result.grid, result.params.tile_shape, result.cell_offsets)
    layout = write_pyramid(source, tmp_path, name="m", progress=lambda d, t: seen.append((d, t)))
    assert (tmp_path / "m.dzi").read_text() == layout.descriptor()
    assert seen[-1] == (layout.tile_total(), layout.tile_total())
    with Image.open(tmp_path / "m_files" / "10" / "1_1.jpg") as tile:
        assert tile.format == "JPEG" and tile.size == (256, 256)  # 254 + 1 px overlap each side
        picture = np.asarray(tile.convert("RGB"), dtype=float)
    # JPEG's loss on a wall of varied photos is a few levels; one pixel off would be well above it.
    error = np.abs(picture - result.image[253:509, 253:509]).mean()
    assert error < 6
    assert error < np.abs(picture - result.image[254:510, 254:510]).mean() / 2
