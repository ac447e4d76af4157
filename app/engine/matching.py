"""Choose a tile for every cell from its nearest candidates, under optional repetition rules.

Without rules every cell simply gets its nearest tile. With rules (a cap on uses per tile, a
minimum distance between two uses of one tile, or every tile at most once) the index is asked for
each cell's ``k`` nearest tiles and a greedy pass places cells one by one, the cells that would
lose most by not getting their first choice first, each taking its nearest candidate that breaks
no rule. Cells whose ``k`` candidates are all taken are searched again among the tiles still under
the cap only (with ``k`` doubled when the distance rule blocks most of them), so the work stays
proportional to ``cells * k``.

The default rules (``min_distance`` 1 and the automatic cap, :data:`AUTO_SHARE` of the cells) and
any distance rule up to :data:`REPAIR_RADIUS` with a cap are kept together by
:func:`app.engine.spread.place_jointly`: the cap is priced (each tile's price rises while it is used
more than the cap allows) while phase sweeps keep the distance rule on distance plus price, then the
exact repair and neighbour swaps polish the result. When the cap cannot be kept among each cell's
candidates (a tight cap), they are kept in two steps instead: the capped placement without the
distance rule, then :func:`app.engine.spread.spread_out`, which moves cells off tiles that repeat
nearby onto their nearest allowed candidates, a whole phase of mutually distant cells at a time.

When there is a cap but no distance rule and the problem is small (cells x tile slots up to
:data:`EXACT_ASSIGNMENT_LIMIT`), the placement is instead the optimal one: scipy's
``linear_sum_assignment`` over ``cap`` slots per tile minimises the summed feature distance. The
greedy pass is close when the cap leaves room; at tight caps the assignment is clearly better
(docs/quality.md).

Candidates come from the library's :class:`~app.engine.index.TileIndex` (exact ``k`` nearest,
scikit-learn's KD-tree on the features' principal axes); cells left over search a subset index of
the tiles still under the cap.

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

#: Candidates first asked for per cell; doubled for the cells that run out.
FIRST_K = 16
#: Largest cells x tile-slots cost matrix solved exactly (about 0.3 s and 16 MB at the limit).
EXACT_ASSIGNMENT_LIMIT = 2_000_000
_STALLED = 0.5  # a round that places less than half its cells doubles k
#: The automatic cap (``max_uses`` left empty): no tile in more than this share of the cells ...
AUTO_SHARE = 0.02
#: ... or this share when the library has fewer than :data:`SMALL_LIBRARY` tiles.
SMALL_LIBRARY_SHARE = 0.04
SMALL_LIBRARY = 500
#: Distance rules up to this are kept by the neighbour repair (:mod:`app.engine.spread`) after a
#: capped assignment; larger ones, and libraries with no more tiles than a neighbourhood has cells,
#: by the greedy pass.
REPAIR_RADIUS = 2


@dataclass(frozen=True)
class Rules:
    """Repetition rules. ``max_uses`` ``None`` = no cap; ``min_distance`` 0 = no distance rule:
    with ``D > 0`` two cells within ``D`` cells of each other (Chebyshev distance: rows and columns
    both differ by at most ``D``) never hold the same tile; ``unique`` = each tile at most once;
    ``auto_cap`` (when ``max_uses`` is ``None``): no tile in more than :data:`AUTO_SHARE` of the
    cells (:data:`SMALL_LIBRARY_SHARE` when the library has under :data:`SMALL_LIBRARY` tiles)."""

    max_uses: int | None = None
    min_distance: int = 0
    unique: bool = False
    auto_cap: bool = False

    @property
    def active(self) -> bool:
        return self.unique or self.max_uses is not None or self.min_distance > 0 or self.auto_cap

    def wanted(self, n_cells: int, n_tiles: int) -> int | None:
        """The uses per tile the rules ask for (before any raise); ``None`` when there is no cap."""
        if self.unique:
            return 1
        if self.max_uses is not None:
            return self.max_uses
        if self.auto_cap:
            share = AUTO_SHARE if n_tiles >= SMALL_LIBRARY else SMALL_LIBRARY_SHARE
            return max(1, math.ceil(share * n_cells))
        return None

    def cap(self, n_cells: int, n_tiles: int) -> int | None:
        """The uses allowed per tile, raised to ``ceil(cells / tiles)`` when the library is too
        small for the requested cap; ``None`` when there is no cap."""
        wanted = self.wanted(n_cells, n_tiles)
        if wanted is None:
            return None
        return max(wanted, math.ceil(n_cells / n_tiles))


def raised_rules(rules: Rules, grid: NDArray[np.intp], n_tiles: int) -> list[dict[str, object]]:
    """The rules of ``rules`` that the placement ``grid`` ``(rows, cols)`` of ``n_tiles`` tiles
    could not keep, each as ``{"rule", "asked", "used", "reason", "tiles_needed"}`` (JSON-ready):
    a cap raised because the library is too small, or a minimum distance broken because there are
    too few tiles for a neighbourhood. Empty when every rule held."""
    rows, cols = grid.shape
    n_cells = rows * cols
    raised: list[dict[str, object]] = []
    wanted = rules.wanted(n_cells, n_tiles)
    if wanted is not None:
        most = int(np.bincount(grid.ravel(), minlength=n_tiles).max())
        if most > wanted:
            needed = math.ceil(n_cells / wanted)
            raised.append({
                "rule": "unique" if rules.unique else "max_uses",
                "asked": wanted,
                "used": most,
                "reason": f"{n_cells} cells with at most {wanted} use{'s' if wanted > 1 else ''} of a tile "
                f"{_automatic(rules, n_tiles)}need {needed} tiles, the library has {n_tiles}: tiles are "
                "reused as evenly as it allows",
                "tiles_needed": needed,
            })  # fmt: skip
    if rules.min_distance > 0:
        kept = closest_repeat(grid, up_to=rules.min_distance) - 1  # the distance rule the grid does keep
        if kept < rules.min_distance:
            d = rules.min_distance
            needed = min(rows, 2 * d + 1) * min(cols, 2 * d + 1)
            raised.append({
                "rule": "min_distance",
                "asked": d,
                "used": kept,
                "reason": f"keeping one tile {d} cell{'s' if d > 1 else ''} from itself needs {needed} tiles "
                f"in every neighbourhood, the library has {n_tiles} (under the cap)",
                "tiles_needed": needed,
            })  # fmt: skip
    return raised


def _automatic(rules: Rules, n_tiles: int) -> str:
    """How the reason names the automatic cap; ``""`` for a cap the user chose."""
    if rules.unique or rules.max_uses is not None or not rules.auto_cap:
        return ""
    share = AUTO_SHARE if n_tiles >= SMALL_LIBRARY else SMALL_LIBRARY_SHARE
    return f"(the automatic cap, {share:.0%} of the cells) "


def closest_repeat(grid: NDArray[np.intp], *, up_to: int | None = None) -> int:
    """The smallest Chebyshev distance between two cells of ``grid`` ``(rows, cols)`` that hold
    the same tile, looking no further than ``up_to``; ``max(rows, cols)`` (``up_to + 1`` when
    given) when no tile repeats that close."""
    rows, cols = grid.shape
    last = max(rows, cols) - 1 if up_to is None else min(up_to, max(rows, cols) - 1)
    for d in range(1, last + 1):
        for dr in range(0, d + 1):
            for dc in range(-d, d + 1):
                if max(dr, abs(dc)) != d or (dr == 0 and dc <= 0) or dr >= rows or abs(dc) >= cols:
                    continue  # not on the ring at d, counted already, or off a narrow grid
                a = grid[: rows - dr, max(0, -dc) : cols - max(0, dc)]
                b = grid[dr:, max(0, dc) : cols - max(0, -dc)]
                if (a == b).any():
                    return d
    return max(rows, cols) if up_to is None else up_to + 1


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
    candidates: tuple[NDArray[np.float64], NDArray[np.intp]] | None = None,
) -> NDArray[np.intp]:
    """A ``(rows, cols)`` grid of tile indices for ``cells`` ``(rows * cols, d)``, row by row,
    that keeps ``rules``; each cell gets the nearest tile the rules allow.

    ``candidates`` ``(distances, tiles)``, both ``(rows * cols, k)`` nearest first, replaces the
    index's first answer when the caller measures distances its own way (transparent tiles on
    each cell's colour); cells left over still search the index."""
    if not rules.active:
        if candidates is not None:
            return candidates[1][:, 0].reshape(rows, cols)
        return nearest_tiles(index, cells, rows, cols)
    n_cells, n_tiles = rows * cols, len(index)
    cap = rules.cap(n_cells, n_tiles)
    if cap is not None and cap > (1 if rules.unique else (rules.max_uses or 0)):
        log.info("library of %d tiles too small for the cap on %d cells: %d uses each", n_tiles, n_cells, cap)
    if 0 < rules.min_distance <= REPAIR_RADIUS and n_tiles > (2 * rules.min_distance + 1) ** 2:
        from app.engine.spread import REPAIR_K, place_jointly, spread_out  # here: spread imports this module

        if cap is not None:
            radius = rules.min_distance
            joint = place_jointly(index, cells, rows, cols, cap=cap, radius=radius, candidates=candidates)
            if joint is not None:
                return joint
        if candidates is None:
            index.expect(REPAIR_K + 1)  # the repair asks these cells again: one search for both
        capped = choose_tiles(
            index, cells, rows, cols, rules=Rules(max_uses=cap), first_k=first_k, candidates=candidates
        )
        return spread_out(index, cells, capped, cap=cap, radius=rules.min_distance, candidates=candidates)
    if (
        candidates is None
        and cap is not None
        and rules.min_distance == 0
        and n_cells * n_tiles * min(cap, n_cells) <= EXACT_ASSIGNMENT_LIMIT
    ):
        return assign_optimally(index.features, cells, cap=cap).reshape(rows, cols)
    placer = _Placer(rows, cols, n_tiles, cap=cap, radius=rules.min_distance)
    k = first_k
    dist, near = index.query(cells, k) if candidates is None else candidates
    pending = _priority_order(dist)
    left = placer.place(pending, near[pending])
    while left:
        pending = np.array(left, dtype=np.intp)
        free = placer.under_cap()
        k = min(k, len(free))
        _, near = index.subset(free).query(cells[pending], k)
        left = placer.place(pending, near)
        if len(left) == len(pending) and k >= len(free):  # no rule-abiding tile anywhere
            placer.place_least_used(np.array(left, dtype=np.intp))
            break
        if len(left) > _STALLED * len(pending):  # mostly blocked by the distance rule: look further
            k *= 2
    return placer.grid


def assign_optimally(
    features: NDArray[np.floating], cells: NDArray[np.floating], *, cap: int
) -> NDArray[np.intp]:
    """The placement ``(n_cells,)`` with no tile used more than ``cap`` times that minimises the
    summed distance between ``cells`` ``(n_cells, d)`` and their tiles' ``features``
    ``(n_tiles, d)``; needs ``cap * n_tiles >= n_cells``."""
    from scipy.optimize import linear_sum_assignment  # imported here: a quarter second, caps only

    tiles = np.asarray(features, dtype=np.float64)
    points = np.asarray(cells, dtype=np.float64)
    slots = min(cap, len(points))
    squared = (points**2).sum(1)[:, None] + (tiles**2).sum(1)[None, :] - 2.0 * points @ tiles.T
    cost = np.sqrt(np.maximum(squared, 0.0))  # (n_cells, n_tiles), no (cells, tiles, d) temporary
    rows, cols = linear_sum_assignment(np.repeat(cost, slots, axis=1))
    placed = np.empty(len(points), dtype=np.intp)
    placed[rows] = cols // slots
    return placed


def _priority_order(dist: NDArray[np.float64]) -> NDArray[np.intp]:
    """Cells ordered by what they lose if they cannot have their nearest tile (the gap between
    their first and last finite candidate: candidates of the caller's own measure may end in
    infinite distances), largest loss first; ties broken by position."""
    finite = np.isfinite(dist)
    last = np.where(finite, dist, -np.inf).max(axis=1)
    regret = np.where(finite.any(axis=1), last - dist[:, 0], 0.0)
    return np.argsort(-regret, kind="stable").astype(np.intp)


class _Placer:
    """The greedy pass: places cells in the given order, keeping count of uses per tile."""

    def __init__(self, rows: int, cols: int, n_tiles: int, *, cap: int | None, radius: int) -> None:
        self.grid = np.full((rows, cols), -1, dtype=np.intp)
        self.cols = cols
        self.uses = [0] * n_tiles
        self.cap = cap if cap is not None else n_tiles * rows * cols + 1
        self.radius = radius

    def under_cap(self) -> NDArray[np.intp]:
        """The tiles that may still be placed."""
        return np.flatnonzero(np.asarray(self.uses) < self.cap)

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
