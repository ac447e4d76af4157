"""Colour correction, structure inside a cell, and the quality report's figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.engine import MosaicParams, TileSet, make_mosaic
from app.engine.features import compress_chroma, convert_colors
from app.engine.quality import quality_report
from tests.conftest import cell_error, read_image


@pytest.fixture(scope="module")
def library(photo_tiles: list[Path]) -> TileSet:
    return TileSet.from_paths(photo_tiles, size=(8, 8))


def test_tint_zero_places_tiles_byte_for_byte(corpus: Path, library: TileSet) -> None:
    result = make_mosaic(
        corpus / "covers" / "mate-Storm.jpg", library, MosaicParams(cols=16, tile_size=8, tint=0)
    )
    for row, col in [(0, 0), (4, 7), (result.rows - 1, 15)]:
        cell = result.image[row * 8 : (row + 1) * 8, col * 8 : (col + 1) * 8]
        assert (cell == library.images[result.grid[row, col]]).all()


def test_tint_moves_cells_toward_the_cover(corpus: Path, library: TileSet) -> None:
    path = corpus / "covers" / "mate-FreshFlower.jpg"
    cover = read_image(path, "RGB")
    errors, reported = [], []
    for tint in (0, 20, 60):
        result = make_mosaic(path, library, MosaicParams(cols=30, tile_size=8, tint=tint))
        errors.append(cell_error(cover, result.image, 30, result.rows))
        reported.append(result.quality["cell_de"])
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.6 * errors[0]
    assert reported[0] > reported[1] > reported[2]
    # The report models what was drawn: close to the measured figure.
    assert reported == pytest.approx(errors, rel=0.15)


def test_tinted_tiles_stay_photos(corpus: Path, library: TileSet) -> None:
    """Tint shifts a tile's colours; it does not paint the cover over it (the detail stays)."""
    result = make_mosaic(
        corpus / "covers" / "mate-Storm.jpg", library, MosaicParams(cols=16, tile_size=8, tint=50)
    )
    cell = result.image[:8, :8].astype(int)
    tile = library.images[result.grid[0, 0]].astype(int)
    detail = tile - tile.mean(axis=(0, 1))
    unclipped = (cell > 0) & (cell < 255)
    assert np.abs((cell - cell.mean(axis=(0, 1))) - detail)[unclipped].mean() < 3


def split_tile(left: int, right: int) -> np.ndarray:
    tile = np.full((8, 8, 3), left, dtype=np.uint8)
    tile[:, 4:] = right
    return tile


def test_cell_grid_gives_a_left_dark_cell_a_left_dark_tile() -> None:
    tiles = TileSet(
        np.stack([split_tile(230, 20), np.full((8, 8, 3), 125, np.uint8), split_tile(20, 230)]),
        ["light-dark", "grey", "dark-light"],
    )
    cover = Image.fromarray(split_tile(30, 220))  # one cell: dark left, light right
    coarse = make_mosaic(cover, tiles, MosaicParams(cols=1, tile_size=8, cell_grid=1))
    fine = make_mosaic(cover, tiles, MosaicParams(cols=1, tile_size=8, cell_grid=2))
    assert coarse.tile_names[coarse.grid[0, 0]] != "dark-light"  # one mean cannot tell them apart
    assert fine.tile_names[fine.grid[0, 0]] == "dark-light"


def test_report_figures_on_a_hand_made_grid() -> None:
    tile_means = np.array([[255.0, 255, 255], [0, 0, 0], [128, 128, 128]])
    grid = np.array([[0, 0], [1, 2]])
    cover = tile_means[grid].copy()
    exact = quality_report(cover, tile_means, grid, library_size=6)
    # 6 neighbouring pairs in a 2 x 2 grid (2 across, 2 down, 2 diagonal), one of them the same tile
    assert exact == {"cell_de": 0.0, "distinct_tiles": 3, "max_uses": 2,
                     "adjacent_same": round(1 / 6, 4), "library_used": 0.5}  # fmt: skip
    diagonal = quality_report(cover, tile_means, np.array([[0, 1], [2, 0]]))
    assert diagonal["adjacent_same"] == round(1 / 6, 4)  # a diagonal repeat counts
    cover[0, 0] = [0, 0, 0]  # white placed on black: CIEDE2000 is 100 for that cell
    assert quality_report(cover, tile_means, grid)["cell_de"] == pytest.approx(25.0, abs=0.01)
    shifted = quality_report(cover, tile_means, grid, np.full((2, 2, 3), -300.0))  # all clipped to black
    assert shifted["distinct_tiles"] == 3  # the report counts tiles, not colours


def test_report_is_on_the_result(corpus: Path, library: TileSet) -> None:
    result = make_mosaic(corpus / "covers" / "mate-Aqua.jpg", library, MosaicParams(cols=20, tile_size=8))
    quality = result.report()["quality"]
    assert isinstance(quality, dict)
    assert set(quality) == {"cell_de", "distinct_tiles", "max_uses", "adjacent_same", "library_used"}
    assert quality["library_used"] == pytest.approx(len(np.unique(result.grid)) / len(library), abs=1e-4)
    assert quality["max_uses"] == np.bincount(result.grid.ravel()).max()
    assert 0 < quality["cell_de"] < 30


def test_chroma_compression_keeps_lightness_and_hue() -> None:
    lab = convert_colors(np.array([[200.0, 30, 40], [10, 200, 90], [128, 128, 128]]), "lab")
    squeezed = compress_chroma(lab, 0.1)
    assert np.allclose(squeezed[:, 0], lab[:, 0])
    assert np.allclose(np.arctan2(squeezed[:2, 2], squeezed[:2, 1]), np.arctan2(lab[:2, 2], lab[:2, 1]))
    chroma = np.hypot(lab[:, 1], lab[:, 2])
    assert (np.hypot(squeezed[:2, 1], squeezed[:2, 2]) < chroma[:2]).all()
