"""Repetition rules: caps, minimum distance and unique placement are kept, and no cell is left empty."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from app.engine import MosaicParams, TileIndex, TileSet, make_mosaic
from app.engine.matching import Rules, choose_tiles, raised_rules
from tests.conftest import cell_error, read_image


@pytest.fixture(scope="module")
def library(photo_tiles: list[Path]) -> TileSet:
    return TileSet.from_paths(photo_tiles, size=(8, 8))


def closest_repeat(grid: NDArray[np.intp]) -> int:
    """The smallest Chebyshev distance between two cells holding the same tile (a large number
    when no tile repeats)."""
    rows, cols = grid.shape
    for d in range(1, max(rows, cols)):
        for dr in range(0, d + 1):
            for dc in range(-d, d + 1):
                if max(abs(dr), abs(dc)) != d or (dr == 0 and dc <= 0):
                    continue
                a = grid[max(0, -dr) : rows - max(0, dr), max(0, -dc) : cols - max(0, dc)]
                b = grid[max(0, dr) : rows - max(0, -dr), max(0, dc) : cols - max(0, -dc)]
                if (a == b).any():
                    return d
    return max(rows, cols)


def test_max_uses_caps_every_tile(corpus: Path, library: TileSet) -> None:
    cover = corpus / "covers" / "mate-LadyBird.jpg"
    free = make_mosaic(cover, library, MosaicParams(cols=40, tile_size=8))
    capped = make_mosaic(cover, library, MosaicParams(cols=40, tile_size=8, max_uses=6))
    assert np.bincount(free.grid.ravel()).max() > 6, "the cap would not bind on this cover"
    assert np.bincount(capped.grid.ravel()).max() <= 6
    assert capped.quality["max_uses"] <= 6
    assert capped.quality["distinct_tiles"] > free.quality["distinct_tiles"]
    # The cap costs colour fidelity but the mosaic still resembles its cover.
    image = read_image(cover, "RGB")
    assert cell_error(image, capped.image, 40, capped.rows) < 2.5 * cell_error(
        image, free.image, 40, free.rows
    )


@pytest.mark.parametrize("distance", [1, 3])
def test_min_distance_keeps_uses_of_a_tile_apart(corpus: Path, library: TileSet, distance: int) -> None:
    params = MosaicParams(cols=40, tile_size=8, min_distance=distance)
    result = make_mosaic(corpus / "covers" / "mate-Dune.jpg", library, params)
    assert closest_repeat(result.grid) > distance
    assert result.quality["adjacent_same"] == 0.0


def test_unique_uses_every_tile_at_most_once_when_the_library_suffices(
    corpus: Path, library: TileSet
) -> None:
    result = make_mosaic(corpus / "covers" / "mate-Aqua.jpg", library, MosaicParams(cols=20, unique=True))
    assert result.grid.size <= len(library)
    assert len(np.unique(result.grid)) == result.grid.size


def test_unique_with_too_few_tiles_reuses_evenly_and_fills_every_cell() -> None:
    rng = np.random.default_rng(5)
    feats = rng.random((7, 3)) * 100
    cells = rng.random((5 * 6, 3)) * 100
    grid = choose_tiles(TileIndex(feats), cells, 5, 6, rules=Rules(unique=True, min_distance=1))
    counts = np.bincount(grid.ravel(), minlength=7)
    assert (grid >= 0).all()
    assert counts.max() == 5  # ceil(30 cells / 7 tiles)


def test_impossible_distance_still_fills_every_cell() -> None:
    """Two tiles cannot keep every 3x3 neighbourhood free of repeats: the least-used tile fills in."""
    grid = choose_tiles(
        TileIndex(np.array([[0.0], [1.0]])), np.zeros((16, 1)), 4, 4, rules=Rules(min_distance=1)
    )
    assert set(grid.ravel().tolist()) == {0, 1}
    assert abs(int((grid == 0).sum()) - int((grid == 1).sum())) <= 1


def test_rules_choose_the_nearest_allowed_tile() -> None:
    """Tiles 0..9 on a line, every cell at 0: with a cap of 2 the cells get 0, 0, 1, 1, 2, 2."""
    index = TileIndex(np.arange(10, dtype=float)[:, None])
    grid = choose_tiles(index, np.zeros((6, 1)), 1, 6, rules=Rules(max_uses=2), first_k=2)
    assert sorted(grid.ravel().tolist()) == [0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize(
    ("field", "params"),
    [
        ("max_uses", MosaicParams(max_uses=0)),
        ("min_distance", MosaicParams(min_distance=-1)),
        ("min_distance", MosaicParams(min_distance=21)),
        ("tint", MosaicParams(tint=101)),
        ("tint", MosaicParams(tint=-1)),
        ("unique", MosaicParams(unique="yes")),  # type: ignore[arg-type]
    ],
)
def test_bad_repetition_and_tint_parameters_name_the_field(field: str, params: MosaicParams) -> None:
    from app.engine import BadParameter

    with pytest.raises(BadParameter) as info:
        params.validate()
    assert info.value.field == field


def test_rules_raised_names_what_a_small_library_could_not_keep() -> None:
    index = TileIndex(np.array([[0.0], [1.0], [2.0]]))
    rules = Rules(max_uses=2, min_distance=1)
    grid = choose_tiles(index, np.zeros((16, 1)), 4, 4, rules=rules)
    raised = {r["rule"]: r for r in raised_rules(rules, grid, 3)}
    assert set(raised) == {"max_uses", "min_distance"}
    assert raised["max_uses"]["asked"] == 2 and raised["max_uses"]["used"] == np.bincount(grid.ravel()).max()
    assert raised["max_uses"]["tiles_needed"] == 8
    assert raised["min_distance"]["asked"] == 1 and raised["min_distance"]["used"] == 0
    assert raised["min_distance"]["tiles_needed"] == 9
    enough = TileIndex(np.arange(20.0)[:, None])
    kept = choose_tiles(enough, np.zeros((16, 1)), 4, 4, rules=rules)
    assert raised_rules(rules, kept, 20) == []


def test_closest_repeat_on_grids_narrower_than_the_distance() -> None:
    """The engine's repeat measure agrees with a brute-force pairwise look on wide, tall and
    tiny grids, also when the distance asked for is larger than the grid (no crash)."""
    from app.engine.matching import closest_repeat as engine_closest_repeat

    rng = np.random.default_rng(7)
    for shape in [(1, 9), (9, 1), (3, 11), (11, 7), (2, 2), (1, 1)]:
        grid = rng.integers(0, 6, size=shape)
        cells = [(r, c) for r in range(shape[0]) for c in range(shape[1])]
        dists = [
            max(abs(r1 - r2), abs(c1 - c2))
            for i, (r1, c1) in enumerate(cells)
            for (r2, c2) in cells[i + 1 :]
            if grid[r1, c1] == grid[r2, c2]
        ]
        brute = min(dists) if dists else max(shape)
        assert engine_closest_repeat(grid) == brute
        assert engine_closest_repeat(grid, up_to=20) == (brute if dists else 21)
