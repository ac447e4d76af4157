"""Stitch the chosen tiles into one picture and encode it."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from app.engine.errors import BadParameter, OutputTooLarge
from app.engine.tiff import Band, array_bands, write_tiff

#: ``progress(done, total)``: strips of the picture rendered so far.
Progress = Callable[[int, int], None]
#: Output formats by name, with the largest side each can store.
FORMAT_LIMITS = {"jpeg": 65_500, "png": 2**31 - 1, "webp": 16_383, "tiff": 2**31 - 1}
_EXTENSIONS = {
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".png": "png",
    ".webp": "webp",
    ".tif": "tiff",
    ".tiff": "tiff",
}
#: The largest TIFF, in pixels, unless the caller passes another limit: written band by band
#: (app/engine/tiff.py), a TIFF's memory does not grow with its size, unlike the other formats'.
MAX_TIFF_PIXELS = 2_000_000_000
#: The resolution written into a file unless the caller asks for another.
DEFAULT_DPI = 300
_X_RESOLUTION, _Y_RESOLUTION, _RESOLUTION_UNIT = 282, 283, 296  # EXIF / TIFF tags
MEDIA_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp", "tiff": "image/tiff"}
FILE_EXTENSIONS = {"jpeg": ".jpg", "png": ".png", "webp": ".webp", "tiff": ".tif"}


def stitch(
    tiles: NDArray[np.uint8],
    grid: NDArray[np.intp],
    *,
    cell_offsets: NDArray[np.floating | np.integer] | None = None,
    progress: Progress | None = None,
) -> NDArray[np.uint8]:
    """Lay ``tiles`` ``(n, h, w, 3)`` out as ``grid`` ``(rows, cols)`` says: one array
    ``(rows * h, cols * w, 3)``, no loop per cell.

    The picture is an RGBX canvas (see :func:`new_canvas`), filled one row of tiles (a strip) at a
    time by fancy indexing, whole pixels moved as 32-bit words; besides the output only the used
    tiles (as RGBX) and one strip's worth of temporaries exist. ``cell_offsets``
    ``(rows, cols, 3)``, in 0..255 RGB units, is added to every pixel of the tile in that cell
    (colour correction, ``tint``), clipped to 0..255; ``None`` leaves the tiles untouched.
    ``progress(done, total)`` is called after each strip.
    """
    rows, cols = grid.shape
    _, h, w, _ = tiles.shape
    if cell_offsets is not None and cell_offsets.shape != (rows, cols, 3):
        raise ValueError(f"cell_offsets must be {(rows, cols, 3)}, got {cell_offsets.shape}")
    used, local = np.unique(grid, return_inverse=True)
    pixels = _rgbx_words(tiles[used])  # (n_used, h, w) uint32
    local = local.reshape(rows, cols)
    out = new_canvas(rows * h, cols * w)
    words = out.base.view(np.uint32).reshape(rows * h, cols * w)  # type: ignore[union-attr]
    strips = words.reshape(rows, h, cols, w)  # a view: strips[r, :, c] is the cell (r, c)
    rgb_strips = out.reshape(rows, h, cols, w, 3)
    for r in range(rows):
        strips[r].transpose(1, 0, 2)[...] = pixels[local[r]]  # only (cols, h, w) is temporary
        if cell_offsets is not None:
            strip = rgb_strips[r]  # (h, cols, w, 3)
            shift = np.rint(cell_offsets[r]).astype(np.int16)[None, :, None, :]  # over h and w
            np.clip(strip + shift, 0, 255, out=strip, casting="unsafe")
        if progress is not None:
            progress(r + 1, rows)
    return out


def new_canvas(height: int, width: int) -> NDArray[np.uint8]:
    """An uninitialised ``(height, width, 3)`` picture stored as RGBX (4 bytes a pixel, the
    fourth unused): the layout Pillow keeps RGB pictures in, so :func:`encode` can map it into
    the encoder instead of copying it."""
    return np.empty((height, width, 4), dtype=np.uint8)[:, :, :3]


def _rgbx_words(tiles: NDArray[np.uint8]) -> NDArray[np.uint32]:
    """``tiles`` ``(n, h, w, 3)`` as ``(n, h, w)`` 32-bit RGBX pixels (native byte order)."""
    n, h, w, _ = tiles.shape
    rgbx = np.empty((n, h, w, 4), dtype=np.uint8)
    rgbx[..., :3] = tiles
    rgbx[..., 3] = 255
    return rgbx.view(np.uint32).reshape(n, h, w)


def as_pil(image: NDArray[np.uint8]) -> Image.Image:
    """``image`` ``(H, W, 3)`` as a Pillow picture; one from :func:`new_canvas` is mapped without
    a copy (mode ``RGBX``, which the JPEG and WebP encoders read as RGB)."""
    rgbx = _rgbx_base(image)
    if rgbx is not None:
        height, width = image.shape[:2]
        return Image.frombuffer("RGBX", (width, height), rgbx, "raw", "RGBX", 0, 1)
    return Image.fromarray(np.ascontiguousarray(image), mode="RGB")


def _rgbx_base(image: NDArray[np.uint8]) -> NDArray[np.uint8] | None:
    """The ``(H, W, 4)`` buffer ``image`` is the first three channels of, if it is one."""
    base = image.base
    if not isinstance(base, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        return None
    height, width = image.shape[:2]
    if (
        base.shape == (height, width, 4)
        and base.dtype == np.uint8
        and base.flags.c_contiguous
        and image.__array_interface__["data"][0] == base.__array_interface__["data"][0]
        and image.strides == base.strides
    ):
        return base
    return None


def format_for_path(path: str | os.PathLike[str]) -> str:
    """The output format an output file name asks for (by extension)."""
    ext = Path(path).suffix.lower()
    if ext not in _EXTENSIONS:
        raise BadParameter("output", f"unknown output extension {ext!r}; use .jpg, .png, .webp or .tif")
    return _EXTENSIONS[ext]


def check_output_size(width: int, height: int, fmt: str, max_pixels: int | None = None) -> None:
    """Refuse outputs a format cannot store, or larger than ``max_pixels``, before rendering."""
    if fmt not in FORMAT_LIMITS:
        raise BadParameter("format", f"unknown format {fmt!r}; choose jpeg, png, webp or tiff")
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
    image: NDArray[np.uint8],
    fp: str | os.PathLike[str] | BinaryIO,
    fmt: str,
    *,
    quality: int = 90,
    dpi: int = DEFAULT_DPI,
) -> None:
    """Write ``image`` ``(H, W, 3)`` as ``fmt`` (jpeg, png, webp or tiff) to a path or file
    object, its resolution ``dpi`` recorded in the file (JFIF density, PNG ``pHYs``, WebP EXIF,
    TIFF resolution tags)."""
    height, width = image.shape[:2]
    check_output_size(width, height, fmt)
    if fmt == "tiff":
        write_tiff(fp, width, height, array_bands(image), dpi=dpi)
        return
    pil = as_pil(image)
    if fmt == "jpeg":
        pil.save(fp, "JPEG", quality=quality, optimize=False, subsampling="4:2:0", dpi=(dpi, dpi))
    elif fmt == "png":  # PNG has no RGBX: this one copy is unavoidable with Pillow
        (pil if pil.mode == "RGB" else pil.convert("RGB")).save(fp, "PNG", compress_level=3, dpi=(dpi, dpi))
    else:  # WebP has no density field of its own: the EXIF resolution tags carry it
        pil.save(fp, "WEBP", quality=quality, method=4, exif=resolution_exif(dpi))


def resolution_exif(dpi: int) -> Image.Exif:
    """EXIF holding ``dpi`` as XResolution / YResolution in inches."""
    exif = Image.Exif()
    exif[_X_RESOLUTION] = float(dpi)
    exif[_Y_RESOLUTION] = float(dpi)
    exif[_RESOLUTION_UNIT] = 2  # inches
    return exif


def print_size(width: int, height: int, dpi: int) -> dict[str, float]:
    """The print size of a ``width`` x ``height`` px picture at ``dpi``: the report's ``print``,
    ``{"dpi", "width_cm", "height_cm", "width_in", "height_in"}`` (cm to 0.1, inches to 0.01)."""
    width_in, height_in = width / dpi, height / dpi
    return {
        "dpi": dpi,
        "width_cm": round(width_in * 2.54, 1),
        "height_cm": round(height_in * 2.54, 1),
        "width_in": round(width_in, 2),
        "height_in": round(height_in, 2),
    }


def cell_bands(
    tiles: NDArray[np.uint8], grid: NDArray[np.intp], cell_offsets: NDArray[np.floating | np.integer] | None
) -> Band:
    """Bands of the mosaic that ``tiles`` ``(n, h, w, 3)`` laid out as ``grid`` ``(rows, cols)``
    with ``cell_offsets`` (the tint, as :func:`stitch` takes it) make, drawn
    one band at a time: only the rows of cells a band crosses are stitched."""
    cell_h = tiles.shape[1]

    def band(y0: int, y1: int) -> NDArray[np.uint8]:
        r0, r1 = y0 // cell_h, -(-y1 // cell_h)
        offsets = None if cell_offsets is None else cell_offsets[r0:r1]
        strip = stitch(tiles, grid[r0:r1], cell_offsets=offsets)
        return strip[y0 - r0 * cell_h : y1 - r0 * cell_h]

    return band
