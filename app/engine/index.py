"""A nearest-neighbour index over tile features (scikit-learn's KD-tree).

Only the feature array is ever stored; the tree is refitted when loaded (fitting 10,000 tiles
takes milliseconds), so no pickled estimator lives on disk.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

_QUERY_BATCH = 8192  # cells per query call: bounds the temporary arrays for huge grids


class TileIndex:
    """K-nearest-neighbour search over ``features`` ``(n_tiles, d)``."""

    def __init__(self, features: NDArray[np.floating]) -> None:
        features = np.ascontiguousarray(features, dtype=np.float64)
        if features.ndim != 2 or len(features) == 0:
            raise ValueError(f"features must be a non-empty (n, d) array, got shape {features.shape}")
        self.features = features
        # Imported here: scikit-learn takes most of a second to import, which a cold
        # ``tessera make`` should spend decoding tiles instead.
        from sklearn.neighbors import KDTree

        self._tree = KDTree(features, leaf_size=32)

    def __len__(self) -> int:
        return len(self.features)

    def query(self, cells: NDArray[np.floating], k: int = 1) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
        """The ``k`` nearest tiles of each cell: ``(distances, indices)``, both ``(n_cells, k)``,
        nearest first. ``k`` is capped at the number of tiles."""
        k = max(1, min(k, len(self)))
        cells = np.ascontiguousarray(cells, dtype=np.float64)
        dist = np.empty((len(cells), k))
        idx = np.empty((len(cells), k), dtype=np.intp)
        for start in range(0, len(cells), _QUERY_BATCH):
            part = slice(start, start + _QUERY_BATCH)
            dist[part], idx[part] = self._tree.query(cells[part], k=k)
        return dist, idx

    def save(self, path: str | os.PathLike[str]) -> None:
        """Store the features as ``.npy`` (written whole, then renamed into place)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".part")
        with open(tmp, "wb") as fh:
            np.save(fh, self.features)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TileIndex:
        """Read stored features and refit the tree."""
        return cls(np.load(path))
