"""The levels of a mosaic's zoom pyramid below its render, drawn from the tiles' photos.

A mosaic rendered at ``(tw, th)`` px a cell has a render pyramid (:mod:`app.engine.pyramid`)
whose top level is the render. Its zoom pyramid goes ``extra`` levels deeper: the full size is the
render's times ``2**extra``, so the levels at and above the render's size are exactly the render
pyramid's levels (same sizes, same tiles), and level ``render_level + j`` shows each cell at
``(tw * 2**j, th * 2**j)`` px, decoded from the cell's photo (centre-cropped as the render crops
it), laid over the cell's background when the tiles are transparent (the render's
``backgrounds``: each cell's own colour, or the fixed one) and shifted by the render's tint, so
every level shows the composite the render shows. Nothing is ever drawn whole: :meth:`PhotoLevels.region`
stitches the few cells a tile touches, from a cache of decoded cells bounded in bytes.
"""

from __future__ import annotations

import io
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from app.engine.decode import DEFAULT_MAX_PIXELS, ImageSource
from app.engine.errors import ImageRejected
from app.engine.pyramid import Box, DziLayout, check_placement, stitch_cells
from app.engine.tiles import TileSet, make_tile, make_tile_rgba

#: ``cell_image(tile, (w, h))``: the photo of ``tile`` (a value of the grid) as ``(h, w, 3)``, or
#: ``(h, w, 4)`` for a transparent library: the colours composited onto white, then the opacity.
CellImage = Callable[[int, tuple[int, int]], NDArray[np.uint8]]
#: Decoded cells kept per pyramid unless the caller says otherwise (about 1,300 cells of 256 px).
DEFAULT_CACHE_BYTES = 256 * 2**20


def zoom_depth(cell_size: tuple[int, int], zoom_tile_size: int, photo_widths: Iterable[int]) -> int:
    """How many levels below the render the pyramid goes: the largest ``k`` with
    ``cell_w * 2**k`` at most ``zoom_tile_size`` and at most the median width the photos can fill
    at the cell's aspect (a cell is never drawn larger than most of its photos are; a few smaller
    photos are enlarged rather than every cell kept small). 0: the render is the deepest level."""
    widths = sorted(int(w) for w in photo_widths)
    limit = zoom_tile_size if not widths else min(zoom_tile_size, widths[(len(widths) - 1) // 2])
    cell_w = cell_size[0]
    depth = 0
    while cell_w << (depth + 1) <= limit:
        depth += 1
    return depth


def usable_width(size: tuple[int, int], aspect: tuple[int, int]) -> int:
    """The widest cell of ``aspect`` (w, h) a ``size`` (w, h) photo fills in either orientation:
    its shorter side, times ``w / h`` for cells taller than wide."""
    return math.floor(min(size) * min(1.0, aspect[0] / aspect[1]))


def zoom_layout(render: DziLayout, depth: int) -> DziLayout:
    """The zoom pyramid of a render pyramid, ``depth`` levels deeper (same tiles and format)."""
    return DziLayout(
        render.width << depth, render.height << depth, tile_size=render.tile_size, overlap=render.overlap,
        fmt=render.fmt,
    )  # fmt: skip


class CellCache:
    """Decoded cells by key, least recently used dropped past ``max_bytes``; thread-safe (a
    cell decoded twice by two threads at once is kept once)."""

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._cells: OrderedDict[object, NDArray[np.uint8]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: object, make: Callable[[], NDArray[np.uint8]]) -> NDArray[np.uint8]:
        with self._lock:
            cell = self._cells.get(key)
            if cell is not None:
                self._cells.move_to_end(key)
                return cell
        cell = make()  # outside the lock: other tiles go on meanwhile
        with self._lock:
            if key not in self._cells:
                self._cells[key] = cell
                self.bytes += cell.nbytes
            while self.bytes > self.max_bytes and len(self._cells) > 1:
                _, dropped = self._cells.popitem(last=False)
                self.bytes -= dropped.nbytes
        return cell


class PhotoLevels:
    """The levels of ``layout`` below ``render_level``, for a mosaic of ``grid`` ``(rows, cols)``
    (tile ids) rendered at ``cell_size`` (w, h) with per-cell ``offsets`` ``(rows, cols, 3)``
    and, for transparent tiles, per-cell ``backgrounds`` ``(rows, cols, 3)`` (what shows through
    them; ``cell_image`` then gives each photo's opacity as a fourth channel).

    ``cell_image`` decodes a tile's photo at the deepest cell size; shallower photo levels shrink
    that (2x2 means, as the pyramid's own levels are made). ``cache`` may be shared by pyramids;
    ``key`` keeps this one's cells apart in it.
    """

    def __init__(
        self,
        grid: NDArray[np.intp],
        offsets: NDArray[np.int16] | None,
        cell_size: tuple[int, int],
        layout: DziLayout,
        depth: int,
        cell_image: CellImage,
        *,
        cache: CellCache | None = None,
        key: object = None,
        backgrounds: NDArray[np.uint8] | None = None,
    ) -> None:
        check_placement(np.empty((0, 1, 1, 3), dtype=np.uint8), grid, offsets)
        if backgrounds is not None and backgrounds.shape != (*grid.shape, 3):
            raise ValueError(
                f"backgrounds must be (rows, cols, 3) = {(*grid.shape, 3)}, got {backgrounds.shape}"
            )
        rows, cols = grid.shape
        if (layout.width, layout.height) != (cols * cell_size[0] << depth, rows * cell_size[1] << depth):
            raise ValueError(f"layout {layout.width}x{layout.height} is not the grid's size times 2**{depth}")
        self.grid = grid
        self.offsets = offsets
        self.backgrounds = backgrounds
        self.cell_size = cell_size
        self.layout = layout
        self.depth = depth
        self.render_level = layout.max_level - depth
        self.cell_image = cell_image
        self.cache = cache or CellCache()
        self.key = key

    def cell_size_at(self, level: int) -> tuple[int, int]:
        shift = level - self.render_level
        return self.cell_size[0] << shift, self.cell_size[1] << shift

    def _cell(self, tile: int, level: int) -> NDArray[np.uint8]:
        deepest = self.layout.max_level
        if level == deepest:
            size = self.cell_size_at(level)
            return self.cache.get((self.key, tile, level), lambda: self.cell_image(tile, size))
        factor = 1 << (deepest - level)

        def shrink() -> NDArray[np.uint8]:
            return _reduce(self._cell(tile, deepest), factor)

        return self.cache.get((self.key, tile, level), shrink)

    def region(self, level: int, box: Box) -> NDArray[np.uint8]:
        """``uint8`` ``(y1 - y0, x1 - x0, 3)``: the pixels of ``box`` at ``level`` (below the render)."""
        if not self.render_level < level <= self.layout.max_level:
            raise ValueError(f"level {level} is not below the render (levels {self.render_level + 1}..)")
        x0, y0, x1, y1 = box
        cw, ch = self.cell_size_at(level)
        c0, r0 = x0 // cw, y0 // ch
        sub = self.grid[r0 : -(-y1 // ch), c0 : -(-x1 // cw)]
        ids, local = np.unique(sub, return_inverse=True)
        cells = np.stack([self._cell(int(tile), level) for tile in ids])
        rows, cols = slice(r0, r0 + sub.shape[0]), slice(c0, c0 + sub.shape[1])
        offsets = None if self.offsets is None else self.offsets[rows, cols]
        alpha, backgrounds = None, None
        if cells.shape[3] == 4 and self.backgrounds is not None:
            alpha, backgrounds = cells[..., 3], self.backgrounds[rows, cols]
        block = stitch_cells(
            cells[..., :3],
            local.reshape(sub.shape).astype(np.intp),
            offsets,
            alpha=alpha,
            backgrounds=backgrounds,
        )
        return block[y0 - r0 * ch : y1 - r0 * ch, x0 - c0 * cw : x1 - c0 * cw]

    def tile(self, level: int, col: int, row: int) -> NDArray[np.uint8]:
        """The pixels of the tile (col, row) of ``level``, overlap included."""
        return self.region(level, self.layout.tile_box(level, col, row))


def _reduce(cell: NDArray[np.uint8], factor: int) -> NDArray[np.uint8]:
    """``cell`` ``(h, w, 3 or 4)`` shrunk ``factor`` times by box means, channel by channel (an
    RGBA picture would be premultiplied by Pillow; these colours are already on white)."""
    rgb = np.asarray(Image.fromarray(np.ascontiguousarray(cell[..., :3])).reduce(factor))
    if cell.shape[2] == 3:
        return rgb
    alpha = np.asarray(Image.fromarray(np.ascontiguousarray(cell[..., 3])).reduce(factor))
    return np.concatenate([rgb, alpha[..., None]], axis=2)


def photo_levels(
    tiles: TileSet,
    grid: NDArray[np.integer],
    cell_size: tuple[int, int],
    render: DziLayout,
    *,
    sources: Mapping[str, ImageSource],
    zoom_tile_size: int,
    offsets: NDArray[np.int16] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    cache: CellCache | None = None,
    key: object = None,
    depth: int | None = None,
    backgrounds: NDArray[np.uint8] | None = None,
) -> PhotoLevels | None:
    """The photo levels of a mosaic of ``tiles`` placed as ``grid`` (indexes into ``tiles``) and
    rendered at ``cell_size``, below its ``render`` pyramid; ``None`` if the photos (or
    ``zoom_tile_size``) allow no level deeper than the render. ``sources`` maps a tile's name to
    its photo; a photo gone since is drawn in its thumbnail's mean colour (and mean opacity).
    ``depth`` skips measuring the photos when it is already known (a recorded pyramid).
    ``backgrounds`` (``MosaicResult.backgrounds``): transparent photos keep their alpha and are
    laid over each cell's background, as the render lays their thumbnails."""
    ids = np.unique(grid)
    if depth is None:
        aspect = cell_size
        depth = zoom_depth(cell_size, zoom_tile_size, _photo_widths(tiles, ids, sources, aspect))
    if depth == 0:
        return None

    # Only the names and mean colours of the used tiles are kept (the levels may outlive the
    # library in a cache): a photo gone since is drawn in its thumbnail's mean colour.
    see_through = tiles.alpha is not None and backgrounds is not None
    names = {int(tile): tiles.names[int(tile)] for tile in ids}
    means = {int(tile): _mean_colour(tiles, int(tile), see_through) for tile in ids}

    def cell_image(tile: int, size: tuple[int, int]) -> NDArray[np.uint8]:
        name = names[tile]
        try:
            if not see_through:
                return make_tile(sources[name], name=name, size=size, max_pixels=max_pixels)
            rgb, alpha = make_tile_rgba(sources[name], name=name, size=size, max_pixels=max_pixels)
        except (KeyError, ImageRejected, OSError):
            return np.broadcast_to(means[tile], (size[1], size[0], len(means[tile]))).copy()
        opacity = np.full(rgb.shape[:2], 255, np.uint8) if alpha is None else alpha
        return np.concatenate([rgb, opacity[..., None]], axis=2)  # an opaque photo among emoji

    layout = zoom_layout(render, depth)
    return PhotoLevels(
        np.asarray(grid, dtype=np.intp), offsets, cell_size, layout, depth, cell_image, cache=cache, key=key,
        backgrounds=backgrounds if see_through else None,
    )  # fmt: skip


def _mean_colour(tiles: TileSet, tile: int, with_opacity: bool) -> NDArray[np.uint8]:
    """A thumbnail's mean colour (on white), with its mean opacity last if ``with_opacity``."""
    mean = tiles.images[tile].mean(axis=(0, 1))
    if with_opacity:
        mean = np.append(mean, tiles.opacity(np.array([tile]))[0].mean())
    return np.asarray(mean.round(), dtype=np.uint8)


def _photo_widths(
    tiles: TileSet, ids: NDArray[np.integer], sources: Mapping[str, ImageSource], aspect: tuple[int, int]
) -> list[int]:
    """The widest cell each used tile's photo fills (its thumbnail's width when the photo is gone)."""
    widths = []
    for tile in ids:
        name = tiles.names[int(tile)]
        try:
            source = sources[name]
            with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:  # header only
                widths.append(usable_width(im.size, aspect))
        except (KeyError, OSError, ValueError):
            widths.append(int(tiles.images.shape[2]))
    return widths
