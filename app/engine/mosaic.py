"""The one call everything drives: a cover and a tile library in, a mosaic and its placement out."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import BinaryIO

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from app.engine.decode import DEFAULT_MAX_PIXELS, ImageSource, load_rgb
from app.engine.errors import NoUsableTiles
from app.engine.features import (
    block_features,
    block_means,
    cell_means,
    cover_features,
    on_background,
    tile_features,
)
from app.engine.index import TileIndex
from app.engine.matching import choose_tiles, raised_rules
from app.engine.options import MosaicParams
from app.engine.quality import quality_report
from app.engine.render import Progress, cell_bands, check_output_size, encode, lay_over, print_size, stitch
from app.engine.tiff import write_tiff
from app.engine.tiles import Placer, TileSet, usable_cores

#: ``progress(stage, done, total)``; stages are "cover", "match" and "render".
StageProgress = Callable[[str, int, int], None]

#: The cover is decoded at least this many pixels per feature block (JPEG draft scaling).
_COVER_OVERSAMPLING = 4


@dataclass
class MosaicResult:
    """A finished mosaic.

    Attributes
    ----------
    image
        ``uint8`` ``(rows * tile_h, cols * tile_w, 3)``; None when made with ``stitched=False``
        (a print file streamed from ``placed`` by :func:`write_mosaic`, never held whole).
    grid
        ``(rows, cols)`` index into ``tile_names`` of the tile placed in each cell.
    cell_offsets
        ``int16`` ``(rows, cols, 3)``: the colour shift (``tint``) added to each cell's tile, or
        None. With ``grid`` and the tiles it redraws the mosaic exactly (zoom pyramids, animations).
    """

    image: NDArray[np.uint8] | None
    grid: NDArray[np.intp]
    tile_names: list[str]
    params: MosaicParams
    timings: dict[str, float] = field(default_factory=dict)
    #: Figures from :func:`app.engine.quality.quality_report`: cell_de, distinct_tiles, max_uses,
    #: adjacent_same (8-neighbourhood), library_used.
    quality: dict[str, float | int] = field(default_factory=dict)
    cell_offsets: NDArray[np.int16] | None = None
    #: ``uint8`` ``(rows, cols, 3)``: the colour behind each cell's transparent tile (None when every
    #: tile is opaque); with ``grid`` and ``cell_offsets`` it redraws the mosaic exactly.
    backgrounds: NDArray[np.uint8] | None = None
    #: The rules the library was too small for (:func:`app.engine.matching.raised_rules`).
    rules_raised: list[dict[str, object]] = field(default_factory=list)
    #: The tiles placed, at output size ``(n_used, tile_h, tile_w, 3)``, and ``(rows, cols)``
    #: indices into them: what :func:`write_mosaic` streams a mosaic made unstitched from.
    placed: NDArray[np.uint8] | None = None
    local: NDArray[np.intp] | None = None

    @property
    def rows(self) -> int:
        return int(self.grid.shape[0])

    @property
    def cols(self) -> int:
        return int(self.grid.shape[1])

    @property
    def width(self) -> int:
        return self.cols * self.params.tile_shape[0]

    @property
    def height(self) -> int:
        return self.rows * self.params.tile_shape[1]

    def to_image(self) -> Image.Image:
        if self.image is None:
            raise ValueError("this mosaic was made unstitched; write_mosaic streams it")
        return Image.fromarray(self.image, mode="RGB")

    def report(self) -> dict[str, object]:
        """A JSON-ready summary: grid, size, tile usage, quality figures and timings."""
        counts = np.bincount(self.grid.ravel(), minlength=len(self.tile_names))
        return {
            "cols": self.cols,
            "rows": self.rows,
            "width": self.width,
            "height": self.height,
            "distinct_tiles": int((counts > 0).sum()),
            "max_uses": int(counts.max()),
            "background": self.params.background,
            "quality": dict(self.quality),
            "rules_raised": [dict(rule) for rule in self.rules_raised],
            "params": self.params.to_record(),
            "print": print_size(self.width, self.height, self.params.dpi),
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
        }


def build_index(tiles: TileSet, params: MosaicParams) -> TileIndex:
    """The nearest-neighbour index of ``tiles`` for the feature settings in ``params``."""
    if len(tiles) == 0:
        raise NoUsableTiles("no usable tiles: every file was rejected")
    return TileIndex(tile_features(tiles.images, color_space=params.color_space, grid=params.cell_grid))


@dataclass(frozen=True)
class Cover:
    """A decoded cover, with the upright size of the original file (which sets the rows; the
    decoded picture may be smaller, and rounding its size would shift the aspect)."""

    image: Image.Image
    width: int
    height: int


def load_cover(
    source: ImageSource | Image.Image | Cover,
    params: MosaicParams,
    *,
    name: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Cover:
    """Decode the cover at no more than the resolution matching needs."""
    if isinstance(source, Cover):
        return source
    if isinstance(source, Image.Image):
        return Cover(source.convert("RGB"), source.width, source.height)
    block = params.cell_grid * _COVER_OVERSAMPLING
    upright: list[tuple[int, int]] = []

    def need(width: int, height: int) -> tuple[int, int]:
        upright.append((width, height))
        return params.cols * block, params.rows_for(width, height) * block

    image = load_rgb(source, name=name, need=need, max_pixels=max_pixels)
    width, height = upright[0] if upright else image.size
    return Cover(image, width, height)


def make_mosaic(
    cover: ImageSource | Image.Image | Cover,
    tiles: TileSet,
    params: MosaicParams | None = None,
    *,
    index: TileIndex | None = None,
    cover_name: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: StageProgress | None = None,
    stitched: bool = True,
    placer: Placer | None = None,
) -> MosaicResult:
    """Make a photo mosaic of ``cover`` from ``tiles``.

    ``placer`` gives the placed tiles at the cell size (default: ``tiles.fitted``, the stored
    tiles resized); matching only needs ``tiles`` small, so a caller whose cells are larger than
    the stored tiles passes one that decodes the placed tiles again at the cell size.

    ``stitched=False`` leaves the picture unstitched (``image`` None): :func:`write_mosaic`
    streams it into a TIFF band by band, so its size is not bounded by memory.

    ``index`` may be passed when the caller keeps one per library (it must have been built by
    :func:`build_index` with the same ``color_space`` and ``cell_grid``).

    Raises
    ------
    ImageRejected
        The cover cannot be used (the error names it).
    BadParameter
        A parameter is out of range, or the output would be too large.
    NoUsableTiles
        ``tiles`` is empty.
    """
    params = (params or MosaicParams()).validate()
    report = progress or (lambda stage, done, total: None)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    if len(tiles) == 0:
        raise NoUsableTiles("no usable tiles: every file was rejected")

    report("cover", 0, 1)
    decoded = load_cover(cover, params, name=cover_name, max_pixels=max_pixels)
    image = decoded.image
    rows = params.rows_for(decoded.width, decoded.height)
    tile_w, tile_h = params.tile_shape
    if params.max_output_pixels is not None:
        check_output_size(params.cols * tile_w, rows * tile_h, "png", params.max_output_pixels)
    cells = cover_features(image, params.cols, rows, color_space=params.color_space, grid=params.cell_grid)
    timings["cover"] = time.perf_counter() - t0
    report("cover", 1, 1)

    t = time.perf_counter()
    cover_means = cell_means(image, params.cols, rows)  # (rows, cols, 3)
    fixed = params.background_rgb
    if tiles.alpha is not None and fixed is not None and fixed != (255, 255, 255):
        index = build_index_on(tiles, params, np.array(fixed, dtype=np.float64))  # not as stored, on white
    if index is None:
        index = build_index(tiles, params)
    report("match", 0, rows * params.cols)
    candidates = None
    if tiles.alpha is not None and fixed is None:
        candidates = candidates_on_cells(tiles, index, cells, cover_means.reshape(-1, 3), params)
    grid = choose_tiles(index, cells, rows, params.cols, rules=params.rules, candidates=candidates)
    raised = raised_rules(params.rules, grid, len(index))
    timings["match"] = time.perf_counter() - t
    report("match", rows * params.cols, rows * params.cols)

    t = time.perf_counter()
    used, local = np.unique(grid, return_inverse=True)
    local = local.reshape(grid.shape)
    report("render", 0, rows)
    placed, placed_alpha = (placer or tiles.fitted)(used, (tile_w, tile_h))
    placed_means = block_means(placed, 1)[:, 0, 0]  # (n_used, 3), on white
    backgrounds = None
    shown = placed_means[local]
    if placed_alpha is not None:
        colours = cover_means if fixed is None else np.broadcast_to(np.array(fixed, float), shown.shape)
        backgrounds = np.clip(np.rint(colours), 0, 255).astype(np.uint8)  # as stored, so redraws agree
        opacity = block_means(placed_alpha[..., None], 1)[:, 0, 0, 0] / 255.0
        shown = on_background(shown, opacity[local], backgrounds)
    offsets = tint_offsets(cover_means, shown, params.tint)
    mosaic = None
    if stitched:
        mosaic = stitch(
            placed, local, cell_offsets=offsets, alpha=placed_alpha, backgrounds=backgrounds,
            progress=partial(report, "render"),
        )  # fmt: skip
    elif placed_alpha is not None and backgrounds is not None:  # streamed: each cell's own composite
        placed = lay_over(placed[local], placed_alpha[local], backgrounds).reshape(-1, tile_h, tile_w, 3)
        local = np.arange(local.size, dtype=np.intp).reshape(local.shape)
    timings["render"] = time.perf_counter() - t
    quality = quality_report(cover_means, placed_means, local, offsets, library_size=len(tiles), shown=shown)
    timings["total"] = time.perf_counter() - t0
    shifts = None if offsets is None else np.rint(offsets).astype(np.int16)  # as stitch applies them
    streamed = (None, None) if stitched else (placed, local)  # only kept when they are needed
    return MosaicResult(
        mosaic, grid, list(tiles.names), params, timings, quality, shifts, backgrounds=backgrounds,
        rules_raised=raised, placed=streamed[0], local=streamed[1],
    )  # fmt: skip


def write_mosaic(
    result: MosaicResult,
    fp: str | os.PathLike[str] | BinaryIO,
    fmt: str,
    *,
    quality: int = 90,
    progress: Progress | None = None,
) -> None:
    """Encode ``result`` as ``fmt`` at its ``dpi``; one made with ``stitched=False`` is streamed
    (TIFF only: the other formats' encoders take the whole picture)."""
    if result.image is not None:
        encode(result.image, fp, fmt, quality=quality, dpi=result.params.dpi)
        return
    if fmt != "tiff" or result.placed is None or result.local is None:
        raise ValueError(f"an unstitched mosaic can only be streamed as a TIFF, not {fmt}")
    check_output_size(result.width, result.height, fmt)
    bands = cell_bands(result.placed, result.local, result.cell_offsets)
    write_tiff(fp, result.width, result.height, bands, dpi=result.params.dpi, progress=progress)


def build_index_on(
    tiles: TileSet,
    params: MosaicParams,
    background: float | NDArray[np.float64],
    *,
    blocks: tuple[NDArray[np.float64], NDArray[np.float64]] | None = None,
) -> TileIndex:
    """The index of ``tiles`` laid over ``background`` (a grey level or an RGB colour, 0..255);
    ``blocks`` = :func:`see_through_blocks` of ``tiles`` when the caller has them already."""
    white, opacity = blocks or see_through_blocks(tiles, params.cell_grid)
    return TileIndex(
        block_features(on_background(white, opacity, background), color_space=params.color_space)
    )


def see_through_blocks(tiles: TileSet, grid: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``(white, opacity)``: the ``grid x grid`` block means of ``tiles`` on white ``(n, g, g, 3)``
    and of their opacity in 0..1 ``(n, g, g)``; a block on any background ``b`` is
    ``white + (1 - opacity) * (b - 255)`` (:func:`on_background`), exactly, because block means
    and compositing are both linear."""
    white = block_means(tiles.images, grid)
    return white, block_means(tiles.opacity()[..., None], grid)[..., 0] / 255.0


#: Candidates per cell from each of the white, grey and black indexes of transparent tiles.
CANDIDATES_PER_BACKGROUND = 16
#: Candidates kept per cell, nearest first (a tile found twice is kept once, at an infinite
#: distance for the second): enough that repetition rules rarely send a cell back to the index,
#: which sees the tiles on white only. 48 measured better than 16 on the emoji covers.
CANDIDATES_KEPT = 48
#: Libraries up to this many tiles are searched by brute force on the grey and black backgrounds
#: (exact, and much faster than building and asking two trees); larger ones through tree indexes.
BRUTE_FORCE_TILES = 2048
_PAIRS_PER_CHUNK = 2048  # (cell, tile) pairs re-ranked at once: temporaries stay in the caches


def candidates_on_cells(
    tiles: TileSet,
    index: TileIndex,
    cells: NDArray[np.floating],
    cell_colours: NDArray[np.floating],
    params: MosaicParams,
    *,
    k: int = CANDIDATES_PER_BACKGROUND,
    keep: int = CANDIDATES_KEPT,
) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
    """The ``keep`` nearest tiles of each cell when each tile is shown on that cell's own colour
    ``cell_colours`` ``(n_cells, 3)`` (``background="cell"``): ``(distances, tiles)``, both
    ``(n_cells, keep)``, nearest first.

    A tile's look then depends on the cell, so no one index holds it. The ``k`` nearest tiles of
    each cell on white (``index``), mid grey and black are its candidates; their exact distances on
    the cell's colour (block means composite linearly: :func:`see_through_blocks`) rank them.
    Each distinct (cell, tile) pair is measured once, in small chunks on all cores."""
    blocks = see_through_blocks(tiles, params.cell_grid)
    small = len(tiles) <= BRUTE_FORCE_TILES
    found = [nearest_exact(index.features, cells, k) if small else index.query(cells, k)[1]]
    for grey in (128.0, 0.0):
        if small:
            feats = block_features(on_background(*blocks, grey), color_space=params.color_space)
            found.append(nearest_exact(feats, cells, k))
        else:
            found.append(build_index_on(tiles, params, grey, blocks=blocks).query(cells, k)[1])
    cand = np.sort(np.concatenate(found, axis=1), axis=1)  # (n_cells, 3k), duplicates side by side
    first = np.ones(cand.shape, dtype=bool)
    first[:, 1:] = cand[:, 1:] != cand[:, :-1]
    owner, column = np.nonzero(first)
    dist = np.full(cand.shape, np.inf)  # each tile once: a repeat stays infinitely far
    dist[owner, column] = pair_distances(blocks, cand[owner, column], owner, cells, cell_colours, params)
    order = np.argsort(dist, axis=1, kind="stable")[:, :keep]
    return np.take_along_axis(dist, order, 1), np.take_along_axis(cand, order, 1)


def pair_distances(
    blocks: tuple[NDArray[np.float64], NDArray[np.float64]],
    tiles: NDArray[np.intp],
    owners: NDArray[np.intp],
    cells: NDArray[np.floating],
    cell_colours: NDArray[np.floating],
    params: MosaicParams,
) -> NDArray[np.float64]:
    """The feature distance between cell ``owners[i]`` and tile ``tiles[i]`` laid over that cell's
    colour, for each pair ``i``; ``blocks`` = :func:`see_through_blocks` of the library."""
    white, opacity = blocks
    colours = np.asarray(cell_colours, dtype=np.float64)
    out = np.empty(len(tiles))

    def run(start: int) -> None:
        part = slice(start, start + _PAIRS_PER_CHUNK)
        tile, owner = tiles[part], owners[part]
        shown = on_background(white[tile], opacity[tile], colours[owner][:, None, None, :])
        diff = block_features(shown, color_space=params.color_space) - cells[owner]
        out[part] = np.sqrt(np.einsum("ij,ij->i", diff, diff))  # float32, as the features are

    starts = range(0, len(tiles), _PAIRS_PER_CHUNK)
    with ThreadPoolExecutor(max(1, min(usable_cores(), len(starts)))) as pool:  # numpy frees the GIL
        list(pool.map(run, starts))
    return out


def nearest_exact(features: NDArray[np.floating], cells: NDArray[np.floating], k: int) -> NDArray[np.intp]:
    """The ``k`` nearest of ``features`` ``(n, d)`` to each of ``cells`` ``(m, d)``, nearest first
    (equal distances by tile number), by brute force: ``(m, min(k, n))``.

    Squared distances come from one matrix product, whose rounding error is far below
    ``1e-9 * (|cell|^2 + |tile|^2)``; the ``k + 8`` nearest by it are measured again exactly. A tile
    left out is then farther than the ``k``-th unless the product's ``(k + 8)``-th is within that
    margin of its ``k``-th, and such cells (tiles crowding at one distance) are measured exactly
    against every tile: the answer is exact either way."""
    tiles = np.asarray(features, dtype=np.float64)
    points = np.asarray(cells, dtype=np.float64)
    n, d = tiles.shape
    k = min(k, n)
    wide = min(n, k + 8)
    out = np.empty((len(points), k), dtype=np.intp)
    tile_norms = np.einsum("ij,ij->i", tiles, tiles)
    step = max(1, 2**21 // max(n, wide * d))  # a few large products: small ones cost more than they do
    for s in range(0, len(points), step):
        part = points[s : s + step]
        norms = np.einsum("ij,ij->i", part, part)
        squared = norms[:, None] + tile_norms[None, :] - 2.0 * (part @ tiles.T)  # (m, n)
        if wide < n:
            near = np.argpartition(squared, wide - 1, axis=1)[:, :wide]
            bound = np.take_along_axis(squared, near, 1)
            kth = np.partition(bound, k - 1, axis=1)[:, k - 1]
            unsure = np.flatnonzero(bound.max(axis=1) <= kth + 1e-9 * (norms + tile_norms.max()))
        else:
            near, unsure = np.broadcast_to(np.arange(n), (len(part), n)), np.empty(0, np.intp)
        diff = part[:, None, :] - tiles[near]
        exact = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))
        order = np.lexsort((near, exact), axis=1)[:, :k]
        out[s : s + step] = np.take_along_axis(near, order, 1)
        for row in unsure.tolist():
            every = part[row] - tiles
            full = np.sqrt(np.einsum("ij,ij->i", every, every))
            out[s + row] = np.lexsort((np.arange(n), full))[:k]
    return out


def tint_offsets(
    cover_means: NDArray[np.floating], shown_means: NDArray[np.floating], tint: float
) -> NDArray[np.float64] | None:
    """Per-cell colour shifts ``(rows, cols, 3)`` that move each placed tile's mean colour
    ``shown_means`` ``tint`` % of the way to its cell's ``cover_means`` (both ``(rows, cols, 3)``
    sRGB); ``None`` when ``tint`` is 0, so the tiles stay byte for byte as they are."""
    if tint <= 0:
        return None
    return (tint / 100.0) * (np.asarray(cover_means, dtype=np.float64) - shown_means)
