"""An exact nearest-neighbour index over tile features.

Mean-colour features (3 numbers) go straight into scikit-learn's KD-tree. Richer features
(``cell_grid`` 2..8: 12 to 192 numbers) defeat a KD-tree, which then visits most tiles, so they are
rotated onto their principal axes and searched in two steps that stay exact:

1. a KD-tree over the first few principal coordinates (most of the variance of photo features
   lies there) yields ``k * widen`` candidates per cell, whose full distances are computed;
2. since a projection never lengthens a distance, a tile outside the candidates is at least as far
   as the last candidate's projected distance. Cells where that bound does not already beat their
   ``k``-th full distance ask the tree for every tile within that distance (projected), and keep
   the ``k`` nearest of those by full distance.

Cells are searched in chunks on all cores. scikit-learn is imported only when an index is built
(it costs a cold ``tessera make`` about a third of a second). Only the feature array is ever
stored; the rotation and tree are refitted when loaded (tens of milliseconds for 20,000 tiles),
so no pickled estimator lives on disk.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from app.engine.tiles import usable_cores

#: Features with at most this many numbers are searched by a plain KD-tree.
DIRECT_DIMS = 8
#: Principal coordinates the tree of richer features is built on.
PROJECTED_DIMS = 8
_CHUNK = 1024  # cells per task: bounds temporaries, and feeds every core
_WIDEN = 2  # candidates per wanted neighbour in the first step (at least _LEAST_WIDE): 2 searched
# 24 neighbours of 9,000 cells among 20,000 tiles in 20 % less time than 4, the rest answered exactly
_LEAST_WIDE = 4
#: What building an index and measuring a mosaic import late (scikit-learn pulls in much of SciPy).
_LATE_IMPORTS = ("sklearn.neighbors", "skimage.color")
_importing: threading.Thread | None = None


def import_in_background() -> None:
    """Start importing scikit-learn's KD-tree (and the quality measure's colour module) on a
    thread, so that the import overlaps with reading and decoding tiles. Call it once decode
    processes exist (:func:`app.engine.tiles.start_decoders`), or when none will be forked: a
    fork while a thread imports could copy a held import lock. An index built meanwhile waits
    for the import (Python's import locks), it never imports twice."""
    global _importing
    if _importing is None and not all(name in sys.modules for name in _LATE_IMPORTS):
        _importing = threading.Thread(target=_import_late, name="late-imports", daemon=True)
        _importing.start()


def _import_late() -> None:
    for name in _LATE_IMPORTS:
        importlib.import_module(name)


class TileIndex:
    """Exact ``k``-nearest-neighbour search over ``features`` ``(n_tiles, d)``."""

    def __init__(
        self,
        features: NDArray[np.floating],
        *,
        ids: NDArray[np.intp] | None = None,
        workers: int | None = None,
    ) -> None:
        features = np.ascontiguousarray(features, dtype=np.float64)
        if features.ndim != 2 or len(features) == 0:
            raise ValueError(f"features must be a non-empty (n, d) array, got shape {features.shape}")
        self.features = features
        #: The tile number each row stands for (a subset index answers in the full set's numbers).
        self.ids = np.arange(len(features)) if ids is None else np.asarray(ids, dtype=np.intp)
        self.workers = workers or usable_cores()
        self._centre: NDArray[np.float64] = features.mean(axis=0)
        self._axes = _principal_axes(features - self._centre)  # (d, d) rows: unit axes
        self._rotated = (features - self._centre) @ self._axes.T  # (n, d), same distances
        self._dims = features.shape[1] if features.shape[1] <= DIRECT_DIMS else PROJECTED_DIMS
        from sklearn.neighbors import KDTree  # imported here: only a built index pays for it

        # 48 points a leaf: 28 % less search time than 16 on 20,000 tiles in 8 dimensions (measured)
        self._tree = KDTree(self._rotated[:, : self._dims], leaf_size=48)
        self._expected = 0
        #: A wider answer than was asked, kept for one repeat: (cells' fingerprint, k, distances, tiles).
        self._last: tuple[bytes, int, NDArray[np.float64], NDArray[np.intp]] | None = None

    def expect(self, k: int) -> None:
        """Say that the next cells queried will be asked again for up to ``k`` neighbours (the
        neighbour repair after a first placement does so): the first query then finds ``k``, and
        the second is answered from it instead of searching again (half a second for 10,000
        cells x 20,000 tiles)."""
        self._expected = k

    def subset(self, ids: NDArray[np.intp]) -> TileIndex:
        """An index over only the tiles ``ids`` (answers still use the full set's tile numbers)."""
        ids = np.asarray(ids, dtype=np.intp)
        return TileIndex(self.features[ids], ids=self.ids[ids], workers=self.workers)

    def __len__(self) -> int:
        return len(self.features)

    @property
    def dims(self) -> int:
        return int(self.features.shape[1])

    def query(self, cells: NDArray[np.floating], k: int = 1) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
        """The ``k`` nearest tiles of each cell ``cells`` ``(n_cells, d)``: ``(distances, indices)``,
        both ``(n_cells, k)``, nearest first. ``k`` is capped at the number of tiles."""
        cells = np.ascontiguousarray(cells, dtype=np.float64)
        if cells.ndim != 2 or cells.shape[1] != self.dims:
            raise ValueError(f"cells must be (n, {self.dims}), got shape {cells.shape}")
        k = max(1, min(k, len(self)))
        fingerprint = hashlib.blake2b(cells.tobytes(), digest_size=16).digest()
        last = self._last
        if last is not None and last[0] == fingerprint and last[1] >= k:  # the k nearest come first
            self._last = None  # kept for this one repeat only
            return last[2][:, :k].copy(), last[3][:, :k].copy()
        want = max(k, min(self._expected, len(self)))
        self._expected = 0
        rotated = (cells - self._centre) @ self._axes.T
        dist = np.empty((len(cells), want))
        idx = np.empty((len(cells), want), dtype=np.intp)

        def run(start: int) -> None:
            part = slice(start, start + _CHUNK)
            dist[part], idx[part] = self._query_chunk(rotated[part], want)

        starts = range(0, len(cells), _CHUNK)
        if self.workers <= 1 or len(starts) <= 1:
            for start in starts:
                run(start)
        else:
            with ThreadPoolExecutor(min(self.workers, len(starts))) as pool:
                list(pool.map(run, starts))
        found = self.ids[idx]
        self._last = (fingerprint, want, dist, found) if want > k else None
        return dist[:, :k].copy(), found[:, :k].copy()

    def _query_chunk(
        self, cells: NDArray[np.float64], k: int
    ) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
        """Exact search for rotated ``cells`` ``(m, d)``."""
        if self._dims == self.dims:
            dist, idx = self._tree.query(cells, k=k)
            return dist, idx.astype(np.intp)
        wide = min(len(self), max(k * _WIDEN, _LEAST_WIDE))
        projected, cand = self._tree.query(cells[:, : self._dims], k=wide)
        owner = np.repeat(np.arange(len(cells)), wide)
        full = _distances(cells, self._rotated, owner, cand.ravel()).reshape(cand.shape)
        dist, idx = _k_smallest(full, cand, k)
        unsure = np.flatnonzero(projected[:, -1] < dist[:, -1])  # a tile outside may be nearer
        if len(unsure):
            dist[unsure], idx[unsure] = self._within(cells[unsure], dist[unsure, -1], k)
        return dist, idx

    def _within(
        self, cells: NDArray[np.float64], radius: NDArray[np.float64], k: int
    ) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
        """The ``k`` nearest among all tiles within ``radius`` (projected) of each cell: every
        tile within ``radius`` in full is among them, so this is exact."""
        found = self._tree.query_radius(cells[:, : self._dims], r=radius * (1 + 1e-9) + 1e-12)
        counts = np.array([len(f) for f in found])
        owner = np.repeat(np.arange(len(cells)), counts)
        tiles = np.concatenate(found).astype(np.intp)
        full = _distances(cells, self._rotated, owner, tiles)
        order = np.lexsort((full, owner))  # by cell, nearest first
        first = np.concatenate([[0], np.cumsum(counts)[:-1]])
        pick = first[:, None] + np.arange(k)[None, :]  # every cell has at least k (its own bound)
        return full[order][pick], tiles[order][pick]

    def save(self, path: str | os.PathLike[str]) -> None:
        """Store the features as ``.npy`` (written whole, then renamed into place)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".part")
        with open(tmp, "wb") as fh:
            np.save(fh, self.features)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TileIndex:
        """Read stored features and refit the index."""
        return cls(np.load(path))


def _principal_axes(centred: NDArray[np.float64]) -> NDArray[np.float64]:
    """``(d, d)`` orthonormal axes of ``centred`` ``(n, d)``, largest variance first."""
    _, vectors = np.linalg.eigh(centred.T @ centred)  # a full basis even with fewer tiles than d
    return np.ascontiguousarray(vectors[:, ::-1].T)


def _distances(
    cells: NDArray[np.float64],
    tiles: NDArray[np.float64],
    which_cell: NDArray[np.intp],
    which_tile: NDArray[np.intp],
) -> NDArray[np.float64]:
    """Euclidean distance of each pair (``cells[which_cell[i]]``, ``tiles[which_tile[i]]``), in
    blocks so the ``(pairs, d)`` difference stays small."""
    out = np.empty(len(which_cell))
    step = max(1, 2**20 // max(1, cells.shape[1]))
    for s in range(0, len(out), step):
        diff = cells[which_cell[s : s + step]] - tiles[which_tile[s : s + step]]
        out[s : s + step] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    return out


def _k_smallest(
    dist: NDArray[np.float64], cand: NDArray[np.intp], k: int
) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
    """Per row, the ``k`` smallest of ``dist`` ``(m, w)`` with their ``cand`` labels, ascending."""
    order = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(dist, order, 1), np.take_along_axis(cand, order, 1).astype(np.intp)
