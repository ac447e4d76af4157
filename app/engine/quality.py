"""How good a mosaic is, in figures: colour error per cell and how tiles repeat.

The figures follow ``shared/tools/quality.py`` (the project's benchmark metric) but are computed
from what the engine knows, the cover's cell colours and the placed tiles' mean colours, so they
cost milliseconds instead of a pass over the rendered picture.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def placed_means(
    tile_means: NDArray[np.floating],
    grid: NDArray[np.intp],
    cell_offsets: NDArray[np.floating] | None = None,
) -> NDArray[np.float64]:
    """Mean colour ``(rows, cols, 3)`` (sRGB 0..255) of the tile shown in each cell.

    ``tile_means`` is ``(n_tiles, 3)``; ``cell_offsets`` ``(rows, cols, 3)`` is the colour
    correction added when stitching (clipping of single pixels at 0 or 255 is not modelled).
    """
    means = np.asarray(tile_means, dtype=np.float64)[grid]
    if cell_offsets is not None:
        means = np.clip(means + np.rint(cell_offsets), 0.0, 255.0)
    return means


def cell_error(cover_means: NDArray[np.floating], shown_means: NDArray[np.floating]) -> float:
    """Mean CIEDE2000 between two ``(rows, cols, 3)`` grids of sRGB colours in 0..255."""
    from skimage.color import deltaE_ciede2000, rgb2lab  # here: a cold `tessera make` imports it late

    cover_lab = rgb2lab(np.asarray(cover_means, dtype=np.float64) / 255.0)
    shown_lab = rgb2lab(np.asarray(shown_means, dtype=np.float64) / 255.0)
    return float(deltaE_ciede2000(cover_lab, shown_lab).mean())


def repetition(grid: NDArray[np.intp], library_size: int | None = None) -> dict[str, float | int]:
    """How tiles repeat in a ``(rows, cols)`` grid of tile indices, counted by tile (a tinted or
    composited copy is still the same tile): ``distinct_tiles``, ``max_uses`` (most uses of one
    tile), ``adjacent_same`` (share of neighbouring cell pairs, diagonals included, that hold the
    same tile) and, given the library's size, ``library_used`` (share of its tiles placed)."""
    _, counts = np.unique(grid, return_counts=True)
    rows, cols = grid.shape
    same = pairs = 0
    for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):  # each neighbouring pair once
        a = grid[: rows - dr, max(0, -dc) : cols - max(0, dc)]
        b = grid[dr:, max(0, dc) : cols - max(0, -dc)]
        same += int((a == b).sum())
        pairs += a.size
    figures: dict[str, float | int] = {
        "distinct_tiles": len(counts),
        "max_uses": int(counts.max()),
        "adjacent_same": round(same / pairs, 4) if pairs else 0.0,
    }
    if library_size:
        figures["library_used"] = round(len(counts) / library_size, 4)
    return figures


def quality_report(
    cover_means: NDArray[np.floating],
    tile_means: NDArray[np.floating],
    grid: NDArray[np.intp],
    cell_offsets: NDArray[np.floating] | None = None,
    *,
    library_size: int | None = None,
    shown: NDArray[np.floating] | None = None,
) -> dict[str, float | int]:
    """The mosaic's quality figures: ``cell_de`` (mean CIEDE2000 per cell between the cover's
    cell colour and the placed tile's mean colour, after colour correction) and the figures of
    :func:`repetition`. ``shown`` ``(rows, cols, 3)`` replaces ``tile_means[grid]`` when a cell's
    tile looks different from its stored colour (transparent tiles on a background)."""
    if shown is not None:
        shown = placed_means(shown.reshape(-1, 3), np.arange(grid.size).reshape(grid.shape), cell_offsets)
    else:
        shown = placed_means(tile_means, grid, cell_offsets)
    return {"cell_de": round(cell_error(cover_means, shown), 3), **repetition(grid, library_size)}
