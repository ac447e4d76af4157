"""Describe tiles and cover cells by comparable feature vectors.

A feature is the mean colour of each of ``grid x grid`` sub-cells (``grid=1``: the mean colour of
the whole cell), in a chosen colour space, flattened to ``grid * grid * 3`` numbers. Tiles and cover
cells go through the same conversion, so distances between them mean the same thing.

:class:`FeatureWeights` reshapes the distance without changing the dimension: each sub-cell value
``b`` becomes ``structure * (b - m) + mean * m``, where ``m`` is the cell's mean and ``structure``
holds one weight per channel (after an optional compression of chroma, :func:`compress_chroma`).
Because the deviations ``b - m`` sum to zero, the squared distance splits exactly into
``grid² * mean² * |Δm|²`` (the cell's overall colour) plus the weighted squared differences of the
deviations (the structure inside the cell), so the two can be traded off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
from numpy.typing import NDArray
from PIL import Image

ColorSpace = Literal["rgb", "lab", "oklab"]
COLOR_SPACES: tuple[str, ...] = get_args(ColorSpace)

_SRGB_TO_XYZ = np.array(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]]
)
_D65_WHITE = np.array([0.95047, 1.0, 1.08883])
_SRGB_TO_LMS = np.array(
    [
        [0.4122214708, 0.5363325363, 0.0514459929],
        [0.2119034982, 0.6806995451, 0.1073969566],
        [0.0883024619, 0.2817188376, 0.6299787005],
    ]
)
_LMS_TO_OKLAB = np.array(
    [
        [0.2104542553, 0.7936177850, -0.0040720468],
        [1.9779984951, -2.4285922050, 0.4505937099],
        [0.0259040371, 0.7827717662, -0.8086757660],
    ]
)


@dataclass(frozen=True)
class FeatureWeights:
    """How much the cell's mean colour and each channel of its inner structure count.

    ``mean`` scales the whole-cell mean; ``structure`` = (L, a, b) weights (or R, G, B) scale the
    sub-cells' deviations from that mean. ``FeatureWeights(1.0, (1.0, 1.0, 1.0))`` is the plain
    sub-cell grid. Both only matter when ``grid > 1``; at ``grid == 1`` every weight is a uniform
    scale, which changes no nearest neighbour.
    """

    mean: float = 1.0
    structure: tuple[float, float, float] = (1.0, 1.0, 1.0)
    chroma_k: float = 0.0


#: Chosen by measurement (bench/quality.py, docs/quality.md). The cell's overall colour counts 1.5
#: times the plain sub-grid's share, and lightness differences inside a cell count double against
#: colour differences there, because the eye reads edges and faces mostly from lightness. Chroma is
#: compressed a little more than CIEDE2000 does (k = 0.1 rather than 0.045), which keeps saturated
#: cells from drowning the lightness structure.
DEFAULT_WEIGHTS = FeatureWeights(mean=1.5, structure=(2.0, 1.0, 1.0), chroma_k=0.1)
#: Oklab (scaled by 100) already has small a/b next to its lightness: no chroma compression.
OKLAB_WEIGHTS = FeatureWeights(mean=1.5, structure=(2.0, 1.0, 1.0))
PLAIN_WEIGHTS = FeatureWeights()


def weights_for(color_space: ColorSpace) -> FeatureWeights:
    """The feature weights the engine uses in ``color_space`` (RGB is kept plain, as a baseline)."""
    return {"lab": DEFAULT_WEIGHTS, "oklab": OKLAB_WEIGHTS}.get(color_space, PLAIN_WEIGHTS)


def convert_colors(rgb: NDArray[np.floating], space: ColorSpace) -> NDArray[np.float32]:
    """Convert sRGB values in 0..255, shape ``(..., 3)``, into ``space``.

    ``rgb`` is returned as is (0..255); ``lab`` is CIELAB (D65, L in 0..100); ``oklab`` is Oklab
    scaled by 100 so its lightness spans 0..100 like CIELAB's.
    """
    values = np.asarray(rgb, dtype=np.float64)
    if space == "rgb":
        return values.astype(np.float32)
    linear = _srgb_to_linear(values / 255.0)
    if space == "lab":
        xyz = linear @ _SRGB_TO_XYZ.T / _D65_WHITE
        f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
        lab = np.stack(
            [116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])],
            axis=-1,
        )
        return lab.astype(np.float32)
    if space == "oklab":
        lms = np.cbrt(linear @ _SRGB_TO_LMS.T)
        return (100.0 * lms @ _LMS_TO_OKLAB.T).astype(np.float32)
    raise ValueError(f"unknown colour space {space!r}; choose one of {', '.join(COLOR_SPACES)}")


def _srgb_to_linear(c: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


_BLOCK_MEANS_BYTES = 32 * 2**20  # float64 temporaries of block_means, per chunk


def block_means(images: NDArray[np.uint8], grid: int) -> NDArray[np.float64]:
    """Exact area means of ``grid x grid`` blocks of each image.

    ``images`` is ``(n, h, w, c)``; the result is ``(n, grid, grid, c)`` in 0..255. Blocks need not
    align with pixels: a pixel straddling two blocks counts in each by its covered fraction.
    """
    n, height, width, channels = images.shape
    if images.dtype == np.uint8 and height % grid == 0 and width % grid == 0:
        return _aligned_block_means(images, grid)
    rows = _area_weights(height, grid)  # (grid, h)
    cols = _area_weights(width, grid)  # (grid, w)
    out = np.empty((n, grid, grid, channels))
    # In chunks: einsum casts its uint8 operand to float64 whole, 8x the library's size.
    step = max(1, _BLOCK_MEANS_BYTES // max(1, height * width * channels * 8))
    for s in range(0, n, step):
        # Sum over columns first (the cheaper contraction for tall stacks), then over rows.
        by_cols = np.einsum("nhwc,bw->nhbc", images[s : s + step], cols, dtype=np.float64, optimize=True)
        out[s : s + step] = np.einsum("nhbc,ah->nabc", by_cols, rows, optimize=True)
    return out


def _aligned_block_means(images: NDArray[np.uint8], grid: int) -> NDArray[np.float64]:
    """:func:`block_means` when the blocks are whole pixels (the usual case: tile sizes are
    multiples of the grid): integer sums of each block, with no float64 copy of the pixels
    (2 to 3x faster than the weighted contraction, and exact)."""
    n, height, width, channels = images.shape
    bh, bw = height // grid, width // grid
    if bh * bw * 255 >= 2**32:  # pragma: no cover - blocks of 16 million pixels and more
        sums = images.reshape(n, grid, bh, grid, bw, channels).sum(axis=(2, 4), dtype=np.uint64)
    else:
        sums = images.reshape(n, grid, bh, grid, bw, channels).sum(axis=(2, 4), dtype=np.uint32)
    return sums / float(bh * bw)


def _area_weights(length: int, parts: int) -> NDArray[np.float64]:
    """``(parts, length)`` matrix whose row ``i`` averages the pixels of the ``i``-th equal part."""
    edges = np.linspace(0.0, length, parts + 1)
    pixel_lo = np.arange(length)
    overlap = np.clip(
        np.minimum(edges[1:, None], pixel_lo[None, :] + 1) - np.maximum(edges[:-1, None], pixel_lo[None, :]),
        0.0,
        None,
    )
    return overlap / overlap.sum(axis=1, keepdims=True)


def weighted(blocks: NDArray[np.floating], weights: FeatureWeights) -> NDArray[np.float32]:
    """Apply ``weights`` to block colours ``(n, grid, grid, 3)``; returns ``(n, grid * grid * 3)``."""
    n = len(blocks)
    if weights == PLAIN_WEIGHTS:
        return np.asarray(blocks, dtype=np.float32).reshape(n, -1)
    blocks = compress_chroma(blocks, weights.chroma_k) if weights.chroma_k > 0 else blocks
    mean = blocks.mean(axis=(1, 2), keepdims=True)
    structure = np.asarray(weights.structure, dtype=np.float64)
    out = structure * (blocks - mean) + weights.mean * mean
    return out.astype(np.float32).reshape(n, -1)


def compress_chroma(lab: NDArray[np.floating], k: float) -> NDArray[np.float64]:
    """Shrink the chroma ``C`` of ``(..., 3)`` Lab-like colours to ``ln(1 + k C) / k``, hue kept.

    CIEDE2000 divides chroma differences by ``1 + 0.045 C``; integrating that gives this curve,
    so Euclidean distances after it weigh chroma the way CIEDE2000 does instead of overweighting
    saturated colours (the same idea as CAM02-UCS's colourfulness compression).
    """
    lab = np.asarray(lab, dtype=np.float64)
    chroma = np.hypot(lab[..., 1], lab[..., 2])
    scale = np.log1p(k * chroma) / (k * np.maximum(chroma, 1e-9))
    return np.concatenate([lab[..., :1], lab[..., 1:] * scale[..., None]], axis=-1)


def on_background(
    white: NDArray[np.floating],
    opacity: NDArray[np.floating],
    background: NDArray[np.floating] | NDArray[np.uint8] | float,
) -> NDArray[np.float64]:
    """Colours ``(..., 3)`` of tile pixels or block means as they show on ``background`` (sRGB
    0..255, broadcast against ``white``), from the same composited onto white ``white`` and their
    opacity ``opacity`` ``(...)`` in 0..1: ``white + (1 - opacity) * (background - 255)``. Block
    means composite exactly so, because compositing is linear in the pixel values."""
    cover = (1.0 - np.asarray(opacity, dtype=np.float64))[..., None]
    return np.asarray(white, dtype=np.float64) + cover * (np.asarray(background, dtype=np.float64) - 255.0)


def block_features(
    blocks: NDArray[np.floating], *, color_space: ColorSpace = "lab", weights: FeatureWeights | None = None
) -> NDArray[np.float32]:
    """Feature vectors ``(n, grid * grid * 3)`` of block mean colours ``(n, grid, grid, 3)`` sRGB."""
    return weighted(convert_colors(blocks, color_space), weights or weights_for(color_space))


def tile_features(
    images: NDArray[np.uint8],
    *,
    color_space: ColorSpace = "lab",
    grid: int = 1,
    weights: FeatureWeights | None = None,
) -> NDArray[np.float32]:
    """Feature vectors ``(n, grid * grid * 3)`` of tiles ``(n, h, w, 3)``; ``weights`` defaults to
    the engine's (:func:`weights_for`), so tiles and cells always agree."""
    _check_grid(grid)
    means = block_means(images, grid)
    return weighted(convert_colors(means, color_space), weights or weights_for(color_space))


def cover_features(
    cover: Image.Image,
    cols: int,
    rows: int,
    *,
    color_space: ColorSpace = "lab",
    grid: int = 1,
    weights: FeatureWeights | None = None,
) -> NDArray[np.float32]:
    """Feature vectors ``(rows * cols, grid * grid * 3)`` of the cover's cells, row by row.

    The cover is area-averaged (box filter) straight down to ``cols*grid x rows*grid`` pixels,
    which gives each block's exact mean colour in one vectorised step.
    """
    _check_grid(grid)
    small = np.asarray(
        cover.convert("RGB").resize((cols * grid, rows * grid), Image.Resampling.BOX),
        dtype=np.float64,
    )
    blocks = small.reshape(rows, grid, cols, grid, 3).transpose(0, 2, 1, 3, 4)
    lab = convert_colors(blocks, color_space).reshape(rows * cols, grid, grid, 3)
    return weighted(lab, weights or weights_for(color_space))


def cell_means(cover: Image.Image, cols: int, rows: int) -> NDArray[np.float64]:
    """The cover's mean colour per cell, ``(rows, cols, 3)`` sRGB in 0..255 (box filter)."""
    small = cover.convert("RGB").resize((cols, rows), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float64)


def _check_grid(grid: int) -> None:
    if grid < 1:
        raise ValueError(f"cell grid must be at least 1, got {grid}")


@dataclass(frozen=True)
class FeatureSpec:
    """The feature settings of an index (``color_space``, ``cell_grid``), so tile features can be
    computed where the tiles are decoded and kept with them (the command line's tile cache)."""

    color_space: ColorSpace = "lab"
    grid: int = 1

    @property
    def key(self) -> str:
        """Names these settings and the weights they imply: features stored under one key are
        exactly what :meth:`of` computes today."""
        w = weights_for(self.color_space)
        return f"f1:{self.color_space}:{self.grid}:{w.mean}:{','.join(map(str, w.structure))}:{w.chroma_k}"

    @property
    def dims(self) -> int:
        return self.grid * self.grid * 3

    def of(self, images: NDArray[np.uint8]) -> NDArray[np.float32]:
        """:func:`tile_features` of ``images`` with these settings."""
        return tile_features(images, color_space=self.color_space, grid=self.grid)
