"""Describe tiles and cover cells by comparable feature vectors.

A feature is the mean colour of each of ``grid x grid`` sub-cells (``grid=1``: the mean colour of
the whole cell), in a chosen colour space, flattened to ``grid * grid * 3`` numbers. Tiles and cover
cells go through the same conversion, so distances between them mean the same thing.
"""

from __future__ import annotations

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

    ``images`` is ``(n, h, w, 3)``; the result is ``(n, grid, grid, 3)`` in 0..255. Blocks need not
    align with pixels: a pixel straddling two blocks counts in each by its covered fraction.
    """
    n, height, width, _ = images.shape
    rows = _area_weights(height, grid)  # (grid, h)
    cols = _area_weights(width, grid)  # (grid, w)
    out = np.empty((n, grid, grid, 3))
    # In chunks: einsum casts its uint8 operand to float64 whole, 8x the library's size.
    step = max(1, _BLOCK_MEANS_BYTES // max(1, height * width * 3 * 8))
    for s in range(0, n, step):
        # Sum over columns first (the cheaper contraction for tall stacks), then over rows.
        by_cols = np.einsum("nhwc,bw->nhbc", images[s : s + step], cols, dtype=np.float64, optimize=True)
        out[s : s + step] = np.einsum("nhbc,ah->nabc", by_cols, rows, optimize=True)
    return out


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


def tile_features(
    images: NDArray[np.uint8], *, color_space: ColorSpace = "lab", grid: int = 1
) -> NDArray[np.float32]:
    """Feature vectors ``(n, grid * grid * 3)`` of tiles ``(n, h, w, 3)``."""
    _check_grid(grid)
    means = block_means(images, grid)
    return convert_colors(means, color_space).reshape(len(images), grid * grid * 3)


def cover_features(
    cover: Image.Image, cols: int, rows: int, *, color_space: ColorSpace = "lab", grid: int = 1
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
    return convert_colors(blocks, color_space).reshape(rows * cols, grid * grid * 3)


def _check_grid(grid: int) -> None:
    if grid < 1:
        raise ValueError(f"cell grid must be at least 1, got {grid}")
