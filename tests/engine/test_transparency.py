"""Transparent tiles keep their alpha from the file to the final picture, on the chosen background."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.engine import MosaicParams, TileSet, make_mosaic
from app.engine.animate import AnimationSpec, render_frames, scene_of
from app.engine.deep_zoom import photo_levels
from app.engine.features import block_features, block_means, cell_means, cover_features, on_background
from app.engine.index import TileIndex
from app.engine.mosaic import MosaicResult, build_index, candidates_on_cells, load_cover, nearest_exact
from app.engine.pyramid import DziLayout, GridSource
from app.engine.render import lay_over
from app.engine.tiles import make_tile_rgba


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


def see_through_cell(result: MosaicResult, emoji: TileSet) -> tuple[int, int]:
    """(row, col) of the cell where a placed emoji shows the most of a background far from white:
    the cell where drawing transparent pixels on white would be most wrong."""
    assert emoji.alpha is not None and result.backgrounds is not None
    clear = (emoji.alpha[result.grid] == 0).mean(axis=(2, 3))  # (rows, cols)
    far = np.abs(result.backgrounds.astype(float) - 255).mean(axis=2)
    row, col = np.unravel_index(np.argmax(clear * far), clear.shape)
    assert clear[row, col] > 0.2 and far[row, col] > 60, (clear[row, col], far[row, col])
    return int(row), int(col)


def expected_cell(
    result: MosaicResult, emoji: TileSet, row: int, col: int, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """What the cell (row, col) shows at ``size`` px from its emoji's file: its composite on the
    cell's background with the cell's tint, and the mask of pixels well inside its clear area."""
    assert result.backgrounds is not None
    name = emoji.names[int(result.grid[row, col])]
    rgb, alpha = make_tile_rgba(name, name=name, size=(size, size))
    assert alpha is not None
    shown = lay_over(rgb, alpha, result.backgrounds[row, col]).astype(float)
    if result.cell_offsets is not None:
        shown = np.clip(shown + result.cell_offsets[row, col], 0, 255)
    clear = alpha == 0
    inner = clear.copy()  # two pixels in from every opaque pixel: resampling blurs the edges
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            inner &= np.roll(np.roll(clear, dy, axis=0), dx, axis=1)
    return shown, inner


@pytest.mark.parametrize("background", ["cell", "#203040"])
def test_the_zoom_animation_ends_on_the_emoji_over_its_background(
    corpus: Path, emoji: TileSet, background: str
) -> None:
    params = MosaicParams(cols=16, tile_size=16, background=background)  # tint on: offsets too
    result = make_mosaic(corpus / "covers" / "mate-Storm.jpg", emoji, params)
    row, col = see_through_cell(result, emoji)
    sources = {name: name for name in emoji.names}
    scene = scene_of(
        emoji, result.grid, (16, 16), offsets=result.cell_offsets, sources=sources,
        backgrounds=result.backgrounds,
    )  # fmt: skip
    spec = AnimationSpec(kind="zoom", fmt="gif", seconds=1, width=128, height=128, fps=8, col=col, row=row)
    frames = list(render_frames(scene, spec))
    shown, clear = expected_cell(result, emoji, row, col, 128)  # the last view is exactly the cell
    last = frames[-1].astype(float)
    assert clear.mean() > 0.1
    assert np.abs(last[clear] - shown[clear]).max() <= 3  # the cell's own colour (or the fixed one)
    assert np.abs(last - shown).mean() < 3  # and the emoji itself, from its file, over it
    # the first frame is the whole mosaic from the mip levels: the render, shrunk
    small = np.asarray(Image.fromarray(result.image).resize((128, 128 * result.rows // 16), Image.BOX), float)
    top = (128 - small.shape[0]) // 2
    assert np.abs(frames[0][top : top + small.shape[0]].astype(float) - small).mean() < 6
    # the end of an assemble is the render too (sprites laid over their backgrounds)
    assembled = list(render_frames(scene, AnimationSpec(kind="assemble", fmt="gif", seconds=1, width=128,
                                                        height=128, fps=4)))[-1]  # fmt: skip
    assert np.abs(assembled[top : top + small.shape[0]].astype(float) - small).mean() < 6


@pytest.mark.parametrize("background", ["cell", "#203040"])
def test_the_deepest_zoom_level_shows_the_emoji_over_its_background(
    corpus: Path, emoji: TileSet, background: str
) -> None:
    params = MosaicParams(cols=16, tile_size=16, background=background)
    result = make_mosaic(corpus / "covers" / "mate-Storm.jpg", emoji, params)
    row, col = see_through_cell(result, emoji)
    render = DziLayout(result.width, result.height, fmt="png")
    deep = photo_levels(
        emoji, result.grid, (16, 16), render, sources={name: name for name in emoji.names},
        zoom_tile_size=256, offsets=result.cell_offsets, backgrounds=result.backgrounds,
    )  # fmt: skip
    assert deep is not None and deep.depth == 2  # 16 px cells, 64 px emoji: two levels of photos
    for level, size in ((deep.layout.max_level, 64), (deep.layout.max_level - 1, 32)):
        cell = deep.region(level, (col * size, row * size, (col + 1) * size, (row + 1) * size)).astype(float)
        shown, clear = expected_cell(result, emoji, row, col, size)
        assert clear.mean() > 0.1
        assert np.abs(cell[clear] - shown[clear]).max() <= 3, level
        assert np.abs(cell - shown).mean() < 3, level


def reference_candidates(
    tiles: TileSet, index: TileIndex, cells: np.ndarray, cell_colours: np.ndarray, params: MosaicParams
) -> tuple[np.ndarray, np.ndarray]:
    """The cell-colour candidate search as first written (before it was made fast): tree indexes
    on white, grey and black give 16 candidates each, every one of the 48 composited on its cell's
    colour and measured, a repeat set infinitely far, the 48 nearest kept. The definition the fast
    :func:`candidates_on_cells` is checked against (and bench/candidates.py times)."""
    k, keep, g = 16, 48, params.cell_grid
    white = block_means(tiles.images, g)
    opacity = block_means(tiles.opacity()[..., None], g)[..., 0] / 255.0
    found = [index.query(cells, k)[1]]
    for grey in (128.0, 0.0):
        on_grey = block_features(on_background(white, opacity, grey), color_space=params.color_space)
        found.append(TileIndex(on_grey).query(cells, k)[1])
    cand = np.sort(np.concatenate(found, axis=1), axis=1)
    n_cells, width = cand.shape
    dist = np.empty((n_cells, width))
    step = max(1, 2**16 // width)
    for s in range(0, n_cells, step):
        part = cand[s : s + step]
        bg = np.asarray(cell_colours[s : s + step], dtype=np.float64)[:, None, None, None, :]
        blocks = on_background(white[part], opacity[part], bg)
        feats = block_features(blocks.reshape(-1, g, g, 3), color_space=params.color_space)
        diff = feats.reshape(len(part), width, -1) - np.asarray(cells[s : s + step])[:, None, :]
        dist[s : s + step] = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))
    dist[:, 1:][cand[:, 1:] == cand[:, :-1]] = np.inf
    order = np.argsort(dist, axis=1, kind="stable")[:, :keep]
    return np.take_along_axis(dist, order, 1), np.take_along_axis(cand, order, 1)


def cells_of(cover: Path, params: MosaicParams) -> tuple[np.ndarray, np.ndarray]:
    """(features, mean colours) of the cover's cells, as make_mosaic computes them."""
    decoded = load_cover(cover, params)
    rows = params.rows_for(decoded.width, decoded.height)
    feats = cover_features(
        decoded.image, params.cols, rows, color_space=params.color_space, grid=params.cell_grid
    )
    return feats, cell_means(decoded.image, params.cols, rows).reshape(-1, 3)


@pytest.mark.parametrize(
    ("cover", "options"),
    [
        ("mate-Storm.jpg", {}),
        ("mate-LadyBird.jpg", {}),
        ("skimage-astronaut.jpg", {"cell_grid": 2}),
        ("mate-FreshFlower.jpg", {"color_space": "oklab"}),
        ("mate-Dune.jpg", {"color_space": "rgb", "cell_grid": 1}),
    ],
)
def test_the_fast_cell_colour_search_gives_what_the_plain_one_gives(
    corpus: Path, emoji: TileSet, cover: str, options: dict[str, object]
) -> None:
    params = MosaicParams(cols=40, tile_size=16, **options).validate()  # type: ignore[arg-type]
    cells, colours = cells_of(corpus / "covers" / cover, params)
    index = build_index(emoji, params)
    want_dist, want_tiles = reference_candidates(emoji, index, cells, colours, params)
    dist, tiles = candidates_on_cells(emoji, index, cells, colours, params)
    finite = np.isfinite(want_dist)
    assert finite.mean() > 0.5 and np.array_equal(np.isfinite(dist), finite)
    assert np.array_equal(tiles[finite], want_tiles[finite])  # the same tiles, in the same order
    assert np.abs(dist[finite] - want_dist[finite]).max() < 1e-9
    # each cell's tile set is the same too (the infinitely far repeats fill the rest alike)
    assert all(set(a) == set(b) for a, b in zip(tiles.tolist(), want_tiles.tolist(), strict=True))


def test_brute_force_nearest_is_exact_even_among_equal_tiles() -> None:
    rng = np.random.default_rng(7)
    features = rng.normal(size=(300, 12)) * 40
    features[100:140] = features[5]  # forty copies of one tile: a crowd at one distance
    cells = np.concatenate([rng.normal(size=(500, 12)) * 40, features[[5, 5, 7]] + 1e-7])
    got = nearest_exact(features, cells, 16)
    full = np.sqrt(((cells[:, None, :] - features[None, :, :]) ** 2).sum(axis=2))
    want = np.lexsort((np.broadcast_to(np.arange(300), full.shape), full), axis=1)[:, :16]
    assert np.array_equal(got, want)
    assert np.array_equal(
        nearest_exact(features[:10], cells, 16), np.argsort(full[:, :10], axis=1, kind="stable")
    )
