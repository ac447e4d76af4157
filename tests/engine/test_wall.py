"""The default mosaic is a wall of photos: no tile next to itself (diagonals too), no tile in more
than 2 % of the cells (4 % with a library under 500 tiles), and the cover still shows."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image

from app.engine import MosaicParams, TileIndex, TileSet, make_mosaic
from app.engine.features import cover_features
from app.engine.matching import Rules, _priority_order, choose_tiles
from app.engine.mosaic import build_index
from app.engine.render import stitch
from app.engine.spread import _swap_pairs, place_jointly, placement_cost, spread_out
from tests.conftest import cell_error, read_image


@pytest.fixture(scope="module")
def library(photo_tiles: list[Path]) -> TileSet:
    return TileSet.from_paths(photo_tiles, size=(8, 8))


def same_neighbours(grid: NDArray[np.intp]) -> int:
    """Pairs of cells, horizontally, vertically or diagonally adjacent, holding the same tile."""
    rows, cols = grid.shape
    pairs = 0
    for r in range(rows):
        for c in range(cols):
            for dr, dc in ((0, 1), (1, -1), (1, 0), (1, 1)):
                rr, cc = r + dr, c + dc
                if 0 <= rr < rows and 0 <= cc < cols and grid[r, c] == grid[rr, cc]:
                    pairs += 1
    return pairs


def test_default_keeps_every_tile_away_from_itself_and_under_4_percent(
    corpus: Path, library: TileSet
) -> None:
    cover = corpus / "covers" / "mate-LadyBird.jpg"
    result = make_mosaic(cover, library, MosaicParams(cols=60, tile_size=8))
    grid = result.grid
    assert same_neighbours(grid) == 0
    assert np.bincount(grid.ravel()).max() <= math.ceil(0.04 * grid.size)  # 300 tiles: under 500
    assert result.rules_raised == []
    assert result.quality["adjacent_same"] == 0
    # Nearest-first would put one flat crop in a third of the cells; the wall spreads over many.
    free = make_mosaic(cover, library, MosaicParams(cols=60, tile_size=8, max_uses=0, min_distance=0))
    assert np.bincount(free.grid.ravel()).max() > math.ceil(0.04 * grid.size)
    assert len(np.unique(grid)) > len(np.unique(free.grid))
    # The cover still shows: far closer than the same tiles dealt out at random.
    picture = read_image(cover)
    shuffled = np.random.default_rng(0).permutation(grid.ravel()).reshape(grid.shape)
    random_wall = stitch(library.resized((8, 8), np.arange(len(library))), shuffled)
    assert cell_error(picture, result.image, result.cols, result.rows) < 0.6 * cell_error(
        picture, random_wall, result.cols, result.rows
    )


def test_a_library_of_500_or_more_keeps_each_tile_under_2_percent(corpus: Path, library: TileSet) -> None:
    images = np.concatenate([library.images, library.images[:, :, ::-1]])  # mirrored: 600 tiles
    big = TileSet(images, [*library.names, *(f"{n} (mirrored)" for n in library.names)])
    result = make_mosaic(corpus / "covers" / "mate-FreshFlower.jpg", big, MosaicParams(cols=60, tile_size=8))
    assert len(big) >= 500
    assert np.bincount(result.grid.ravel()).max() <= math.ceil(0.02 * result.grid.size)
    assert same_neighbours(result.grid) == 0
    assert result.rules_raised == []


def test_a_too_small_library_spreads_as_evenly_as_it_allows_and_says_so(
    corpus: Path, library: TileSet
) -> None:
    small = TileSet(library.images[:20], list(library.names[:20]))
    result = make_mosaic(corpus / "covers" / "mate-Aqua.jpg", small, MosaicParams(cols=30, tile_size=8))
    cells = result.grid.size
    counts = np.bincount(result.grid.ravel(), minlength=20)
    assert counts.max() == math.ceil(cells / 20) > math.ceil(0.04 * cells)
    assert same_neighbours(result.grid) == 0
    [raised] = result.rules_raised
    assert raised["rule"] == "max_uses" and raised["asked"] == math.ceil(0.04 * cells)
    assert raised["used"] == counts.max() and "automatic" in str(raised["reason"])


def test_a_flat_region_gets_the_four_nearest_tiles_in_a_pattern() -> None:
    """Tiles 0..29 on a line, every cell at 0: the cheapest repeat-free wall uses tiles 0-3."""
    index = TileIndex(np.arange(30, dtype=float)[:, None])
    cells = np.zeros((6 * 8, 1))
    grid = choose_tiles(index, cells, 6, 8, rules=Rules(min_distance=1))
    assert same_neighbours(grid) == 0
    assert set(grid.ravel().tolist()) == {0, 1, 2, 3}


def test_the_repair_keeps_the_cap_and_the_wider_distance() -> None:
    rng = np.random.default_rng(3)
    index = TileIndex(rng.random((60, 6)))
    cells = np.repeat(rng.random((1, 6)), 20 * 20, axis=0) + rng.normal(0, 0.02, (400, 6))
    capped = choose_tiles(index, cells, 20, 20, rules=Rules(max_uses=16))
    grid = spread_out(index, cells, capped, cap=16, radius=2)
    assert np.bincount(grid.ravel()).max() <= 16
    for dr in range(-2, 3):
        for dc in range(-2, 3):
            if (dr, dc) > (0, 0):
                a = grid[max(0, -dr) : 20 - max(0, dr), max(0, -dc) : 20 - max(0, dc)]
                b = grid[max(0, dr) : 20 - max(0, -dr), max(0, dc) : 20 - max(0, -dc)]
                assert not (a == b).any(), (dr, dc)


def test_max_uses_0_and_min_distance_0_give_every_cell_its_nearest_tile(
    corpus: Path, library: TileSet
) -> None:
    params = MosaicParams(cols=30, tile_size=8, max_uses=0, min_distance=0)
    result = make_mosaic(corpus / "covers" / "mate-Storm.jpg", library, params)
    assert not params.rules.active
    assert result.rules_raised == []


def keeps_the_rules(grid: NDArray[np.intp], cap: int) -> bool:
    return same_neighbours(grid) == 0 and int(np.bincount(grid.ravel()).max()) <= cap


def test_the_joint_placement_costs_less_than_the_cap_then_the_repair(corpus: Path, library: TileSet) -> None:
    """On a real cover whose favourite tile is wanted by a third of the cells, pricing the cap
    while keeping the neighbour rule places closer tiles than capping first and repairing after."""
    params = MosaicParams(cols=60, tile_size=8)
    with Image.open(corpus / "covers" / "mate-LadyBird.jpg") as opened:
        image = opened.convert("RGB")
    rows = params.rows_for(image.width, image.height)
    index = build_index(library, params)
    cells = cover_features(image, 60, rows, color_space="lab", grid=4)
    cap = params.rules.cap(rows * 60, len(library))
    assert cap is not None
    joint = place_jointly(index, cells, rows, 60, cap=cap)
    assert joint is not None
    capped = choose_tiles(index, cells, rows, 60, rules=Rules(max_uses=cap))
    two_step = spread_out(index, cells, capped, cap=cap)
    assert keeps_the_rules(joint, cap) and keeps_the_rules(two_step, cap)

    def cost(grid: NDArray[np.intp]) -> float:
        return float(np.linalg.norm(cells - index.features[grid.ravel()], axis=1).mean())

    assert cost(joint) < 0.99 * cost(two_step)
    assert np.array_equal(choose_tiles(index, cells, rows, 60, rules=params.rules), joint)


def test_neighbour_swaps_lower_the_cost_and_keep_uses_and_the_rule() -> None:
    rng = np.random.default_rng(5)
    rows, cols, n_tiles = 12, 15, 40
    features = rng.random((n_tiles, 3))
    cells = rng.random((rows * cols, 3))
    grid = (np.arange(rows)[:, None] * 7 + np.arange(cols)[None, :] * 3) % n_tiles  # no repeats nearby
    assert same_neighbours(grid) == 0
    before_uses = np.bincount(grid.ravel(), minlength=n_tiles)

    def cost_of(who: NDArray[np.intp], tile: NDArray[np.intp]) -> NDArray[np.float64]:
        return np.asarray(np.linalg.norm(cells[who] - features[tile], axis=1))

    before = cost_of(np.arange(grid.size), grid.ravel()).sum()
    moved = _swap_pairs(grid, cost_of, 1)
    assert moved > 0
    assert cost_of(np.arange(grid.size), grid.ravel()).sum() < before
    assert np.array_equal(np.bincount(grid.ravel(), minlength=n_tiles), before_uses)
    assert same_neighbours(grid) == 0


def test_a_cap_the_joint_placement_cannot_keep_is_refused_and_a_tight_one_is_kept() -> None:
    """Ten tiles on a line, a hundred identical cells: nine uses each cannot hold them, so the joint
    placement says so (and choose_tiles then uses the two-step one); ten uses each must use every
    tile exactly ten times, which the joint placement does with the neighbour rule."""
    index = TileIndex(np.arange(10, dtype=float)[:, None])
    cells = np.zeros((100, 1))
    assert place_jointly(index, cells, 10, 10, cap=9, k=4) is None
    tight = place_jointly(index, cells, 10, 10, cap=10, k=4)
    assert tight is not None and keeps_the_rules(tight, 10)
    assert np.bincount(tight.ravel()).tolist() == [10] * 10
    grid = choose_tiles(index, cells, 10, 10, rules=Rules(max_uses=10, min_distance=1))
    assert keeps_the_rules(grid, 10)


def test_the_placement_cost_counts_an_error_in_one_sub_cell_less_than_one_spread_over_all() -> None:
    """view_de is a mean of sub-cell errors: a tile off by 8 in one of 16 sub-cells looks closer
    than one off by 2 in every sub-cell, though both are 8 away as whole feature vectors."""
    cell = np.zeros(48)
    one_off, all_off = np.zeros(48), np.full(48, 2.0 / np.sqrt(3))
    one_off[:3] = 8.0 / np.sqrt(3)
    assert np.linalg.norm(one_off) == pytest.approx(np.linalg.norm(all_off)) == pytest.approx(8.0)
    assert placement_cost(cell, all_off) == pytest.approx(8.0)
    assert placement_cost(cell, one_off) < 0.7 * placement_cost(cell, all_off)


def test_the_greedy_order_ranks_cells_by_their_loss_to_the_last_finite_candidate() -> None:
    """Candidates measured on each cell's colour may end in infinite distances (fewer distinct
    tiles than kept); the cell that loses most is still placed first."""
    inf = np.inf
    dist = np.array([[0.0, 1.0, inf], [0.0, 5.0, inf], [0.0, 3.0, 4.0], [0.0, inf, inf]])
    assert _priority_order(dist).tolist() == [1, 2, 0, 3]
