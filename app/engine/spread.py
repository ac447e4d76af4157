"""Keep one tile away from itself, at the least colour cost: the neighbour-repair pass.

A placement that keeps a cap (:func:`app.engine.matching.choose_tiles` with ``min_distance`` 0)
is repaired so that no two cells within ``radius`` of each other (Chebyshev distance) hold the same
tile. Cells are split into ``(radius + 1) ** 2`` phases by row and column modulo ``radius + 1``;
two cells of one phase are never within ``radius`` of each other, so a whole phase is updated at
once with numpy: each of its cells takes, among its ``k`` nearest tiles (and its current one), the
nearest that no cell of its neighbourhood holds and that is still under the cap. A cell keeps its
tile unless that tile repeats nearby or another is nearer. Sweeps repeat until nothing moves.

Each phase update only lowers the summed distance of the cells that do not conflict, and removes
conflicts where any allowed candidate is left, so the pass settles in a few sweeps. In a flat
region (a sky) whose nearest tile is A, the result is the 2 x 2 pattern of the four nearest tiles,
the cheapest pattern that keeps the rule. Cells still in conflict after the sweeps (all their
candidates blocked: a tight cap or a small library) search every tile; if none is allowed they
keep their tile, and :func:`app.engine.matching.raised_rules` reports the broken distance.

:func:`place_jointly` keeps a cap and the distance rule together: the same sweeps run on each
cell's distance plus a price per tile, the prices of over-used tiles rise round by round (a
Lagrangian relaxation of the cap), the few cells still over the cap move, and the repair then
alternates with swaps of tiles between neighbouring cells (:func:`_swap_pairs`), which keep every
tile's uses and so the cap.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from app.engine.index import TileIndex

#: Candidates per cell for the repair (the 8 neighbours can block at most 8 of them at radius 1).
REPAIR_K = 24
_SWEEPS = 12
#: Candidates per cell for the joint placement (:func:`place_jointly`) and its price rounds.
JOINT_K = 24
PRICE_ROUNDS = 15
#: Share of the joint placement's cost measured block by block (:func:`placement_cost`); 0 is
#: the plain feature distance. 0.5 won 3 more comparisons with the peers and lost none
#: (docs/quality.md): view_de lower on every cover, ssim4 a little higher.
BLOCK_SHARE = 0.5
_CHUNK = 256  # cells per block-cost chunk (256 x 24 candidates x 48 numbers: 2.4 MB, in cache)
#: Rounds of the repair and the neighbour swaps after the joint placement, and swap passes in each.
SWAP_CYCLES = 2
_SWAP_ROUNDS = 3
#: The offsets of the cells a cell may swap with (the other half of its neighbourhood is symmetric).
_SWAP_DIRECTIONS = ((0, 1), (1, 0), (1, 1), (1, -1))


def spread_out(
    index: TileIndex,
    cells: NDArray[np.floating],
    grid: NDArray[np.intp],
    *,
    cap: int | None,
    radius: int = 1,
    k: int = REPAIR_K,
    candidates: tuple[NDArray[np.float64], NDArray[np.intp]] | None = None,
) -> NDArray[np.intp]:
    """``grid`` ``(rows, cols)`` repaired so that no tile repeats within ``radius`` cells, no tile
    is used more than ``cap`` times (when the grid already keeps the cap), and the summed feature
    distance to ``cells`` ``(rows * cols, d)`` stays as low as the rule allows.

    ``candidates`` ``(distances, tiles)`` ``(rows * cols, k)``, nearest first, replaces the index's
    answer when the caller measures distances its own way (transparent tiles on each cell's
    colour); a cell's tile outside its candidates then costs its distance in the index."""
    rows, cols = grid.shape
    n_tiles = len(index)
    features = np.asarray(index.features, dtype=np.float64)
    points = np.asarray(cells, dtype=np.float64)
    dist, cand = index.query(points, min(k + 1, n_tiles)) if candidates is None else candidates
    tiles = grid.ravel().astype(np.intp).copy()
    cost = np.linalg.norm(points - features[tiles], axis=1)
    listed = cand == tiles[:, None]
    has = listed.any(axis=1)
    cost[has] = dist[has, listed[has].argmax(axis=1)]
    uses = np.bincount(tiles, minlength=n_tiles)
    limit = max(cap if cap is not None else len(tiles), int(uses.max()))
    _sweep(tiles, cost, cand, dist, rows, cols, radius, uses=uses, limit=limit)
    _last_resort(tiles, cost, points, features, uses, limit, rows, cols, radius)
    return tiles.reshape(rows, cols)


def place_jointly(
    index: TileIndex,
    cells: NDArray[np.floating],
    rows: int,
    cols: int,
    *,
    cap: int,
    radius: int = 1,
    k: int = JOINT_K,
    candidates: tuple[NDArray[np.float64], NDArray[np.intp]] | None = None,
) -> NDArray[np.intp] | None:
    """A ``(rows, cols)`` placement that keeps the cap and the distance rule together, or
    ``None`` when the cap could not be kept among each cell's ``k`` candidates (the caller then
    places with the cap first and repairs after).

    The cap is priced rather than enforced (a Lagrangian relaxation): each tile has a price,
    every cell's cost of a tile is its distance plus that price, and the phase sweeps keep the
    distance rule on those costs. After each round the price of a tile used more than ``cap``
    times goes up, and that of one used less goes down (never below 0), by a step that shrinks
    round by round, so the cells that lose least by leaving a wanted tile are the ones that leave
    it, and they leave it for tiles that are not wanted nearby. The remaining excess moves
    (cheapest loss first) to allowed candidates, and :func:`spread_out` polishes on the plain
    distances under the exact cap."""
    n_tiles = len(index)
    features = np.asarray(index.features, dtype=np.float64)
    points = np.asarray(cells, dtype=np.float64)
    if candidates is None:
        _, cand = index.query(points, min(k, n_tiles))
        dist = np.concatenate([
            placement_cost(points[s : s + _CHUNK, None, :], features[cand[s : s + _CHUNK]])
            for s in range(0, len(points), _CHUNK)
        ])  # fmt: skip
        order = np.argsort(dist, axis=1, kind="stable")
        dist, cand = np.take_along_axis(dist, order, 1), np.take_along_axis(cand, order, 1)
    else:
        dist, cand = np.asarray(candidates[0], dtype=np.float64), candidates[1]
    step = 2.0 * float(np.median(dist[:, 1] - dist[:, 0])) + 1e-9 if dist.shape[1] > 1 else 1.0
    prices = np.zeros(n_tiles)
    tiles = cand[:, 0].copy()
    dirty = None  # every cell is weighed in the first round; later, those whose costs changed
    for round_ in range(PRICE_ROUNDS):
        table = dist + prices[cand]
        cost = np.where(cand == tiles[:, None], table, np.inf).min(axis=1)
        dirty = _sweep(tiles, cost, cand, table, rows, cols, radius, dirty=dirty)
        uses = np.bincount(tiles, minlength=n_tiles)
        updated = np.maximum(0.0, prices + step / np.sqrt(1 + round_) * (uses - cap) / cap)
        dirty |= (updated != prices)[cand].any(axis=1)
        prices = updated
    table = dist + prices[cand]
    if not _move_excess(tiles, cand, table, rows, cols, radius, cap, features, points):
        return None

    def cost_of(who: NDArray[np.intp], tile: NDArray[np.intp]) -> NDArray[np.float64]:
        """Costs of cells ``who`` for tiles ``tile``: the listed ones, else (candidates of the
        caller's own measure) infinite, else :func:`placement_cost`."""
        listed = cand[who] == tile[:, None]
        found = np.where(listed, dist[who], np.inf).min(axis=1)
        if candidates is None:
            unlisted = ~listed.any(axis=1)
            found[unlisted] = placement_cost(points[who[unlisted]], features[tile[unlisted]])
        return found

    grid = tiles.reshape(rows, cols)
    for _ in range(SWAP_CYCLES):
        grid = spread_out(index, cells, grid, cap=cap, radius=radius, candidates=(dist, cand))
        if not _swap_pairs(grid, cost_of, radius):
            break
    return grid


def placement_cost(points: NDArray[np.float64], tiles: NDArray[np.float64]) -> NDArray[np.float64]:
    """The cost the joint placement gives feature vectors ``tiles`` for cells ``points`` (same
    shape ``(..., d)``, 3 numbers per sub-cell block; one block when ``d`` is no multiple of 3):
    :data:`BLOCK_SHARE` of it is the mean of the blocks' own distances (scaled by the square root
    of the block count, so that an error spread evenly over the blocks costs the same both ways),
    the rest the whole vector's distance. The blocks' mean is how ``view_de`` adds up its sub-cell
    errors; the whole distance is what the feature weights were chosen on (ssim4 likes it
    better)."""
    diff = points - tiles
    per_block = 3 if diff.shape[-1] % 3 == 0 else diff.shape[-1]  # other features: one block
    split = diff.reshape(*diff.shape[:-1], diff.shape[-1] // per_block, per_block)
    blocks = np.sqrt(np.einsum("...j,...j->...", split, split))  # (..., n_blocks)
    whole = np.sqrt(np.einsum("...j,...j->...", blocks, blocks))
    spread = blocks.sum(axis=-1) / np.sqrt(blocks.shape[-1])
    return np.asarray((1.0 - BLOCK_SHARE) * whole + BLOCK_SHARE * spread)


def _swap_pairs(grid: NDArray[np.intp], cost_of: Callable[..., NDArray[np.float64]], radius: int) -> int:
    """Neighbouring cells swap tiles where that lowers their summed cost and repeats no tile
    within ``radius``; in place, a whole set of mutually distant pairs at a time, for each of
    the four directions. Swaps keep every tile's uses, so the cap holds. How many cells moved.

    A pair is weighed again only when one of its cells has changed tile since the pair was last
    weighed, or when its swap would have paid but repeated a tile nearby (the neighbourhood may
    have changed since): the gain of a pair depends on its two tiles alone."""
    rows, cols = grid.shape
    tiles = grid.reshape(-1)
    span = cols + 2 * radius
    padded = np.pad(grid, radius, constant_values=-1).ravel()
    now = cost_of(np.arange(len(tiles)), tiles)  # each cell's cost of its own tile
    changed = np.zeros(len(tiles), dtype=np.int64)  # the step at which a cell last changed tile
    groups = []
    for dr, dc in _SWAP_DIRECTIONS:
        step_r, step_c = abs(dr) + 1 + radius, abs(dc) + 1 + radius  # pairs this far apart never interact
        for pr in range(step_r):
            for pc in range(step_c):
                r = np.repeat(np.arange(pr, rows, step_r), len(range(pc, cols, step_c)))
                c = np.tile(np.arange(pc, cols, step_c), len(range(pr, rows, step_r)))
                r2, c2 = r + dr, c + dc
                inside = (r2 < rows) & (c2 >= 0) & (c2 < cols)
                r, c, r2, c2 = r[inside], c[inside], r2[inside], c2[inside]
                i, j = r * cols + c, r2 * cols + c2
                at_i, at_j = (r + radius) * span + c + radius, (r2 + radius) * span + c2 + radius
                # a neighbour of i other than j must not get b, one of j other than i not a
                near_i, near_j = _ring(radius, span, but=(dr, dc)), _ring(radius, span, but=(-dr, -dc))
                groups.append((i, j, at_i, at_j, near_i, near_j))
    weighed = [-1] * len(groups)  # the step at which each group was last weighed
    pending = [np.ones(len(g[0]), dtype=bool) for g in groups]  # pairs to weigh whatever changed
    moved = 0
    clock = 0
    for _ in range(_SWAP_ROUNDS):
        before = moved
        for g, (i, j, at_i, at_j, near_i, near_j) in enumerate(groups):
            clock += 1
            weigh = pending[g] | (changed[i] > weighed[g]) | (changed[j] > weighed[g])
            weighed[g] = clock
            pending[g][:] = False
            if not weigh.any():
                continue
            sel = np.flatnonzero(weigh)
            i_, j_ = i[sel], j[sel]
            a, b = tiles[i_], tiles[j_]
            i_b, j_a = cost_of(i_, b), cost_of(j_, a)
            gain = now[i_] + now[j_] - i_b - j_a
            better = (gain > 1e-9) & (a != b)
            if not better.any():
                continue
            sel, i_, j_, a, b = sel[better], i_[better], j_[better], a[better], b[better]
            i_b, j_a = i_b[better], j_a[better]
            clash = (padded[at_i[sel][:, None] + near_i[None, :]] == b[:, None]).any(axis=1)
            clash |= (padded[at_j[sel][:, None] + near_j[None, :]] == a[:, None]).any(axis=1)
            pending[g][sel[clash]] = True
            ok = ~clash
            i_, j_, a, b = i_[ok], j_[ok], a[ok], b[ok]
            tiles[i_], tiles[j_] = b, a
            padded[at_i[sel[ok]]], padded[at_j[sel[ok]]] = b, a
            now[i_], now[j_] = i_b[ok], j_a[ok]
            changed[i_] = changed[j_] = clock
            moved += 2 * len(i_)
        if moved == before:
            break
    return moved


def _move_excess(
    tiles: NDArray[np.intp],
    cand: NDArray[np.intp],
    table: NDArray[np.float64],
    rows: int,
    cols: int,
    radius: int,
    cap: int,
    features: NDArray[np.float64],
    points: NDArray[np.float64],
) -> bool:
    """Cells on tiles used more than ``cap`` times move, those that lose least first, to their
    cheapest candidate under the cap that no cell within ``radius`` holds (when every candidate is
    taken, to the nearest such tile of the whole library by the ``features`` distance to the cell's
    ``points``); in place. Whether every tile is then within the cap."""
    grid = tiles.reshape(rows, cols)
    uses = np.bincount(tiles, minlength=len(features))
    here = np.where(cand == tiles[:, None], table, np.inf).min(axis=1)
    holders = np.flatnonzero(uses[tiles] > cap)
    others = np.where(cand[holders] == tiles[holders, None], np.inf, table[holders])
    for i in np.argsort(others.min(axis=1) - here[holders], kind="stable").tolist():
        cell = int(holders[i])
        tile = int(tiles[cell])
        if uses[tile] <= cap:
            continue
        r, c = divmod(cell, cols)
        nearby = grid[max(0, r - radius) : r + radius + 1, max(0, c - radius) : c + radius + 1].ravel()
        options = cand[cell]
        allowed = (uses[options] < cap) & ~np.isin(options, nearby)
        if allowed.any():
            new = int(options[np.flatnonzero(allowed)[table[cell, allowed].argmin()]])
        else:  # every candidate taken: the nearest allowed tile of the whole library, if any
            free = uses < cap
            free[nearby[nearby >= 0]] = False
            if not free.any():
                continue
            spare = np.flatnonzero(free)
            new = int(spare[np.linalg.norm(features[spare] - points[cell], axis=1).argmin()])
        tiles[cell] = new
        uses[tile] -= 1
        uses[new] += 1
    return bool(uses.max() <= cap)


def _sweep(
    tiles: NDArray[np.intp],
    cost: NDArray[np.float64],
    cand: NDArray[np.intp],
    table: NDArray[np.float64],
    rows: int,
    cols: int,
    radius: int,
    *,
    uses: NDArray[np.intp] | None = None,
    limit: int | None = None,
    dirty: NDArray[np.bool_] | None = None,
) -> NDArray[np.bool_]:
    """The phase sweeps, in place: each cell of a phase takes, among its candidates ``cand`` at
    costs ``table`` (both ``(cells, k)``), the cheapest that no cell within ``radius`` holds (and,
    with ``limit``, whose ``uses`` are under it), unless its own tile ``tiles`` at ``cost`` repeats
    nowhere nearby and is cheaper. Sweeps repeat until nothing moves (at most :data:`_SWEEPS`).

    Only the cells marked in ``dirty`` ``(cells,)`` (all when ``None``) are weighed: a cell whose
    neighbourhood, own cost and candidates' costs are as they were when it was last weighed stays
    where it is, so skipping it changes nothing. A cell is marked again when a neighbour moves,
    when its move did not fit under the cap, and (with ``limit``) every cell when a tile reaches
    or leaves the limit. Returns the marks left (the cells that may still move), for a caller that
    changes some costs and sweeps again."""
    span = cols + 2 * radius
    padded = np.pad(tiles.reshape(rows, cols), radius, constant_values=-1).ravel()
    marks = np.zeros_like(padded, dtype=bool)
    inner = ((np.arange(rows)[:, None] + radius) * span + radius + np.arange(cols)[None, :]).ravel()
    marks[inner] = True if dirty is None else dirty
    around = _ring(radius, span)
    phases = [(flat, inner[flat]) for flat, _, _ in _phases(rows, cols, radius)]
    for _ in range(_SWEEPS):
        moved = 0
        for flat, where in phases:
            weigh = marks[where]
            if not weigh.any():
                continue
            flat, where = flat[weigh], where[weigh]
            marks[where] = False
            near = padded[where[:, None] + around[None, :]]
            here = tiles[flat]
            conflict = (near == here[:, None]).any(axis=1)
            options = cand[flat]  # (m, k)
            blocked = (options[:, :, None] == near[:, None, :]).any(axis=2)
            if limit is not None and uses is not None:
                blocked |= (uses[options] >= limit) & (options != here[:, None])
            option_cost = np.where(blocked, np.inf, table[flat])
            best = option_cost.argmin(axis=1)
            best_cost = option_cost[np.arange(len(flat)), best]
            current = np.where(conflict, np.inf, cost[flat])
            move = (best_cost < current) & (options[np.arange(len(flat)), best] != here)
            if not move.any():
                continue
            who, at = flat[move], where[move]
            new = options[move, best[move]]
            gained = best_cost[move]
            if limit is not None and uses is not None:
                full_before = uses >= limit
                keep = _within_cap(new, current[move] - gained, limit - uses[new])
                marks[at[~keep]] = True  # wanted to move but the tile filled up: weigh again
                who, at, new, gained = who[keep], at[keep], new[keep], gained[keep]
                np.subtract.at(uses, tiles[who], 1)
                np.add.at(uses, new, 1)
                if ((uses >= limit) != full_before).any():  # a tile became blocked or free
                    marks[inner] = True
            tiles[who] = new
            padded[at] = new
            cost[who] = gained
            marks[(at[:, None] + around[None, :]).ravel()] = True
            moved += len(who)
        if moved == 0:
            break
    return marks[inner]


def _ring(radius: int, span: int, but: tuple[int, int] = (0, 0)) -> NDArray[np.intp]:
    """Offsets, in a flat grid ``span`` cells wide, of the cells within ``radius`` of a cell (not
    the cell itself, nor the one at offset ``but`` (rows, columns))."""
    ring = range(-radius, radius + 1)
    return np.array(
        [dr * span + dc for dr in ring for dc in ring if (dr or dc) and (dr, dc) != but], dtype=np.intp
    )


def _phases(
    rows: int, cols: int, radius: int
) -> list[tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.intp]]]:
    """The cells of each phase: flat indices, rows, columns."""
    r, c = np.divmod(np.arange(rows * cols), cols)
    step = radius + 1
    out = []
    for pr in range(step):
        for pc in range(step):
            flat = np.flatnonzero((r % step == pr) & (c % step == pc))
            if len(flat):
                out.append((flat, r[flat], c[flat]))
    return out


def _within_cap(
    new: NDArray[np.intp], gain: NDArray[np.float64], room: NDArray[np.intp]
) -> NDArray[np.bool_]:
    """Which of the moves onto tiles ``new`` fit the ``room`` left under the cap, those with the
    largest ``gain`` first."""
    order = np.lexsort((-gain, new))
    sorted_new = new[order]
    starts = np.r_[0, np.flatnonzero(sorted_new[1:] != sorted_new[:-1]) + 1]
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    keep = np.empty(len(order), dtype=bool)
    keep[order] = rank < room[order]
    return keep


def _last_resort(
    tiles: NDArray[np.intp],
    cost: NDArray[np.float64],
    points: NDArray[np.float64],
    features: NDArray[np.floating],
    uses: NDArray[np.intp],
    limit: int,
    rows: int,
    cols: int,
    radius: int,
) -> None:
    """Cells still holding a tile that repeats nearby: the nearest allowed tile of the whole
    library under the cap if there is one, else (every such tile at the cap) the cheapest swap with
    a cell elsewhere whose tile is not nearby and which may take this cell's tile."""
    grid = tiles.reshape(rows, cols)

    def window(r: int, c: int) -> NDArray[np.intp]:
        return grid[max(0, r - radius) : r + radius + 1, max(0, c - radius) : c + radius + 1]

    def repeats(r: int, c: int, tile: int, ignore: int = 0) -> bool:
        """Whether ``tile`` at (r, c) would have a copy nearby (``ignore`` copies are the cell's own)."""
        return int((window(r, c) == tile).sum()) > ignore

    conflicts = np.flatnonzero(_in_conflict(grid, radius))
    distances = _Distances(features, points, conflicts)
    for cell in conflicts.tolist():
        r, c = divmod(cell, cols)
        here = int(grid[r, c])
        if not repeats(r, c, here, ignore=1):  # an earlier move in this loop resolved it
            continue
        nearby = np.unique(window(r, c))
        distance = distances.of(cell)
        allowed = uses < limit
        allowed[nearby] = False
        if allowed.any():
            new = int(np.flatnonzero(allowed)[distance[allowed].argmin()])
            uses[here] -= 1
            uses[new] += 1
            grid[r, c] = new
            cost[cell] = float(distance[new])
            continue
        for new in np.argsort(distance).tolist():
            if new in nearby:
                continue
            swapped = _swap_partner(grid, r, c, here, new, repeats, points, features, cost)
            if swapped is not None:
                grid[r, c], grid.flat[swapped] = new, here
                cost[cell] = float(distance[new])
                cost[swapped] = float(np.linalg.norm(features[here] - points[swapped]))
                break


class _Distances:
    """Distances from each of ``cells`` to every tile, computed for a block of cells at a time
    with one matrix product (``|p|² + |t|² - 2 p·t``): one cell at a time, the subtraction over
    the whole library cost a millisecond per cell, seconds for the 800 cells of a 120 x 90
    cover's sky."""

    _BLOCK = 32

    def __init__(self, features: NDArray[np.floating], points: NDArray[np.float64], cells: NDArray[np.intp]):
        self.features = np.asarray(features, dtype=np.float64)
        self.squared = np.einsum("ij,ij->i", self.features, self.features)
        self.points = points
        self.cells = cells
        self.row = {int(cell): i for i, cell in enumerate(cells.tolist())}
        self.start = -1
        self.block = np.empty((0, len(self.features)))

    def of(self, cell: int) -> NDArray[np.float64]:
        i = self.row[cell]
        if not self.start <= i < self.start + len(self.block):
            self.start = i - i % self._BLOCK
            p = self.points[self.cells[self.start : self.start + self._BLOCK]]
            block = p @ self.features.T  # in place from here: few, small temporaries
            block *= -2.0
            block += self.squared[None, :]
            block += np.einsum("ij,ij->i", p, p)[:, None]
            np.maximum(block, 0.0, out=block)
            self.block = np.sqrt(block, out=block)
        return self.block[i - self.start]


def _in_conflict(grid: NDArray[np.intp], radius: int) -> NDArray[np.bool_]:
    """Cells ``(rows * cols,)`` whose tile repeats within ``radius``."""
    rows, cols = grid.shape
    padded = np.pad(grid, radius, constant_values=-1)
    found = np.zeros((rows, cols), dtype=bool)
    for dr in range(-radius, radius + 1):
        for dc in range(-radius, radius + 1):
            if dr or dc:
                found |= padded[radius + dr : radius + dr + rows, radius + dc : radius + dc + cols] == grid
    return found.ravel()


def _swap_partner(
    grid: NDArray[np.intp],
    r: int,
    c: int,
    here: int,
    new: int,
    repeats: Callable[..., bool],
    points: NDArray[np.float64],
    features: NDArray[np.floating],
    cost: NDArray[np.float64],
) -> int | None:
    """The cell holding ``new`` that loses least by taking ``here`` instead and has no ``here``
    nearby; None when there is none."""
    cols = grid.shape[1]
    holders = np.flatnonzero(grid.ravel() == new)
    if len(holders) == 0:
        return None
    loss = np.linalg.norm(features[here] - points[holders], axis=1) - cost[holders]
    for j in holders[np.argsort(loss)].tolist():
        jr, jc = divmod(j, cols)
        if max(abs(jr - r), abs(jc - c)) > 0 and not repeats(jr, jc, here):
            return int(j)
    return None
