"""Stitch the chosen tiles into one picture and encode it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from app.engine.errors import BadParameter, OutputTooLarge

#: Output formats by name, with the largest side each can store.
FORMAT_LIMITS = {"jpeg": 65_500, "png": 2**31 - 1, "webp": 16_383}
_EXTENSIONS = {".jpg": "jpeg", ".jpeg": "jpeg", ".png": "png", ".webp": "webp"}
MEDIA_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
FILE_EXTENSIONS = {"jpeg": ".jpg", "png": ".png", "webp": ".webp"}


def stitch(
    tiles: NDArray[np.uint8], grid: NDArray[np.intp], *, cell_offsets: NDArray[np.floating] | None = None
) -> NDArray[np.uint8]:
    """Lay ``tiles`` ``(n, h, w, 3)`` out as ``grid`` ``(rows, cols)`` says: one array
    ``(rows * h, cols * w, 3)``, built by a single fancy-indexing step, no loop per cell.

    ``cell_offsets`` ``(rows, cols, 3)``, in 0..255 RGB units, is added to every pixel of the tile
    in that cell (colour correction, ``tint``), clipped to 0..255; ``None`` leaves tiles untouched."""
    rows, cols = grid.shape
    _, h, w, _ = tiles.shape
    out = np.empty((rows, h, cols, w, 3), dtype=np.uint8)
    # out[r, :, c, :, :] = tiles[grid[r, c]]; writing through a transposed view avoids a copy.
    out.transpose(0, 2, 1, 3, 4)[...] = tiles[grid]
    if cell_offsets is not None:
        shift = np.rint(cell_offsets).astype(np.int16)[:, None, :, None, :]  # broadcast over h and w
        np.clip(out + shift, 0, 255, out=out, casting="unsafe")
    return out.reshape(rows * h, cols * w, 3)


def format_for_path(path: str | os.PathLike[str]) -> str:
    """The output format an output file name asks for (by extension)."""
    ext = Path(path).suffix.lower()
    if ext not in _EXTENSIONS:
        raise BadParameter("output", f"unknown output extension {ext!r}; use .jpg, .png or .webp")
    return _EXTENSIONS[ext]


def check_output_size(width: int, height: int, fmt: str, max_pixels: int | None = None) -> None:
    """Refuse outputs a format cannot store, or larger than ``max_pixels``, before rendering."""
    if fmt not in FORMAT_LIMITS:
        raise BadParameter("format", f"unknown format {fmt!r}; choose jpeg, png or webp")
    limit = FORMAT_LIMITS[fmt]
    if max(width, height) > limit:
        raise OutputTooLarge(
            "format",
            f"a {width}x{height} mosaic is too large for {fmt.upper()} (at most {limit} px a side); "
            "use fewer columns, smaller tiles or PNG",
        )
    if max_pixels is not None and width * height > max_pixels:
        raise OutputTooLarge(
            "cols",
            f"a {width}x{height} mosaic has {width * height / 1e6:.0f} megapixels, more than the "
            f"limit of {max_pixels / 1e6:.0f}; use fewer columns or smaller tiles",
        )


def encode(
    image: NDArray[np.uint8], fp: str | os.PathLike[str] | BinaryIO, fmt: str, *, quality: int = 90
) -> None:
    """Write ``image`` ``(H, W, 3)`` as ``fmt`` (jpeg, png or webp) to a path or file object."""
    height, width = image.shape[:2]
    check_output_size(width, height, fmt)
    pil = Image.fromarray(image, mode="RGB")
    if fmt == "jpeg":
        pil.save(fp, "JPEG", quality=quality, optimize=False, subsampling="4:2:0")
    elif fmt == "png":
        pil.save(fp, "PNG", compress_level=3)
    else:
        pil.save(fp, "WEBP", quality=quality, method=4)
