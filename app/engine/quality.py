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


def repetition(grid: NDArray[np.intp]) -> dict[str, float | int]:
    """Distinct tiles, most uses of one tile, and the share of horizontally or vertically
    adjacent cell pairs that hold the same tile, for a ``(rows, cols)`` grid of tile indices."""
    _, counts = np.unique(grid, return_counts=True)
    rows, cols = grid.shape
    same = int((grid[:, 1:] == grid[:, :-1]).sum() + (grid[1:, :] == grid[:-1, :]).sum())
    pairs = rows * (cols - 1) + (rows - 1) * cols
    return {
        "distinct_tiles": len(counts),
        "max_uses": int(counts.max()),
        "adjacent_same": round(same / pairs, 4) if pairs else 0.0,
    }


def quality_report(
    cover_means: NDArray[np.floating],
    tile_means: NDArray[np.floating],
    grid: NDArray[np.intp],
    cell_offsets: NDArray[np.floating] | None = None,
) -> dict[str, float | int]:
    """The mosaic's quality figures: ``cell_de`` (mean CIEDE2000 per cell between the cover's
    cell colour and the placed tile's mean colour, after colour correction), ``distinct_tiles``,
    ``max_uses`` and ``adjacent_same``."""
    shown = placed_means(tile_means, grid, cell_offsets)
    return {"cell_de": round(cell_error(cover_means, shown), 3), **repetition(grid)}
