"""Print files: a mosaic as a tiled (Big)TIFF, written band by band so memory stays flat.

A band is :data:`TILE` rows of the picture. :func:`write_tiff` asks ``band(y0, y1)`` for each in
turn and hands tifffile one ``TILE`` x ``TILE`` tile of it at a time, so the output is never held
whole: a 1 GP mosaic is written with about one band (``width * TILE * 3`` bytes, 25 MB at
32,000 px across) plus the band's cells. :func:`cell_bands` draws those bands from the placed
tiles, the placement grid and the tint, as :func:`~app.engine.render.stitch` would.

Why tifffile and not libvips (pyvips): measured in docs/zoom.md. tifffile writes what it is given
as it comes (16 s and 181 MB peak for 640 MP here); libvips built from one operation per cell grew
to 1 GB at 640 MP and took 75 s, and its PyPI binary cannot load a raw pixel stream.
Tiles are stored uncompressed: deflate shrank photo mosaics by a third at 5 to 20 times the time.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import BinaryIO

import numpy as np
import tifffile
from numpy.typing import NDArray

#: Side of one TIFF tile, in pixels (a multiple of 16, as TIFF asks).
TILE = 256
#: Above this many bytes of pixels the file is a BigTIFF (64-bit offsets); classic TIFF stops at 4 GB.
BIGTIFF_BYTES = 2**32 - 2**25
#: ``band(y0, y1)``: rows ``y0`` to ``y1`` of the picture, ``(y1 - y0, width, 3)`` uint8.
Band = Callable[[int, int], NDArray[np.uint8]]
#: ``progress(done, total)``, as :data:`app.engine.render.Progress`.
Progress = Callable[[int, int], None]


def write_tiff(
    fp: str | os.PathLike[str] | BinaryIO,
    width: int,
    height: int,
    band: Band,
    *,
    dpi: int,
    progress: Progress | None = None,
) -> None:
    """Write a ``width`` x ``height`` RGB picture, ``band`` by band, as a tiled TIFF with ``dpi``
    as its resolution (BigTIFF when it needs 64-bit offsets). ``progress(done, total)`` counts bands."""
    bands = -(-height // TILE)

    def tiles() -> Iterator[NDArray[np.uint8]]:
        padded = np.zeros((TILE, -(-width // TILE) * TILE, 3), dtype=np.uint8)  # edge tiles are full size
        for i in range(bands):
            y0 = i * TILE
            rows = band(y0, min(height, y0 + TILE))
            padded[: rows.shape[0], :width] = rows
            padded[rows.shape[0] :] = 0
            for x in range(0, width, TILE):
                yield padded[:, x : x + TILE]
            if progress is not None:
                progress(i + 1, bands)

    # a file opened on a descriptor has an int name, which tifffile would split as a path
    target = fp if isinstance(fp, str | os.PathLike) else tifffile.FileHandle(fp, name="mosaic.tif")
    tifffile.imwrite(
        target, tiles(), shape=(height, width, 3), dtype=np.uint8, photometric="rgb", tile=(TILE, TILE),
        bigtiff=width * height * 3 > BIGTIFF_BYTES, resolution=(dpi, dpi), resolutionunit="INCH",
        software="Tessera", metadata=None,
    )  # fmt: skip


def array_bands(image: NDArray[np.uint8]) -> Band:
    """Bands of a picture already in memory."""
    return lambda y0, y1: image[y0:y1]
