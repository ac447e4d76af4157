"""The one call everything drives: a cover and a tile library in, a mosaic and its placement out."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import BinaryIO

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from app.engine.decode import DEFAULT_MAX_PIXELS, ImageSource, load_rgb
from app.engine.errors import NoUsableTiles
from app.engine.features import (
    FeatureSpec,
    block_features,
    block_means,
    cell_means,
    cover_features,
    on_background,
)
from app.engine.index import TileIndex
from app.engine.matching import choose_tiles, raised_rules
from app.engine.options import MosaicParams
from app.engine.quality import quality_report
from app.engine.render import Progress, cell_bands, check_output_size, encode, lay_over, print_size, stitch
from app.engine.tiff import write_tiff
from app.engine.tiles import TileSet

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
    return TileIndex(tiles.features_of(FeatureSpec(params.color_space, params.cell_grid)))


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
) -> MosaicResult:
    """Make a photo mosaic of ``cover`` from ``tiles``.

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
    placed = tiles.resized((tile_w, tile_h), used)
    placed_alpha = tiles.resized_alpha((tile_w, tile_h), used)
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
    tiles: TileSet, params: MosaicParams, background: float | NDArray[np.float64]
) -> TileIndex:
    """The index of ``tiles`` laid over ``background`` (a grey level or an RGB colour, 0..255)."""
    white = block_means(tiles.images, params.cell_grid)
    opacity = block_means(tiles.opacity()[..., None], params.cell_grid)[..., 0] / 255.0
    blocks = on_background(white, opacity, background)
    return TileIndex(block_features(blocks, color_space=params.color_space))


#: Candidates per cell from each of the white, grey and black indexes of transparent tiles.
CANDIDATES_PER_BACKGROUND = 16
#: Candidates kept per cell, nearest first (a tile found twice is kept once, at an infinite
#: distance for the second): enough that repetition rules rarely send a cell back to the index,
#: which sees the tiles on white only. 48 measured better than 16 on the emoji covers.
CANDIDATES_KEPT = 48


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

    A tile's look then depends on the cell, so no one index holds it. The tree indexes of the
    tiles on white (``index``), mid grey and black each give ``k`` candidates; their exact distances
    on the cell's colour (block means composite linearly) rank them."""
    g = params.cell_grid
    white = block_means(tiles.images, g)  # (n, g, g, 3)
    opacity = block_means(tiles.opacity()[..., None], g)[..., 0] / 255.0  # (n, g, g)
    found = [index.query(cells, k)[1]]
    for grey in (128.0, 0.0):
        found.append(build_index_on(tiles, params, grey).query(cells, k)[1])
    cand = np.sort(np.concatenate(found, axis=1), axis=1)  # (n_cells, 3k), duplicates side by side
    n_cells, width = cand.shape
    dist = np.empty((n_cells, width))
    step = max(1, 2**16 // width)
    for s in range(0, n_cells, step):
        part = cand[s : s + step]
        bg = np.asarray(cell_colours[s : s + step], dtype=np.float64)[:, None, None, None, :]
        blocks = on_background(white[part], opacity[part], bg)  # (m, 3k, g, g, 3)
        feats = block_features(blocks.reshape(-1, g, g, 3), color_space=params.color_space)
        diff = feats.reshape(len(part), width, -1) - np.asarray(cells[s : s + step])[:, None, :]
        dist[s : s + step] = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))
    dist[:, 1:][cand[:, 1:] == cand[:, :-1]] = np.inf  # each tile once
    order = np.argsort(dist, axis=1, kind="stable")[:, :keep]
    return np.take_along_axis(dist, order, 1), np.take_along_axis(cand, order, 1)


def tint_offsets(
    cover_means: NDArray[np.floating], shown_means: NDArray[np.floating], tint: float
) -> NDArray[np.float64] | None:
    """Per-cell colour shifts ``(rows, cols, 3)`` that move each placed tile's mean colour
    ``shown_means`` ``tint`` % of the way to its cell's ``cover_means`` (both ``(rows, cols, 3)``
    sRGB); ``None`` when ``tint`` is 0, so the tiles stay byte for byte as they are."""
    if tint <= 0:
        return None
    return (tint / 100.0) * (np.asarray(cover_means, dtype=np.float64) - shown_means)
