"""Choose a tile for every cell from its nearest candidates, under optional repetition rules.

Without rules every cell simply gets its nearest tile. With rules (a cap on uses per tile, a
minimum distance between two uses of one tile, or every tile at most once) the index is asked for
each cell's ``k`` nearest tiles and a greedy pass places cells one by one, the cells that would
lose most by not getting their first choice first, each taking its nearest candidate that breaks
no rule. Cells whose ``k`` candidates are all used up are queried again with ``k`` four times
larger, up to the whole library, so the work stays proportional to ``cells * k``.

When the library is too small for the rules (``unique`` or ``max_uses`` with fewer tile slots than
cells), the cap is raised to the smallest that fits, ``ceil(cells / tiles)``, so tiles are reused
as evenly as the library allows; when the minimum distance cannot be kept (too few tiles for a
neighbourhood) a cell takes the least-used tile under the cap. No cell is ever left empty.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from app.engine.index import TileIndex

log = logging.getLogger(__name__)

#: Candidates first asked for per cell; widened four-fold for the cells that run out.
FIRST_K = 16
_WIDEN = 4


@dataclass(frozen=True)
class Rules:
    """Repetition rules. ``max_uses`` ``None`` = no cap; ``min_distance`` 0 = no distance rule:
    with ``D > 0`` two cells within ``D`` cells of each other (Chebyshev distance: rows and columns
    both differ by at most ``D``) never hold the same tile; ``unique`` = each tile at most once."""

    max_uses: int | None = None
    min_distance: int = 0
    unique: bool = False

    @property
    def active(self) -> bool:
        return self.unique or self.max_uses is not None or self.min_distance > 0

    def cap(self, n_cells: int, n_tiles: int) -> int | None:
        """The uses allowed per tile, raised to ``ceil(cells / tiles)`` when the library is too
        small for the requested cap; ``None`` when there is no cap."""
        wanted = 1 if self.unique else self.max_uses
        if wanted is None:
            return None
        return max(wanted, math.ceil(n_cells / n_tiles))


def nearest_tiles(index: TileIndex, cells: NDArray[np.floating], rows: int, cols: int) -> NDArray[np.intp]:
    """Each cell's single nearest tile, as a ``(rows, cols)`` grid of tile indices."""
    _, idx = index.query(cells, k=1)
    return idx[:, 0].reshape(rows, cols)


def choose_tiles(
    index: TileIndex,
    cells: NDArray[np.floating],
    rows: int,
    cols: int,
    *,
    rules: Rules = Rules(),
    first_k: int = FIRST_K,
) -> NDArray[np.intp]:
    """A ``(rows, cols)`` grid of tile indices for ``cells`` ``(rows * cols, d)``, row by row,
    that keeps ``rules``; each cell gets the nearest tile the rules allow."""
    if not rules.active:
        return nearest_tiles(index, cells, rows, cols)
    n_cells, n_tiles = rows * cols, len(index)
    cap = rules.cap(n_cells, n_tiles)
    if cap is not None and cap > (1 if rules.unique else (rules.max_uses or 0)):
        log.info("library of %d tiles too small for the cap on %d cells: %d uses each", n_tiles, n_cells, cap)
    placer = _Placer(rows, cols, n_tiles, cap=cap, radius=rules.min_distance)
    k = min(first_k, n_tiles)
    dist, cand = index.query(cells, k)
    pending = _priority_order(dist)
    while len(pending):
        left = placer.place(pending, cand[pending])
        if not left:
            break
        pending = np.array(left, dtype=np.intp)
        if k >= n_tiles:  # no rule-abiding tile anywhere: the least-used one
            placer.place_least_used(pending)
            break
        k = min(k * _WIDEN, n_tiles)
        _, wider = index.query(cells[pending], k)
        cand = np.zeros((n_cells, k), dtype=np.intp)
        cand[pending] = wider
    return placer.grid


def _priority_order(dist: NDArray[np.float64]) -> NDArray[np.intp]:
    """Cells ordered by what they lose if they cannot have their nearest tile (the gap between
    their first and last candidate), largest loss first; ties broken by position."""
    regret = dist[:, -1] - dist[:, 0]
    return np.argsort(-regret, kind="stable").astype(np.intp)


class _Placer:
    """The greedy pass: places cells in the given order, keeping count of uses per tile."""

    def __init__(self, rows: int, cols: int, n_tiles: int, *, cap: int | None, radius: int) -> None:
        self.grid = np.full((rows, cols), -1, dtype=np.intp)
        self.cols = cols
        self.uses = [0] * n_tiles
        self.cap = cap if cap is not None else n_tiles * rows * cols + 1
        self.radius = radius

    def _nearby(self, cell: int) -> set[int]:
        """Tiles already placed within ``radius`` of ``cell``."""
        if self.radius == 0:
            return set()
        r, c, d = cell // self.cols, cell % self.cols, self.radius
        return set(self.grid[max(0, r - d) : r + d + 1, max(0, c - d) : c + d + 1].ravel().tolist())

    def place(self, order: NDArray[np.intp], candidates: NDArray[np.intp]) -> list[int]:
        """Place each cell of ``order`` on its first allowed tile among ``candidates``
        ``(len(order), k)``; returns the cells for which none was allowed."""
        uses, cap, flat = self.uses, self.cap, self.grid.reshape(-1)
        left: list[int] = []
        for cell, options in zip(order.tolist(), candidates.tolist(), strict=True):
            nearby = self._nearby(cell)
            for tile in options:
                if uses[tile] < cap and tile not in nearby:
                    flat[cell] = tile
                    uses[tile] += 1
                    break
            else:
                left.append(cell)
        return left

    def place_least_used(self, cells: NDArray[np.intp]) -> None:
        """Last resort for cells no rule-abiding tile is left for: the least-used tile, keeping
        the cap if any tile is under it and the distance rule if any such tile is not nearby."""
        flat = self.grid.reshape(-1)
        for cell in cells.tolist():
            nearby = self._nearby(cell)
            tile = min(
                range(len(self.uses)),
                key=lambda t: (self.uses[t] >= self.cap, t in nearby, self.uses[t]),
            )
            flat[cell] = tile
            self.uses[tile] += 1
