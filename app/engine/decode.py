"""Decode any still image a user may hand us into an upright 8-bit RGB picture.

This is the first step of the engine's data path (decode -> tiles -> features -> index ->
matching -> render). Everything that can go wrong with a file is turned into
:class:`~app.engine.errors.ImageRejected` naming the file, so one bad file never sinks a library.
"""

from __future__ import annotations

import functools
import io
import logging
import os
from collections.abc import Callable
from typing import BinaryIO, TypeVar

import numpy as np
import pillow_heif
from PIL import Image, UnidentifiedImageError

from app.engine.errors import ImageRejected, ImageTooLarge

log = logging.getLogger(__name__)
pillow_heif.register_heif_opener()  # HEIC/HEIF photos from phones

ImageSource = str | os.PathLike[str] | bytes | BinaryIO
RGB = tuple[int, int, int]
#: A function from the upright (width, height) of an image to the smallest size we need it at.
SizeNeed = Callable[[int, int], tuple[int, int]]

#: Raster formats we accept, decided by content (Pillow's identification), never by file name.
ALLOWED_FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF", "HEIF", "AVIF", "PPM")
#: Pillow's own default ceiling (about 89 megapixels): a 12 MP or 50 MP phone photo passes.
DEFAULT_MAX_PIXELS = 89_478_485
WHITE: RGB = (255, 255, 255)
T = TypeVar("T")
#: What makes a picture upright, by its EXIF orientation (1, "as stored", needs nothing).
_ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPPING_TRANSPOSES = {
    Image.Transpose.TRANSPOSE,
    Image.Transpose.ROTATE_270,
    Image.Transpose.TRANSVERSE,
    Image.Transpose.ROTATE_90,
}


def load_rgb(
    source: ImageSource,
    *,
    name: str | None = None,
    need: SizeNeed | None = None,
    background: RGB = WHITE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Image.Image:
    """Open, check and decode one image into an upright RGB :class:`PIL.Image.Image`.

    Parameters
    ----------
    source
        A path, the file's bytes, or a binary file object.
    name
        How errors name the file; defaults to the path.
    need
        Given the upright size, returns the smallest size the caller will use. JPEGs are then
        decoded in reduced-size (DCT scaling) mode, never smaller than that.
    background
        The colour transparent pixels are composited onto.
    max_pixels
        Images with more pixels are refused before any pixel is decoded.

    Raises
    ------
    ImageRejected
        The file is empty, not a supported raster image, truncated or corrupt.
    ImageTooLarge
        The header announces more than ``max_pixels`` pixels.
    """

    def upright(im: Image.Image, turn: Image.Transpose | None) -> Image.Image:
        rgb = to_rgb(im, background=background)
        if turn is None:
            return rgb.copy() if rgb is im else rgb  # the opened image is closed on return
        turned = rgb.transpose(turn)
        for key in ("exif", "xmp", "XML:com.adobe.xmp"):  # so nothing turns it a second time
            turned.info.pop(key, None)
        return turned

    return decode_with(source, upright, name=name, need=need, max_pixels=max_pixels)


def decode_with(
    source: ImageSource,
    finish: Callable[[Image.Image, Image.Transpose | None], T],
    *,
    name: str | None = None,
    need: SizeNeed | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> T:
    """Decode ``source`` as stored (not yet turned upright) and hand it to ``finish``.

    ``finish(image, turn)`` gets the loaded image in the file's stored orientation and the
    transpose that makes it upright (``None`` when it already is), and must not keep ``image``:
    it is closed once ``finish`` returns. Callers that shrink the picture (tiles) can turn the
    small result instead of the full decode. Errors are raised as in :func:`load_rgb`.
    """
    label = name if name is not None else _label(source)
    fp = _as_file(source, label)
    try:
        with _open(fp, label, max_pixels) as im:
            turn = _ORIENTATION_TRANSPOSE.get(_orientation(im, label))
            if need is not None and im.format in ("JPEG", "MPO"):
                _draft(im, need, turn)
            try:
                im.load()
            except (OSError, SyntaxError, ValueError, EOFError) as exc:
                raise ImageRejected(label, f"truncated or corrupt image ({exc})") from exc
            return finish(im, turn)
    finally:
        if fp is not source:
            fp.close()


def upright_size(
    source: ImageSource, *, name: str | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[int, int]:
    """Check an image's header (format, pixel count) without decoding it; return the
    (width, height) it has once its EXIF orientation is applied."""
    label = name if name is not None else _label(source)
    fp = _as_file(source, label)
    try:
        with _open(fp, label, max_pixels) as im:
            return swap_if_turned(im.size, _ORIENTATION_TRANSPOSE.get(_orientation(im, label)))
    finally:
        if fp is not source:
            fp.close()


def to_rgb(im: Image.Image, *, background: RGB = WHITE, grey_ok: bool = False) -> Image.Image:
    """Convert an image of any mode to 8-bit RGB (or 8-bit 'L' for greyscale when ``grey_ok``,
    for a caller that shrinks the picture before it needs three channels).

    16-bit and 32-bit greyscale are scaled (not clipped) to 8 bits; transparent pixels,
    whether from an alpha channel or a palette's transparency entry, are composited onto
    ``background`` so a tile is matched by what it shows.

    Wide and transparent images are converted in strips of rows, so the memory this takes beyond
    the decoded source is the 8-bit result plus one strip, whatever the source's depth.
    """
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return _wide_grey_to_8bit(im, "L" if grey_ok else "RGB")
    if grey_ok and im.mode == "L" and "transparency" not in im.info:
        return im
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        canvas = Image.new("RGB", im.size, background)
        for box in _strips(im):
            rgba = im.crop(box).convert("RGBA")
            canvas.paste(rgba, box, mask=rgba.getchannel("A"))
        return canvas
    if im.mode != "RGB":
        return im.convert("RGB")
    return im


#: Pixels converted at a time by the strip-wise conversions (a few MB of float64 per strip).
_STRIP_PIXELS = 1 << 19


def _strips(im: Image.Image) -> list[tuple[int, int, int, int]]:
    rows = max(1, _STRIP_PIXELS // im.width)
    return [(0, top, im.width, min(im.height, top + rows)) for top in range(0, im.height, rows)]


def _wide_grey_to_8bit(im: Image.Image, mode: str) -> Image.Image:
    """16/32-bit or float greyscale to 8-bit ``mode`` ('L' or 'RGB') by scaling the full range
    down, strip by strip (only the 8-bit result is ever whole)."""
    strips = _strips(im)
    peak = max((float(np.nanmax(np.asarray(im.crop(box)), initial=0.0)) for box in strips), default=0.0)
    if im.mode == "F" and peak <= 1.0:
        factor = 255.0
    elif peak > 255:
        factor = 1 / 257.0  # 65535 -> 255
    else:
        factor = 1.0
    out = Image.new(mode, im.size)
    for box in strips:
        values = np.asarray(im.crop(box)).astype(np.float64) * factor
        np.nan_to_num(values, copy=False, nan=0.0)
        strip = Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8))
        out.paste(strip if mode == "L" else strip.convert(mode), box[:2])
    return out


def _open(fp: BinaryIO, label: str, max_pixels: int | None) -> Image.Image:
    try:
        im = Image.open(fp, formats=_registered_formats())
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(label, f"image too large ({exc})") from exc
    except Image.DecompressionBombWarning as exc:  # only raised when warnings are errors
        raise ImageTooLarge(label, f"image too large ({exc})") from exc
    except UnidentifiedImageError as exc:
        if _is_empty(fp):  # checked only on failure: one system call less per good file
            raise ImageRejected(label, "empty file") from exc
        raise ImageRejected(label, "not a supported image (JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC)") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageRejected(label, f"corrupt image header ({exc})") from exc
    width, height = im.size
    if width < 1 or height < 1:
        im.close()
        raise ImageRejected(label, "image has no pixels")
    if max_pixels is not None and width * height > max_pixels:
        im.close()
        raise ImageTooLarge(
            label,
            f"image too large: {width}x{height} = {width * height / 1e6:.1f} megapixels "
            f"(limit {max_pixels / 1e6:.1f})",
        )
    return im


@functools.cache
def _registered_formats() -> tuple[str, ...]:
    Image.init()  # load every plugin, so the allowed formats are all known to Pillow
    return tuple(f for f in ALLOWED_FORMATS if f in Image.OPEN)


def _draft(im: Image.Image, need: SizeNeed, turn: Image.Transpose | None) -> None:
    """Ask the JPEG decoder for the smallest DCT scale that still covers ``need``."""
    want_w, want_h = need(*swap_if_turned(im.size, turn))
    want = swap_if_turned((max(1, want_w), max(1, want_h)), turn)  # back to stored orientation
    if want[0] < im.width or want[1] < im.height:
        im.draft(im.mode, want)


def swap_if_turned(size: tuple[int, int], turn: Image.Transpose | None) -> tuple[int, int]:
    """``size`` = (w, h) as it reads after ``turn`` (quarter turns swap the sides)."""
    return (size[1], size[0]) if turn in _SWAPPING_TRANSPOSES else size


def _orientation(im: Image.Image, label: str) -> int:
    """The EXIF orientation tag (1, upright as stored, when absent or unreadable)."""
    try:
        return int(im.getexif().get(0x0112, 1))
    except (OSError, SyntaxError, ValueError, TypeError) as exc:  # broken EXIF block
        log.debug("ignoring unreadable EXIF of %s: %s", label, exc)
        return 1


def _as_file(source: ImageSource, label: str) -> BinaryIO:
    if isinstance(source, bytes):
        if not source:
            raise ImageRejected(label, "empty file")
        return io.BytesIO(source)
    if isinstance(source, (str, os.PathLike)):
        try:
            return open(source, "rb")
        except OSError as exc:
            raise ImageRejected(label, f"cannot read file ({exc.strerror or exc})") from exc
    return source


def _is_empty(fp: BinaryIO) -> bool:
    try:
        return fp.seek(0, io.SEEK_END) == 0
    except (OSError, ValueError):
        return False


def _label(source: ImageSource) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return getattr(source, "name", "<image>")
