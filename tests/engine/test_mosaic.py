"""A mosaic resembles its cover, measurably; each cell gets its nearest tile."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from app.engine import BadParameter, MosaicParams, NoUsableTiles, TileIndex, TileSet, make_mosaic
from app.engine.features import block_means, convert_colors, tile_features, weighted, weights_for
from app.engine.render import stitch
from tests.conftest import cell_error, read_image


@pytest.fixture(scope="module")
def library(photo_tiles: list[Path]) -> TileSet:
    return TileSet.from_paths(photo_tiles, size=(16, 16))


@pytest.mark.parametrize("cover_name", ["mate-LadyBird.jpg", "skimage-astronaut.jpg"])
def test_mosaic_resembles_its_cover_and_a_shuffle_does_not(
    corpus: Path, library: TileSet, cover_name: str
) -> None:
    cover = read_image(corpus / "covers" / cover_name, "RGB")
    # cell_grid=1: matching on the mean colour alone, which is what this error bound is about
    params = MosaicParams(cols=60, tile_size=16, cell_grid=1)
    result = make_mosaic(corpus / "covers" / cover_name, library, params)
    rows = result.rows
    assert result.image.shape == (rows * 16, 60 * 16, 3)
    assert rows == round(60 * cover.height / cover.width)
    good = cell_error(cover, result.image, 60, rows)

    rng = np.random.default_rng(7)
    shuffled_grid = rng.permutation(result.grid.ravel()).reshape(result.grid.shape)
    shuffled = stitch(library.images, shuffled_grid)
    bad = cell_error(cover, shuffled, 60, rows)
    assert good < 10.0, f"mean CIEDE2000 per cell {good:.2f}"
    assert bad > 2 * good, f"the check cannot tell a shuffled mosaic ({bad:.2f}) from a real one ({good:.2f})"


def test_placement_record_matches_the_picture(corpus: Path, library: TileSet) -> None:
    params = MosaicParams(cols=12, tile_size=16, tint=0)  # tint 0: tiles placed byte for byte
    result = make_mosaic(corpus / "covers" / "mate-Dune.jpg", library, params)
    for row, col in [(0, 0), (3, 5), (result.rows - 1, 11)]:
        cell = result.image[row * 16 : (row + 1) * 16, col * 16 : (col + 1) * 16]
        assert (cell == library.images[result.grid[row, col]]).all()
        assert result.tile_names[result.grid[row, col]] == library.names[result.grid[row, col]]


def test_output_size_follows_cols_tile_size_and_aspect(corpus: Path, library: TileSet) -> None:
    params = MosaicParams(cols=20, tile_size=24, aspect=(4, 3))
    result = make_mosaic(corpus / "covers" / "mate-Storm.jpg", library, params)
    assert result.image.shape[1] == 20 * 24
    assert result.image.shape[0] == result.rows * 18
    # 1920x1280 cover, 4:3 cells: rows = 20 * 4/3 * 1280/1920 = 17.8 -> 18
    assert result.rows == 18


@settings(max_examples=25, deadline=None)
@given(
    colors=st.lists(st.tuples(*[st.integers(0, 255)] * 3), min_size=2, max_size=12, unique=True),
    cells=st.lists(st.tuples(*[st.integers(0, 255)] * 3), min_size=1, max_size=30),
    space=st.sampled_from(["rgb", "lab", "oklab"]),
)
def test_each_cell_gets_the_nearest_solid_tile(
    colors: list[tuple[int, int, int]], cells: list[tuple[int, int, int]], space: str
) -> None:
    tiles = TileSet(
        np.array(colors, dtype=np.uint8)[:, None, None, :].repeat(4, 1).repeat(4, 2), [str(c) for c in colors]
    )
    cover = Image.fromarray(np.array([cells], dtype=np.uint8))  # one row, one pixel per cell
    result = make_mosaic(
        cover,
        tiles,
        MosaicParams(cols=len(cells), tile_size=4, color_space=space, max_uses=0, min_distance=0),
    )  # type: ignore[arg-type]
    assert result.grid.shape == (1, len(cells))
    # Nearest in the engine's feature space (Lab with CIEDE2000-like chroma compression, Oklab, RGB).
    weights = weights_for(space)  # type: ignore[arg-type]
    tile_feats = weighted(convert_colors(np.array(colors, dtype=np.float64), space)[:, None, None], weights)  # type: ignore[arg-type]
    cell_feats = weighted(convert_colors(np.array(cells, dtype=np.float64), space)[:, None, None], weights)  # type: ignore[arg-type]
    dist = np.linalg.norm(cell_feats[:, None] - tile_feats[None], axis=2)
    chosen = dist[np.arange(len(cells)), result.grid[0]]
    assert np.allclose(chosen, dist.min(axis=1), atol=1e-3)


def test_known_lab_values() -> None:
    lab = convert_colors(np.array([[255.0, 255, 255], [0, 0, 0], [255, 0, 0]]), "lab")
    assert np.allclose(lab[0], [100, 0, 0], atol=0.05)
    assert np.allclose(lab[1], [0, 0, 0], atol=0.05)
    assert np.allclose(lab[2], [53.24, 80.09, 67.20], atol=0.05)
    oklab = convert_colors(np.array([[255.0, 255, 255]]), "oklab")
    assert np.allclose(oklab[0], [100, 0, 0], atol=0.05)


def test_block_means_are_exact_area_means() -> None:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(3, 7, 5, 3), dtype=np.uint8)
    one = block_means(images, 1)[:, 0, 0]
    assert np.allclose(one, images.reshape(3, -1, 3).mean(axis=1))
    even = block_means(np.repeat(np.repeat(images, 2, 1), 2, 2), 2)  # 14x10 splits into 7x5 blocks
    assert np.allclose(
        even[:, 0, 0],
        images[:, :4, :3].astype(float).mean(axis=(1, 2)) * 0
        + np.repeat(np.repeat(images, 2, 1), 2, 2)[:, :7, :5].mean(axis=(1, 2)),
    )
    assert tile_features(images, grid=3).shape == (3, 27)


def test_block_means_of_whole_pixel_blocks_match_the_area_weighted_means() -> None:
    """Tiles whose size the grid divides take the integer fast path; it must give what the
    area-weighted path gives (the same blocks, computed with weights, as the float input does)."""
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, size=(6, 24, 36, 3), dtype=np.uint8)
    for grid in (1, 2, 3, 4, 6, 12):
        fast = block_means(images, grid)
        weighted_path = block_means(images.astype(np.float64), grid)  # not uint8: the general path
        brute = images.reshape(6, grid, 24 // grid, grid, 36 // grid, 3).astype(float).mean(axis=(2, 4))
        assert fast.dtype == np.float64 and fast.shape == (6, grid, grid, 3)
        assert np.allclose(fast, brute, atol=1e-9) and np.allclose(fast, weighted_path, atol=1e-9)
    white = np.full((2, 64, 64, 3), 255, dtype=np.uint8)  # the largest sums stay exact
    assert np.array_equal(block_means(white, 4), np.full((2, 4, 4, 3), 255.0))


def test_index_round_trips_through_npy(tmp_path: Path) -> None:
    feats = np.random.default_rng(3).random((50, 6))
    index = TileIndex(feats)
    index.save(tmp_path / "f.npy")
    again = TileIndex.load(tmp_path / "f.npy")
    query = np.random.default_rng(4).random((10, 6))
    assert (index.query(query, 3)[1] == again.query(query, 3)[1]).all()


def test_tileset_round_trips(tmp_path: Path, library: TileSet) -> None:
    library.save(tmp_path / "lib")
    again = TileSet.load(tmp_path / "lib")
    assert (again.images == library.images).all() and again.names == library.names


@pytest.mark.parametrize(
    ("field", "params"),
    [
        ("cols", MosaicParams(cols=0)),
        ("tile_size", MosaicParams(tile_size=2)),
        ("cell_grid", MosaicParams(cell_grid=0)),
        ("aspect", MosaicParams(aspect=(10, 1))),
        ("color_space", MosaicParams(color_space="hsv")),
    ],  # type: ignore[arg-type]
)
def test_bad_parameters_name_the_field(library: TileSet, field: str, params: MosaicParams) -> None:
    with pytest.raises(BadParameter) as info:
        make_mosaic(Image.new("RGB", (10, 10)), library, params)
    assert info.value.field == field


def test_oversized_output_is_refused_before_rendering(library: TileSet) -> None:
    with pytest.raises(BadParameter, match="megapixels"):
        make_mosaic(
            Image.new("RGB", (1000, 1000)),
            library,
            MosaicParams(cols=1000, tile_size=512, max_output_pixels=10_000_000),
        )


def test_empty_library_is_an_error() -> None:
    empty = TileSet(np.zeros((0, 4, 4, 3), dtype=np.uint8), [])
    with pytest.raises(NoUsableTiles):
        make_mosaic(Image.new("RGB", (10, 10)), empty, MosaicParams(cols=2, tile_size=4))


def test_subset_index_answers_in_the_full_sets_numbers() -> None:
    rng = np.random.default_rng(11)
    features = rng.random((200, 12))
    cells = rng.random((30, 12))
    allowed = np.flatnonzero(rng.random(200) < 0.3)
    _, idx = TileIndex(features).subset(allowed).query(cells, k=3)
    dist = np.linalg.norm(cells[:, None] - features[allowed][None], axis=2)
    expected = allowed[np.argsort(dist, axis=1)[:, :3]]
    assert (idx == expected).all()
