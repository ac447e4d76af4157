"""Zoom and assemble animations of a mosaic, drawn from its cell grid at each frame's resolution.

A :class:`MosaicScene` holds the tiles of a mosaic as a mip chain (each level half the size of
the one before) and draws any view of the mosaic at any output size: it stitches only the cells
in view, from the smallest mip level that still has enough pixels for them, then resamples that
small picture to the frame. No frame ever touches the full-size mosaic. Transparent tiles keep
their opacity through the mip chain and the detailed decodes and are laid over their cell's
background (the render's ``backgrounds``) as each frame is drawn, so every frame shows the
composite the render shows.

Kinds:

``zoom``
    From the whole mosaic down into one cell (``reverse``: back out). The view's width follows
    an exponential path (linear in log scale), so the zoom speed looks constant.
``assemble`` / ``disperse``
    The tiles fly in from scattered places to form the mosaic, or fly apart from it.

Frames go to MP4 (H.264 through the ffmpeg that the ``imageio-ffmpeg`` wheel carries), or to an
animated GIF or WebP through Pillow.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from app.engine.decode import DEFAULT_MAX_PIXELS, ImageSource
from app.engine.errors import BadParameter, ImageRejected
from app.engine.pyramid import check_placement, shrink2, stitch_cells
from app.engine.render import lay_over
from app.engine.tiles import TileSet, make_tile, make_tile_rgba

Kind = Literal["zoom", "assemble", "disperse"]
VideoFormat = Literal["mp4", "gif", "webp"]
KINDS: tuple[Kind, ...] = ("zoom", "assemble", "disperse")
VIDEO_FORMATS: tuple[VideoFormat, ...] = ("mp4", "gif", "webp")
VIDEO_MEDIA_TYPES = {"mp4": "video/mp4", "gif": "image/gif", "webp": "image/webp"}
#: Largest frame side per format; GIF and WebP frames are also held in memory until written.
MAX_SIDE = {"mp4": 3840, "gif": 1280, "webp": 1920}
MAX_STILL_FRAME_PIXELS = 60_000_000  # frames x width x height, for GIF and WebP
MAX_FRAMES = 3600
MAX_DETAIL = 1024  # largest size a tile is decoded at for the last frames of a zoom
BACKGROUND = (17, 17, 17)

#: A rectangle of the full-size mosaic, in its pixels (floats): x0, y0, x1, y1.
View = tuple[float, float, float, float]
#: ``detail(tile, (w, h))``: tile ``tile`` of the scene decoded at ``(w, h)``, ``(h, w, 3)`` uint8,
#: or ``(h, w, 4)`` for a scene with ``alpha``: the colours on white, then the opacity.
Detail = Callable[[int, tuple[int, int]], NDArray[np.uint8]]
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class AnimationSpec:
    """What a user asks of an animation; :meth:`validate` checks it against the mosaic's grid."""

    kind: Kind = "zoom"
    fmt: VideoFormat = "mp4"
    seconds: float = 8.0
    width: int = 1280
    height: int = 720
    fps: int = 24
    col: int | None = None  # the cell a zoom ends in (default: the middle one)
    row: int | None = None
    reverse: bool = False  # zoom out of the cell instead of into it
    seed: int = 0  # where the tiles of assemble/disperse come from

    @property
    def frames(self) -> int:
        return max(2, round(self.seconds * self.fps))

    def validate(self, cols: int, rows: int) -> AnimationSpec:
        """Raise :class:`BadParameter` naming the first bad field; returns ``self``."""
        if self.kind not in KINDS:
            raise BadParameter("kind", f"must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.fmt not in VIDEO_FORMATS:
            raise BadParameter("format", f"must be one of {', '.join(VIDEO_FORMATS)}, got {self.fmt!r}")
        if not 0.5 <= self.seconds <= 120:
            raise BadParameter("seconds", f"must be between 0.5 and 120, got {self.seconds}")
        if not 1 <= self.fps <= 60:
            raise BadParameter("fps", f"must be between 1 and 60, got {self.fps}")
        side = MAX_SIDE[self.fmt]
        for name, value in (("width", self.width), ("height", self.height)):
            if not 16 <= value <= side:
                raise BadParameter(name, f"must be between 16 and {side} for {self.fmt}, got {value}")
            if self.fmt == "mp4" and value % 2:
                raise BadParameter(name, f"must be even for H.264 video, got {value}")
        if self.frames > MAX_FRAMES:
            raise BadParameter("seconds", f"at most {MAX_FRAMES} frames (seconds x fps), got {self.frames}")
        if self.fmt != "mp4" and self.frames * self.width * self.height > MAX_STILL_FRAME_PIXELS:
            raise BadParameter(
                "seconds", f"too long for a {self.fmt.upper()} of this size: use MP4, fewer seconds or fps"
            )
        for axis, index, limit in (("col", self.col, cols), ("row", self.row, rows)):
            if index is not None and not 0 <= index < limit:
                raise BadParameter(axis, f"must be between 0 and {limit - 1} for this mosaic, got {index}")
        return self

    def target(self, cols: int, rows: int) -> tuple[int, int]:
        """(col, row) of the zoom's cell."""
        return (cols // 2 if self.col is None else self.col), (rows // 2 if self.row is None else self.row)


class MosaicScene:
    """A mosaic that can be drawn at any scale.

    Parameters
    ----------
    images
        ``uint8`` ``(n, h, w, 3)``: the tiles the grid refers to, at the most detail at hand.
    grid
        ``(rows, cols)`` indexes into ``images``.
    cell_size
        (width, height) of one cell in the full-size mosaic: the coordinate system of views.
    detail
        Optional: decodes tile ``i`` larger than ``images`` holds it, for views closer than that.
    offsets
        Optional ``int16`` ``(rows, cols, 3)``: the colour shift the render added to each cell.
    alpha, backgrounds
        Optional, together: ``uint8`` ``(n, h, w)`` opacity of ``images`` (which then hold the tiles
        composited onto white) and ``(rows, cols, 3)`` the colour behind each cell's tile.
    """

    def __init__(
        self,
        images: NDArray[np.uint8],
        grid: NDArray[np.intp],
        cell_size: tuple[int, int],
        *,
        detail: Detail | None = None,
        offsets: NDArray[np.int16] | None = None,
        background: tuple[int, int, int] = BACKGROUND,
        alpha: NDArray[np.uint8] | None = None,
        backgrounds: NDArray[np.uint8] | None = None,
    ) -> None:
        check_placement(images, grid, offsets)
        self.grid = grid
        self.offsets = offsets
        self.backgrounds = None
        self.cell_size = cell_size
        self.background = np.array(background, dtype=np.uint8)
        self.detail = detail
        # Each mip level holds the colours, with the opacity as a fourth channel when transparent.
        self.mips = [images]
        if alpha is not None and backgrounds is not None:
            if alpha.shape != images.shape[:3] or backgrounds.shape != (*grid.shape, 3):
                raise ValueError("alpha must be (n, h, w) like images, backgrounds (rows, cols, 3) like grid")
            self.backgrounds = backgrounds
            self.mips = [np.concatenate([images, alpha[..., None]], axis=3)]
        while max(self.mips[-1].shape[1:3]) > 1:
            self.mips.append(shrink2(self.mips[-1]))
        self._detailed: OrderedDict[int, NDArray[np.uint8]] = OrderedDict()

    @property
    def rows(self) -> int:
        return int(self.grid.shape[0])

    @property
    def cols(self) -> int:
        return int(self.grid.shape[1])

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the full-size mosaic."""
        return self.cols * self.cell_size[0], self.rows * self.cell_size[1]

    def cells_for(self, need: tuple[float, float], ids: NDArray[np.intp]) -> tuple[NDArray[np.uint8], bool]:
        """Tile images with at least ``need`` = (w, h) px per cell, if there are any so large.

        Returns ``(images, local)``: when ``local`` the images are only those of ``ids`` (in that
        order, decoded in detail), else the whole mip level (indexed by tile).
        """
        level = self.mip_for(need)
        if level is not self.mips[0] or level.shape[2] >= need[0]:
            return level, False
        top = self.mips[0]
        if self.detail is None or need[0] < 1.25 * top.shape[2]:
            return top, False
        scale = 2 ** math.ceil(math.log2(need[0] / top.shape[2]))
        width = min(MAX_DETAIL, top.shape[2] * scale)
        size = width, max(1, round(width * top.shape[1] / top.shape[2]))
        return np.stack([self._detailed_tile(int(i), size) for i in ids]), True

    def mip_for(self, need: tuple[float, float]) -> NDArray[np.uint8]:
        """The smallest mip level with at least ``need`` = (w, h) px per cell (else the largest)."""
        for level in reversed(self.mips):
            if level.shape[2] >= need[0] and level.shape[1] >= need[1]:
                return level
        return self.mips[0]

    def _detailed_tile(self, tile: int, size: tuple[int, int]) -> NDArray[np.uint8]:
        cached = self._detailed.get(tile)
        if cached is None or cached.shape[1] < size[0]:
            assert self.detail is not None
            cached = self.detail(tile, size)
            self._detailed[tile] = cached
            while len(self._detailed) > 512:
                self._detailed.popitem(last=False)
        self._detailed.move_to_end(tile)
        if (cached.shape[1], cached.shape[0]) == size:
            return cached
        return _resize_cell(cached, size, Image.Resampling.BILINEAR)

    def draw(self, view: View, size: tuple[int, int]) -> NDArray[np.uint8]:
        """The part ``view`` of the mosaic as a ``(height, width, 3)`` frame of ``size``."""
        x0, y0, x1, y1 = view
        tw, th = self.cell_size
        c0, c1 = _clamp(math.floor(x0 / tw), self.cols), _clamp(math.ceil(x1 / tw), self.cols)
        r0, r1 = _clamp(math.floor(y0 / th), self.rows), _clamp(math.ceil(y1 / th), self.rows)
        need = tw * size[0] / (x1 - x0), th * size[1] / (y1 - y0)
        sub = self.grid[r0:r1, c0:c1]
        if sub.size == 0:
            return np.broadcast_to(self.background, (size[1], size[0], 3)).copy()
        ids, local = np.unique(sub, return_inverse=True)
        images, is_local = self.cells_for(need, ids)
        offsets = None if self.offsets is None else self.offsets[r0:r1, c0:c1]
        alpha, backgrounds = None, None
        if self.backgrounds is not None:
            alpha, backgrounds = images[..., 3], self.backgrounds[r0:r1, c0:c1]
        block = stitch_cells(
            images[..., :3], local.reshape(sub.shape) if is_local else sub, offsets, alpha=alpha,
            backgrounds=backgrounds,
        )  # fmt: skip
        mh, mw = images.shape[1:3]
        return _resample(block, (c0 * mw, r0 * mh), (mw / tw, mh / th), view, size, self.background)

    def draw_sprites(
        self, positions: NDArray[np.float64], order: NDArray[np.intp], view: View, size: tuple[int, int]
    ) -> NDArray[np.uint8]:
        """Cells drawn at free ``positions`` ``(rows * cols, 2)`` (top-left x, y in mosaic pixels,
        cells in row-major order), in ``order`` (later ones on top), seen through ``view``."""
        tw, th = self.cell_size
        need = tw * size[0] / (view[2] - view[0]), th * size[1] / (view[3] - view[1])
        images = self.mip_for(need)
        mh, mw = images.shape[1:3]
        sx, sy = mw / tw, mh / th
        ox, oy = math.floor(view[0] * sx), math.floor(view[1] * sy)
        width, height = math.ceil(view[2] * sx) - ox, math.ceil(view[3] * sy) - oy
        canvas = np.empty((height + 2 * mh, width + 2 * mw, 3), dtype=np.uint8)  # a cell of margin
        canvas[...] = self.background
        px = np.rint(positions[order, 0] * sx).astype(np.intp) - ox
        py = np.rint(positions[order, 1] * sy).astype(np.intp) - oy
        inside = (px > -mw) & (px < width) & (py > -mh) & (py < height)
        ys = (py[inside] + mh)[:, None, None] + np.arange(mh)[None, :, None]
        xs = (px[inside] + mw)[:, None, None] + np.arange(mw)[None, None, :]
        drawn = order[inside]
        sprites = images[self.grid.ravel()[drawn]]
        if self.backgrounds is not None:  # each cell's tile over its own background, as rendered
            sprites = lay_over(sprites[..., :3], sprites[..., 3], self.backgrounds.reshape(-1, 3)[drawn])
        if self.offsets is not None:
            shifts = self.offsets.reshape(-1, 3)[drawn][:, None, None, :]
            sprites = np.clip(sprites + shifts, 0, 255).astype(np.uint8)
        canvas[ys, xs] = sprites  # later writes win: the order
        box = view[0] * sx - ox + mw, view[1] * sy - oy + mh, view[2] * sx - ox + mw, view[3] * sy - oy + mh
        return _resize(canvas, box, size)


def scene_of(
    tiles: TileSet,
    grid: NDArray[np.integer],
    cell_size: tuple[int, int],
    *,
    offsets: NDArray[np.int16] | None = None,
    sources: Mapping[str, ImageSource] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    backgrounds: NDArray[np.uint8] | None = None,
) -> MosaicScene:
    """The scene of a mosaic made of ``tiles`` placed as ``grid`` ``(rows, cols)``, each cell shifted
    by the render's ``offsets`` (``MosaicResult.cell_offsets``) and, for transparent tiles, laid
    over its ``backgrounds`` colour (``MosaicResult.backgrounds``). With ``sources`` (tile name ->
    its file), close views decode the tiles' photos in more detail (keeping their alpha)."""
    used, local = np.unique(grid, return_inverse=True)
    see_through = tiles.alpha is not None and backgrounds is not None
    detail = None
    if sources is not None:
        detail = _detail_from(tiles, used, sources, max_pixels, see_through)
    return MosaicScene(
        tiles.images[used], local.reshape(grid.shape).astype(np.intp), cell_size, detail=detail,
        offsets=offsets, alpha=tiles.opacity(used) if see_through else None,
        backgrounds=backgrounds if see_through else None,
    )  # fmt: skip


def _detail_from(
    tiles: TileSet,
    used: NDArray[np.intp],
    sources: Mapping[str, ImageSource],
    max_pixels: int,
    see_through: bool,
) -> Detail:
    def detail(tile: int, size: tuple[int, int]) -> NDArray[np.uint8]:
        index = int(used[tile])
        name = tiles.names[index]
        thumbnail = tiles.images[index]
        if see_through:
            thumbnail = np.concatenate([thumbnail, tiles.opacity(np.array([index]))[0][..., None]], axis=2)
        try:
            if not see_through:
                return make_tile(sources[name], name=name, size=size, max_pixels=max_pixels)
            rgb, alpha = make_tile_rgba(sources[name], name=name, size=size, max_pixels=max_pixels)
        except (KeyError, ImageRejected, OSError):  # gone since: enlarge the thumbnail instead
            return _resize_cell(thumbnail, size, Image.Resampling.BICUBIC)
        opacity = np.full(rgb.shape[:2], 255, np.uint8) if alpha is None else alpha
        return np.concatenate([rgb, opacity[..., None]], axis=2)

    return detail


def _resize_cell(
    cell: NDArray[np.uint8], size: tuple[int, int], method: Image.Resampling
) -> NDArray[np.uint8]:
    """``cell`` ``(h, w, 3 or 4)`` resized to ``size`` channel group by channel group (Pillow would
    premultiply an RGBA picture; these colours are already composited onto white)."""
    rgb = np.asarray(Image.fromarray(np.ascontiguousarray(cell[..., :3])).resize(size, method))
    if cell.shape[2] == 3:
        return rgb
    alpha = np.asarray(Image.fromarray(np.ascontiguousarray(cell[..., 3])).resize(size, method))
    return np.concatenate([rgb, alpha[..., None]], axis=2)


def _clamp(value: int, limit: int) -> int:
    return max(0, min(limit, value))


def _resample(
    block: NDArray[np.uint8],
    origin: tuple[int, int],
    scale: tuple[float, float],
    view: View,
    size: tuple[int, int],
    background: NDArray[np.uint8],
) -> NDArray[np.uint8]:
    """Place ``block`` (whose top-left is ``origin`` in scaled pixels) on a canvas that covers
    ``view`` (mosaic pixels, times ``scale`` = scaled pixels), and resample the view to ``size``."""
    sx, sy = scale
    vx0, vy0, vx1, vy1 = view[0] * sx, view[1] * sy, view[2] * sx, view[3] * sy
    bx0, by0 = origin
    bx1, by1 = bx0 + block.shape[1], by0 + block.shape[0]
    ox, oy = math.floor(min(vx0, bx0)), math.floor(min(vy0, by0))
    ex, ey = math.ceil(max(vx1, bx1)), math.ceil(max(vy1, by1))
    if (ox, oy, ex, ey) == (bx0, by0, bx1, by1):
        canvas = block
    else:
        canvas = np.empty((ey - oy, ex - ox, 3), dtype=np.uint8)
        canvas[...] = background
        canvas[by0 - oy : by1 - oy, bx0 - ox : bx1 - ox] = block
    return _resize(canvas, (vx0 - ox, vy0 - oy, vx1 - ox, vy1 - oy), size)


def _resize(canvas: NDArray[np.uint8], box: View, size: tuple[int, int]) -> NDArray[np.uint8]:
    # Bilinear with Pillow's support scaling: antialiased for the at most 2x reduction a mip
    # level leaves, and smooth when a tile is enlarged in the last frames of a zoom.
    image = Image.fromarray(np.ascontiguousarray(canvas))
    return np.asarray(image.resize(size, Image.Resampling.BILINEAR, box=box))


# camera paths -------------------------------------------------------------------------------------


def fit_view(center: tuple[float, float], width: float, aspect: float) -> View:
    """The view of ``width`` mosaic pixels and ``aspect`` (w/h) centred on ``center``."""
    height = width / aspect
    return center[0] - width / 2, center[1] - height / 2, center[0] + width / 2, center[1] + height / 2


def smoothstep(u: float) -> float:
    u = min(1.0, max(0.0, u))
    return u * u * (3 - 2 * u)


def zoom_views(
    mosaic_size: tuple[int, int],
    cell: tuple[int, int],
    cell_size: tuple[int, int],
    aspect: float,
    frames: int,
    *,
    hold: float = 0.08,
) -> list[View]:
    """Views from the whole mosaic (fitted in the frame) down to one cell (fitted), ``frames`` long.

    The view width is interpolated in log scale (each frame zooms by the same factor), eased at
    both ends, and held still for ``hold`` of the length at each end. The centre moves in step
    with the width, so the chosen cell glides steadily to the middle as it grows.
    """
    width, height = mosaic_size
    tw, th = cell_size
    wide = max(width, height * aspect)
    close = max(tw, th * aspect)
    start = width / 2, height / 2
    end = (cell[0] + 0.5) * tw, (cell[1] + 0.5) * th
    views = []
    for i in range(frames):
        t = i / (frames - 1)
        eased = smoothstep((t - hold) / (1 - 2 * hold))
        view_width = math.exp(math.log(wide) + (math.log(close) - math.log(wide)) * eased)
        moved = (wide - view_width) / (wide - close) if wide > close else eased
        center = start[0] + (end[0] - start[0]) * moved, start[1] + (end[1] - start[1]) * moved
        views.append(fit_view(center, view_width, aspect))
    return views


@dataclass(frozen=True)
class Flight:
    """Where each cell flies from and when: ``start`` ``(n, 2)`` mosaic pixels, ``delay`` ``(n,)``
    fractions of the animation; the flight takes ``duration`` of it."""

    start: NDArray[np.float64]
    delay: NDArray[np.float64]
    duration: float = 0.45


def scatter(scene: MosaicScene, view: View, seed: int, *, hold: float = 0.1) -> Flight:
    """Scattered start places around and inside ``view``; cells nearer the middle land first."""
    rng = np.random.default_rng(seed)
    n = scene.rows * scene.cols
    x0, y0, x1, y1 = view
    spread_w, spread_h = (x1 - x0) * 1.6, (y1 - y0) * 1.6
    center = (x0 + x1) / 2, (y0 + y1) / 2
    start = np.column_stack(
        [
            center[0] + (rng.random(n) - 0.5) * spread_w,
            center[1] + (rng.random(n) - 0.5) * spread_h,
        ]
    )
    rows, cols = np.divmod(np.arange(n), scene.cols)
    distance = np.hypot((cols + 0.5) / scene.cols - 0.5, (rows + 0.5) / scene.rows - 0.5) / math.sqrt(0.5)
    duration = 0.45
    spread = 1 - 2 * hold - duration
    delay = hold + spread * (0.6 * distance + 0.4 * rng.random(n))
    return Flight(start, delay, duration)


def assemble_positions(
    scene: MosaicScene, flight: Flight, t: float
) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
    """Cell positions ``(n, 2)`` at time ``t`` in [0, 1], and the drawing order (landed ones first)."""
    tw, th = scene.cell_size
    rows, cols = np.divmod(np.arange(scene.rows * scene.cols), scene.cols)
    final = np.column_stack([cols * tw, rows * th]).astype(np.float64)
    u = np.clip((t - flight.delay) / flight.duration, 0.0, 1.0)
    eased = 1 - (1 - u) ** 3  # fast start, soft landing
    positions = flight.start + (final - flight.start) * eased[:, None]
    order = np.argsort(-eased, kind="stable")  # landed (1.0) first, the ones in flight on top
    return positions, order.astype(np.intp)


def render_frames(scene: MosaicScene, spec: AnimationSpec) -> Iterator[NDArray[np.uint8]]:
    """Every frame of ``spec``, ``(height, width, 3)`` uint8, in order."""
    size = spec.width, spec.height
    aspect = spec.width / spec.height
    frames = spec.frames
    if spec.kind == "zoom":
        cell = spec.target(scene.cols, scene.rows)
        views = zoom_views(scene.size, cell, scene.cell_size, aspect, frames)
        for view in reversed(views) if spec.reverse else views:
            yield scene.draw(view, size)
        return
    width, height = scene.size
    whole = fit_view((width / 2, height / 2), max(width, height * aspect), aspect)
    flight = scatter(scene, whole, spec.seed)
    for i in range(frames):
        t = i / (frames - 1)
        positions, order = assemble_positions(scene, flight, t if spec.kind == "assemble" else 1 - t)
        yield scene.draw_sprites(positions, order, whole, size)


# writing --------------------------------------------------------------------------------------


def write_animation(
    frames: Iterable[NDArray[np.uint8]],
    path: str | os.PathLike[str],
    spec: AnimationSpec,
    *,
    progress: Progress | None = None,
) -> int:
    """Encode ``frames`` into ``path`` as ``spec.fmt``; returns how many frames were written."""
    total = spec.frames

    def counted() -> Iterator[NDArray[np.uint8]]:
        for done, frame in enumerate(frames, start=1):
            yield frame
            if progress is not None:
                progress(done, total)

    if spec.fmt == "mp4":
        return _write_mp4(counted(), Path(path), spec)
    return _write_pillow(counted(), Path(path), spec)


def _write_mp4(frames: Iterator[NDArray[np.uint8]], path: Path, spec: AnimationSpec) -> int:
    import imageio_ffmpeg  # the ffmpeg binary is only needed here

    writer = imageio_ffmpeg.write_frames(
        str(path),
        (spec.width, spec.height),
        fps=spec.fps,
        codec="libx264",
        pix_fmt_out="yuv420p",
        quality=None,
        macro_block_size=2,
        ffmpeg_log_level="error",
        output_params=["-preset", "veryfast", "-crf", "20", "-movflags", "+faststart", "-f", "mp4"],
    )
    writer.send(None)
    count = 0
    try:
        for frame in frames:
            writer.send(np.ascontiguousarray(frame))
            count += 1
    finally:
        writer.close()
    return count


def _write_pillow(frames: Iterator[NDArray[np.uint8]], path: Path, spec: AnimationSpec) -> int:
    duration = round(1000 / spec.fps)
    if spec.fmt == "gif":
        images = [
            Image.fromarray(f).quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
            for f in frames
        ]
        images[0].save(
            path, "GIF", save_all=True, append_images=images[1:], duration=duration, loop=0, optimize=False
        )
    else:
        images = [Image.fromarray(f) for f in frames]
        images[0].save(
            path, "WEBP", save_all=True, append_images=images[1:], duration=duration, loop=0, quality=80,
            method=2,
        )  # fmt: skip
    return len(images)


def make_animation(
    scene: MosaicScene,
    spec: AnimationSpec,
    path: str | os.PathLike[str],
    *,
    progress: Progress | None = None,
) -> int:
    """Validate ``spec`` for ``scene``, render every frame and write them to ``path``."""
    spec.validate(scene.cols, scene.rows)
    return write_animation(render_frames(scene, spec), path, spec, progress=progress)
