"""The zoom pyramid below the render: drawn from the photos (sharp), the render's levels unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image, ImageOps

from app.engine import MosaicParams, TileSet, make_mosaic
from app.engine.deep_zoom import CellCache, PhotoLevels, photo_levels, usable_width, zoom_depth
from app.engine.mosaic import MosaicResult
from app.engine.pyramid import DziLayout, GridSource, write_pyramid
from tests.conftest import read_image

CELL = 16


@pytest.fixture(scope="module")
def made(photo_tiles: list[Path], corpus: Path) -> tuple[TileSet, MosaicResult, PhotoLevels]:
    tiles = TileSet.from_paths(photo_tiles[:120], size=(CELL, CELL))
    params = MosaicParams(cols=24, tile_size=CELL, tint=30)  # a strong tint: it must reach the photos
    result = make_mosaic(corpus / "covers" / "mate-LadyBird.jpg", tiles, params)
    render = DziLayout(result.image.shape[1], result.image.shape[0], fmt="png")
    sources = {name: str(path) for name, path in zip(tiles.names, photo_tiles[:120], strict=True)}
    deep = photo_levels(
        tiles, result.grid, (CELL, CELL), render, sources=sources, zoom_tile_size=256,
        offsets=result.cell_offsets,
    )  # fmt: skip
    assert deep is not None
    return tiles, result, deep


def photo_at(path: Path, size: int, shift: NDArray[np.int16] | None) -> NDArray[np.float64]:
    """The photo centre-cropped square and resized, with the cell's tint: what a sharp cell shows."""
    with Image.open(path) as im:
        upright = ImageOps.exif_transpose(im).convert("RGB")
    side = min(upright.size)
    left, top = (upright.width - side) / 2, (upright.height - side) / 2
    resized = upright.resize((size, size), Image.Resampling.LANCZOS, box=(left, top, left + side, top + side))
    pixels = np.asarray(resized, dtype=np.float64)
    return np.clip(pixels + (0 if shift is None else shift), 0, 255)


def sharpness(pixels: NDArray[np.floating]) -> float:
    """Mean absolute difference of horizontal neighbours: detail."""
    return float(np.abs(np.diff(np.asarray(pixels, dtype=np.float64), axis=1)).mean())


def test_depth_follows_the_zoom_tile_size_and_the_photos() -> None:
    assert zoom_depth((32, 32), 256, [400] * 5) == 3  # 32 -> 256
    assert zoom_depth((24, 24), 256, [400] * 5) == 3  # 192: at most 256, a power of 2 times the render
    assert zoom_depth((32, 32), 256, [100, 100, 900]) == 1  # the median photo fills 64 px, not 128
    assert zoom_depth((32, 32), 16, [400]) == 0  # asked for less than the render has
    assert usable_width((300, 200), (1, 1)) == 200 and usable_width((300, 400), (3, 4)) == 225


def test_deepest_level_shows_the_photos_sharp(
    made: tuple[TileSet, MosaicResult, PhotoLevels], photo_tiles: list[Path]
) -> None:
    _, result, deep = made
    size = deep.cell_size_at(deep.layout.max_level)[0]
    assert size == CELL << deep.depth and size >= 64
    gained, errors = [], []
    for row, col in [(0, 0), (3, 7), (result.rows - 1, 23), (result.rows // 2, 12)]:
        cell = deep.region(
            deep.layout.max_level, (col * size, row * size, (col + 1) * size, (row + 1) * size)
        )
        shift = None if result.cell_offsets is None else result.cell_offsets[row, col]
        truth = photo_at(photo_tiles[:120][result.grid[row, col]], size, shift)
        rendered = result.image[row * CELL : (row + 1) * CELL, col * CELL : (col + 1) * CELL]
        enlarged = np.asarray(
            Image.fromarray(rendered).resize((size, size), Image.Resampling.BICUBIC), dtype=float
        )
        errors.append((np.abs(cell - truth).mean(), np.abs(enlarged - truth).mean()))
        gained.append(sharpness(cell) / sharpness(enlarged))
    for deep_error, enlarged_error in errors:
        assert deep_error < 3.0, errors  # the photo itself, tinted as the render tinted it
        assert enlarged_error > 2 * deep_error, errors  # the check tells an enlarged render apart
    assert min(gained) > 1.3, gained


def test_render_levels_equal_the_render_and_deeper_ones_are_drawn(
    made: tuple[TileSet, MosaicResult, PhotoLevels], tmp_path: Path
) -> None:
    tiles, result, deep = made
    source = GridSource.from_tiles(tiles, result.grid, (CELL, CELL), result.cell_offsets)
    layout = write_pyramid(source, tmp_path, fmt="png", depth=deep.depth, deep=deep)
    height, width = result.image.shape[:2]
    assert (layout.width, layout.height) == (width << deep.depth, height << deep.depth)
    assert DziLayout.from_descriptor((tmp_path / "mosaic.dzi").read_text()) == layout
    render_level = layout.max_level - deep.depth
    assert layout.level_size(render_level) == (width, height)
    files = tmp_path / "mosaic_files"
    for col, row in layout.tiles(render_level):  # the render's level is the render, byte for byte
        x0, y0, x1, y1 = layout.tile_box(render_level, col, row)
        stored = np.asarray(read_image(files / str(render_level) / f"{col}_{row}.png"))
        assert (stored == result.image[y0:y1, x0:x1]).all()
    for level in range(render_level + 1, layout.levels):  # every tile of the deeper levels exists
        cols, rows = layout.tile_counts(level)
        assert len(list((files / str(level)).iterdir())) == cols * rows
    x0, y0, x1, y1 = layout.tile_box(layout.max_level, 1, 1)
    tile = np.asarray(read_image(files / str(layout.max_level) / "1_1.png"))
    assert (tile == deep.region(layout.max_level, (x0, y0, x1, y1))).all()


def test_the_cell_cache_stays_within_its_bytes() -> None:
    cache = CellCache(max_bytes=10 * 64 * 64 * 3)
    for key in range(50):
        cache.get(key, lambda: np.zeros((64, 64, 3), dtype=np.uint8))
        assert cache.bytes <= cache.max_bytes
    made = []
    cache.get(49, lambda: made.append(1) or np.zeros((64, 64, 3), dtype=np.uint8))  # type: ignore[func-returns-value]
    assert made == []  # the latest cells are kept
