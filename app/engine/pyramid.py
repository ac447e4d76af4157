"""Deep Zoom (DZI) image pyramids of a mosaic, cut straight from its cell grid.

The standard layout::

    <name>.dzi                              XML: tile size, overlap, format, full size
    <name>_files/<level>/<col>_<row>.<fmt>  level 0 is 1x1 px, the last level is the full mosaic

Level ``L`` of an image ``W x H`` measures ``ceil(W / 2**(max_level - L))`` across, with
``max_level = ceil(log2(max(W, H)))``. A tile covers ``tile_size`` px of its level plus ``overlap``
px of each neighbour.

Pixels come from a :class:`RegionSource`: a :class:`GridSource` draws any rectangle of the full
mosaic from the cell grid and the tile thumbnails (no full-size bitmap is ever made), a
:class:`BitmapSource` slices an image held in memory. Levels that are still large are drawn from
the level below them region by region (2x2 mean); the first level small enough to hold
(``budget_pixels``) is built whole once, and the levels above it shrink from it.
"""

from __future__ import annotations

import math
import os
import shutil
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from app.engine.errors import BadParameter
from app.engine.render import lay_over
from app.engine.tiles import Placer, TileSet

DZI_NAMESPACE = "http://schemas.microsoft.com/deepzoom/2008"
#: Tile file formats by DZI ``Format`` (the file extension).
TILE_FORMATS = ("jpg", "png")
TILE_MEDIA_TYPES = {"jpg": "image/jpeg", "png": "image/png"}
DEFAULT_TILE_SIZE = 254  # + 2 x 1 px overlap = 256 px files, the Deep Zoom Composer default
DEFAULT_OVERLAP = 1
#: Levels up to this many pixels are held whole in memory (about 100 MB).
DEFAULT_BUDGET_PIXELS = 32_000_000
_CHUNK = 512  # side of the regions a whole level is assembled from (2**k times that deeper)

#: (x0, y0, x1, y1): a rectangle of one level, in its pixels, end exclusive.
Box = tuple[int, int, int, int]
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class DziLayout:
    """The geometry of a Deep Zoom pyramid: which levels and tiles exist, and where each tile is."""

    width: int
    height: int
    tile_size: int = DEFAULT_TILE_SIZE
    overlap: int = DEFAULT_OVERLAP
    fmt: str = "jpg"

    def __post_init__(self) -> None:
        if self.width < 1 or self.height < 1:
            raise BadParameter("size", f"a pyramid needs a positive size, got {self.width}x{self.height}")
        if self.tile_size < 1 or not 0 <= self.overlap < self.tile_size:
            raise BadParameter("tile_size", f"bad tile size {self.tile_size} / overlap {self.overlap}")
        if self.fmt not in TILE_FORMATS:
            raise BadParameter("format", f"tile format must be one of {', '.join(TILE_FORMATS)}")

    @property
    def max_level(self) -> int:
        """``ceil(log2(max(width, height)))``: the level that holds the full-size image."""
        return (max(self.width, self.height) - 1).bit_length()

    @property
    def levels(self) -> int:
        return self.max_level + 1

    def level_size(self, level: int) -> tuple[int, int]:
        """(width, height) of ``level``: the full size halved, rounding up, once per level below the top."""
        shift = self.max_level - level
        return -(-self.width >> shift), -(-self.height >> shift)

    def tile_counts(self, level: int) -> tuple[int, int]:
        """(columns, rows) of tiles at ``level``."""
        width, height = self.level_size(level)
        return -(-width // self.tile_size), -(-height // self.tile_size)

    def tile_box(self, level: int, col: int, row: int) -> Box:
        """The pixels of ``level`` that tile (col, row) holds, overlap included."""
        width, height = self.level_size(level)
        size, over = self.tile_size, self.overlap
        x0, y0 = max(0, col * size - over), max(0, row * size - over)
        return x0, y0, min(width, (col + 1) * size + over), min(height, (row + 1) * size + over)

    def tiles(self, level: int) -> Iterator[tuple[int, int]]:
        cols, rows = self.tile_counts(level)
        return ((c, r) for r in range(rows) for c in range(cols))

    def tile_total(self) -> int:
        return sum(math.prod(self.tile_counts(level)) for level in range(self.levels))

    def descriptor(self) -> str:
        """The ``.dzi`` XML."""
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<Image xmlns="{DZI_NAMESPACE}" TileSize="{self.tile_size}" Overlap="{self.overlap}" '
            f'Format="{self.fmt}">\n'
            f'  <Size Width="{self.width}" Height="{self.height}"/>\n'
            "</Image>\n"
        )

    @classmethod
    def from_descriptor(cls, xml: str) -> DziLayout:
        """Parse a ``.dzi`` document (raises ``ValueError`` if it is not one)."""
        root = ET.fromstring(xml)
        size = root.find(f"{{{DZI_NAMESPACE}}}Size")
        if root.tag != f"{{{DZI_NAMESPACE}}}Image" or size is None:
            raise ValueError("not a Deep Zoom descriptor")
        return cls(
            width=int(size.attrib["Width"]),
            height=int(size.attrib["Height"]),
            tile_size=int(root.attrib["TileSize"]),
            overlap=int(root.attrib["Overlap"]),
            fmt=root.attrib["Format"],
        )


class RegionSource(Protocol):
    """The full-size picture, drawn a rectangle at a time."""

    @property
    def size(self) -> tuple[int, int]: ...

    def region(self, box: Box) -> NDArray[np.uint8]:
        """``uint8`` ``(y1 - y0, x1 - x0, 3)``: the pixels of ``box``."""
        ...


def check_placement(
    cells: NDArray[np.uint8], grid: NDArray[np.intp], offsets: NDArray[np.int16] | None
) -> None:
    """Refuse arrays that do not describe a placed mosaic: cells ``(n, h, w, 3)``, grid
    ``(rows, cols)`` and, if given, offsets ``(rows, cols, 3)``."""
    if cells.ndim != 4 or cells.shape[3] != 3 or grid.ndim != 2:
        raise ValueError(f"cells must be (n, h, w, 3) and grid (rows, cols): {cells.shape}, {grid.shape}")
    if offsets is not None and offsets.shape != (*grid.shape, 3):
        raise ValueError(f"offsets must be (rows, cols, 3) = {(*grid.shape, 3)}, got {offsets.shape}")


class GridSource:
    """A mosaic drawn from its cells: ``cells`` ``(n, th, tw, 3)`` placed as ``grid`` ``(rows, cols)``
    (indexes into ``cells``) says, each shifted by its ``offsets`` ``(rows, cols, 3)`` colour if
    given. Any region is the stitch of the cells it touches, cropped. Transparent tiles (``alpha``
    ``(n, th, tw)``) are laid over their cell's ``backgrounds`` ``(rows, cols, 3)`` colour first."""

    def __init__(
        self,
        cells: NDArray[np.uint8],
        grid: NDArray[np.intp],
        offsets: NDArray[np.int16] | None = None,
        *,
        alpha: NDArray[np.uint8] | None = None,
        backgrounds: NDArray[np.uint8] | None = None,
    ) -> None:
        check_placement(cells, grid, offsets)
        if alpha is not None and backgrounds is not None and backgrounds.shape != (*grid.shape, 3):
            raise ValueError(
                f"backgrounds must be (rows, cols, 3) = {(*grid.shape, 3)}, got {backgrounds.shape}"
            )
        self.cells = cells
        self.grid = grid
        self.offsets = offsets
        self.alpha = alpha if backgrounds is not None else None
        self.backgrounds = backgrounds
        self.cell_size = int(cells.shape[2]), int(cells.shape[1])

    @classmethod
    def from_tiles(
        cls,
        tiles: TileSet,
        grid: NDArray[np.integer],
        cell_size: tuple[int, int],
        offsets: NDArray[np.int16] | None = None,
        backgrounds: NDArray[np.uint8] | None = None,
        *,
        placer: Placer | None = None,
    ) -> GridSource:
        """The cells exactly as the render made them: the used tiles at ``cell_size`` (w, h), as
        the render's ``placer`` gave them (default: resized), transparent ones laid over
        ``backgrounds`` (``MosaicResult.backgrounds``), and shifted by the render's per-cell
        ``offsets`` (``MosaicResult.cell_offsets``)."""
        used, local = np.unique(grid, return_inverse=True)
        cells, alpha = (placer or tiles.fitted)(used, cell_size)
        return cls(
            cells, local.reshape(grid.shape).astype(np.intp), offsets, alpha=alpha, backgrounds=backgrounds
        )

    @property
    def size(self) -> tuple[int, int]:
        rows, cols = self.grid.shape
        return cols * self.cell_size[0], rows * self.cell_size[1]

    def region(self, box: Box) -> NDArray[np.uint8]:
        x0, y0, x1, y1 = box
        tw, th = self.cell_size
        c0, r0 = x0 // tw, y0 // th
        rows, cols = slice(r0, -(-y1 // th)), slice(c0, -(-x1 // tw))
        offsets = None if self.offsets is None else self.offsets[rows, cols]
        backgrounds = None if self.backgrounds is None else self.backgrounds[rows, cols]
        block = stitch_cells(
            self.cells, self.grid[rows, cols], offsets, alpha=self.alpha, backgrounds=backgrounds
        )
        return block[y0 - r0 * th : y1 - r0 * th, x0 - c0 * tw : x1 - c0 * tw]


def stitch_cells(
    cells: NDArray[np.uint8],
    grid: NDArray[np.intp],
    offsets: NDArray[np.int16] | None = None,
    *,
    alpha: NDArray[np.uint8] | None = None,
    backgrounds: NDArray[np.uint8] | None = None,
) -> NDArray[np.uint8]:
    """``cells`` ``(n, h, w, 3)`` laid out as ``grid`` ``(rows, cols)`` says, each shifted by its
    ``offsets`` ``(rows, cols, 3)`` colour and clipped, as the render does: ``(rows*h, cols*w, 3)``.

    One vectorised step for the small regions drawn here (the render's strip-by-strip stitch
    suits whole mosaics better)."""
    rows, cols = grid.shape
    _, h, w, _ = cells.shape
    out = np.empty((rows, h, cols, w, 3), dtype=np.uint8)
    placed = out.transpose(0, 2, 1, 3, 4)  # placed[r, c] is the cell (r, c): a view, no copy
    shown = (
        cells[grid]
        if alpha is None or backgrounds is None
        else lay_over(cells[grid], alpha[grid], backgrounds)
    )
    if offsets is None:
        placed[...] = shown
    else:
        shifted = shown.astype(np.int16) + offsets[:, :, None, None, :]
        np.clip(shifted, 0, 255, out=placed, casting="unsafe")
    return out.reshape(rows * h, cols * w, 3)


class BitmapSource:
    """A picture already in memory, ``uint8`` ``(H, W, 3)``."""

    def __init__(self, image: NDArray[np.uint8]) -> None:
        self.image = image

    @property
    def size(self) -> tuple[int, int]:
        return int(self.image.shape[1]), int(self.image.shape[0])

    def region(self, box: Box) -> NDArray[np.uint8]:
        x0, y0, x1, y1 = box
        return self.image[y0:y1, x0:x1]


def shrink2(image: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """Halve ``(h, w, 3)`` (or ``(n, h, w, 3)``) to ``(ceil(h/2), ceil(w/2), 3)`` by the rounded
    mean of each 2x2 block; an odd last row or column is repeated to fill its block."""
    h, w = image.shape[-3], image.shape[-2]
    if h % 2 or w % 2:
        pad = [(0, 0)] * (image.ndim - 3) + [(0, h % 2), (0, w % 2), (0, 0)]
        image = np.pad(image, pad, mode="edge")
    # Four strided views added elementwise: far faster than a sum over reshaped block axes.
    total = image[..., 0::2, 0::2, :].astype(np.uint16)
    total += image[..., 1::2, 0::2, :]
    total += image[..., 0::2, 1::2, :]
    total += image[..., 1::2, 1::2, :]
    total += 2
    total >>= 2
    return total.astype(np.uint8)


class PyramidLevels:
    """Every level of the pyramid of ``source`` as regions: the top level from the source, the
    others by 2x2 means of the level above, held whole once they fit in ``budget_pixels``."""

    def __init__(self, source: RegionSource, layout: DziLayout, budget_pixels: int) -> None:
        self.source = source
        self.layout = layout
        self.budget_pixels = budget_pixels
        self._whole: dict[int, NDArray[np.uint8]] = {}

    def prepare(self, level: int) -> None:
        """Hold ``level`` whole if it fits the budget (call before reading it from threads);
        levels above it are no longer needed then and are dropped."""
        width, height = self.layout.level_size(level)
        if level == self.layout.max_level or level in self._whole or width * height > self.budget_pixels:
            return
        whole = np.empty((height, width, 3), dtype=np.uint8)
        for y in range(0, height, _CHUNK):
            for x in range(0, width, _CHUNK):
                box = (x, y, min(width, x + _CHUNK), min(height, y + _CHUNK))
                whole[box[1] : box[3], box[0] : box[2]] = self._from_above(level, box)
        self._whole[level] = whole
        self._whole.pop(level + 1, None)

    def region(self, level: int, box: Box) -> NDArray[np.uint8]:
        x0, y0, x1, y1 = box
        if level == self.layout.max_level:
            return self.source.region(box)
        if level in self._whole:
            return self._whole[level][y0:y1, x0:x1]
        return self._from_above(level, box)

    def _from_above(self, level: int, box: Box) -> NDArray[np.uint8]:
        x0, y0, x1, y1 = box
        width, height = self.layout.level_size(level + 1)
        return shrink2(self.region(level + 1, (2 * x0, 2 * y0, min(width, 2 * x1), min(height, 2 * y1))))


def write_pyramid(
    source: RegionSource,
    folder: str | os.PathLike[str],
    *,
    name: str = "mosaic",
    fmt: str = "jpg",
    tile_size: int = DEFAULT_TILE_SIZE,
    overlap: int = DEFAULT_OVERLAP,
    quality: int = 90,
    budget_pixels: int = DEFAULT_BUDGET_PIXELS,
    workers: int = 1,
    progress: Progress | None = None,
    depth: int = 0,
    deep: DeepLevels | None = None,
) -> DziLayout:
    """Write ``<folder>/<name>.dzi`` and ``<folder>/<name>_files/`` for ``source``.

    Tiles are written from the full-size level down to level 0; ``progress(done, total)`` counts
    tiles. The descriptor is written last, so its presence means the pyramid is complete.

    ``depth`` > 0: the descriptor declares a pyramid ``depth`` levels deeper than ``source``
    (its size times ``2**depth``; the levels written here are its levels at and above the
    source's size). Those deeper levels are written too if ``deep`` draws them
    (:class:`app.engine.deep_zoom.PhotoLevels`), tile by tile, else left to be made on request.
    Returns the layout the descriptor declares.
    """
    width, height = source.size
    layout = DziLayout(width, height, tile_size=tile_size, overlap=overlap, fmt=fmt)
    declared = DziLayout(width << depth, height << depth, tile_size=tile_size, overlap=overlap, fmt=fmt)
    levels = PyramidLevels(source, layout, budget_pixels)
    root = Path(folder)
    files = root / f"{name}_files"
    shutil.rmtree(files, ignore_errors=True)
    written = range(declared.max_level if deep is not None else layout.max_level, -1, -1)
    total = sum(math.prod(declared.tile_counts(level)) for level in written)
    done, lock = 0, threading.Lock()

    def write_tile(level: int, col: int, row: int) -> None:
        nonlocal done
        if level > layout.max_level:
            assert deep is not None
            pixels = deep.tile(level, col, row)
        else:
            pixels = levels.region(level, layout.tile_box(level, col, row))
        save_tile(pixels, files / str(level) / f"{col}_{row}.{fmt}", fmt, quality)
        with lock:
            done += 1
            if progress is not None:
                progress(done, total)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for level in written:
            if level <= layout.max_level:
                levels.prepare(level)
            (files / str(level)).mkdir(parents=True, exist_ok=True)
            for job in [pool.submit(write_tile, level, c, r) for c, r in declared.tiles(level)]:
                job.result()
    descriptor = root / f"{name}.dzi"
    descriptor.with_name(descriptor.name + ".part").write_text(declared.descriptor())
    descriptor.with_name(descriptor.name + ".part").replace(descriptor)
    return declared


class DeepLevels(Protocol):
    """Levels deeper than a render pyramid's (:class:`app.engine.deep_zoom.PhotoLevels`)."""

    def tile(self, level: int, col: int, row: int) -> NDArray[np.uint8]: ...


def save_tile(pixels: NDArray[np.uint8], path: Path | BinaryIO, fmt: str, quality: int = 90) -> None:
    image = Image.fromarray(np.ascontiguousarray(pixels))
    if fmt == "png":
        image.save(path, "PNG", compress_level=1)
    else:
        image.save(path, "JPEG", quality=quality, subsampling="4:2:0")
