"""Choose a tile for every cell from its nearest candidates."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from app.engine.index import TileIndex


def nearest_tiles(index: TileIndex, cells: NDArray[np.floating], rows: int, cols: int) -> NDArray[np.intp]:
    """Each cell's single nearest tile, as a ``(rows, cols)`` grid of tile indices."""
    _, idx = index.query(cells, k=1)
    return idx[:, 0].reshape(rows, cols)
