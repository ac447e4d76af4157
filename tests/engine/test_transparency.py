"""Transparent tiles keep their alpha from the file to the final picture, on the chosen background."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.engine import MosaicParams, TileSet, make_mosaic
from app.engine.features import cell_means
from app.engine.pyramid import GridSource


@pytest.fixture(scope="module")
def emoji(corpus: Path) -> TileSet:
    return TileSet.from_paths([corpus / "tiles_emoji"], size=(16, 16))


def test_alpha_is_kept_through_decoding_and_storage(corpus: Path, emoji: TileSet, tmp_path: Path) -> None:
    assert emoji.alpha is not None and emoji.alpha.shape == emoji.images.shape[:3]
    first = sorted((corpus / "tiles_emoji").iterdir())[0]
    source = np.asarray(Image.open(first).convert("RGBA").resize((16, 16), Image.Resampling.BOX))[..., 3]
    index = emoji.names.index(str(first))
    assert np.abs(emoji.alpha[index].astype(int) - source.astype(int)).mean() < 8  # same shape of opacity
    emoji.save(tmp_path / "lib")
    loaded = TileSet.load(tmp_path / "lib")
    assert loaded.alpha is not None and np.array_equal(loaded.alpha, emoji.alpha)
    photos = TileSet.from_paths(sorted((corpus / "tiles_photo").iterdir())[:5], size=(16, 16))
    assert photos.alpha is None  # opaque libraries carry no alpha


def clear_pixels(result_grid: np.ndarray, emoji: TileSet) -> tuple[np.ndarray, np.ndarray]:
    """(mask of fully transparent pixels, shape of the mosaic) for the placed tiles."""
    alpha = emoji.alpha
    assert alpha is not None
    rows, cols = result_grid.shape
    placed = alpha[result_grid]  # (rows, cols, 16, 16)
    return placed.transpose(0, 2, 1, 3).reshape(rows * 16, cols * 16) == 0, placed


def test_a_fixed_background_shows_through_the_transparent_pixels(corpus: Path, emoji: TileSet) -> None:
    params = MosaicParams(cols=20, tile_size=16, tint=0, background="#ff00ff")
    result = make_mosaic(corpus / "covers" / "mate-Storm.jpg", emoji, params)
    clear, _ = clear_pixels(result.grid, emoji)
    assert clear.mean() > 0.01, "the placed emoji have no transparent pixels to look through"
    assert (result.image[clear] == [255, 0, 255]).all()
    assert result.report()["background"] == "#ff00ff"


def test_by_default_each_cell_shows_its_own_colour_behind_the_tile(corpus: Path, emoji: TileSet) -> None:
    cover = corpus / "covers" / "mate-Storm.jpg"
    result = make_mosaic(cover, emoji, MosaicParams(cols=20, tile_size=16, tint=0))
    assert result.report()["background"] == "cell"
    clear, _ = clear_pixels(result.grid, emoji)
    assert clear.mean() > 0.05
    image = Image.open(cover)
    image.draft("RGB", (20 * 16, result.rows * 16))
    means = cell_means(image.convert("RGB"), 20, result.rows)  # what the engine sees, about
    expected = np.repeat(np.repeat(means, 16, axis=0), 16, axis=1)
    assert np.abs(result.image[clear].astype(float) - expected[clear]).max() < 12
    # and darks stay dark: on white the same cover comes out much lighter than on its own colours
    white = make_mosaic(cover, emoji, MosaicParams(cols=20, tile_size=16, tint=0, background="#ffffff"))
    assert result.image.mean() < white.image.mean() - 10
    cover_mean = np.asarray(Image.open(cover).convert("RGB"), dtype=float).mean()
    assert abs(result.image.mean() - cover_mean) < abs(white.image.mean() - cover_mean)


@pytest.mark.parametrize("background", ["cell", "#203040"])
def test_the_zoom_pyramid_redraws_the_same_composite(corpus: Path, emoji: TileSet, background: str) -> None:
    params = MosaicParams(cols=12, tile_size=16, background=background)  # tint on: offsets too
    result = make_mosaic(corpus / "covers" / "mate-LadyBird.jpg", emoji, params)
    assert result.backgrounds is not None and result.backgrounds.shape == (*result.grid.shape, 3)
    source = GridSource.from_tiles(emoji, result.grid, (16, 16), result.cell_offsets, result.backgrounds)
    width, height = source.size
    assert np.array_equal(source.region((0, 0, width, height)), result.image)
