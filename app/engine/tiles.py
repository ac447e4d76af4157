"""The tile library: every usable tile photo, cropped to the cell's shape and shrunk, as one array.

A :class:`TileSet` holds ``images``, a ``uint8`` array of shape ``(n, h, w, 3)`` (transparent pixels
composited onto white), ``alpha`` ``(n, h, w)`` when any tile has transparency, the ``names`` of
the files they came from and the files that were ``rejected`` with the reason. It is built once per
library (decoding is the expensive part) and can be saved to and loaded from a folder as plain
arrays.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import multiprocessing.context
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from app.engine.decode import (
    DEFAULT_MAX_PIXELS,
    RGB,
    WHITE,
    ImageSource,
    decode_with,
    has_transparency,
    swap_if_turned,
    to_rgb,
)
from app.engine.errors import ImageRejected

log = logging.getLogger(__name__)

#: ``progress(done, total)``, called in the caller's thread as chunks of tiles finish.
Progress = Callable[[int, int], None]
#: Where tiles are decoded: worker processes (default, fastest measured) or threads.
Parallel = Literal["process", "thread"]
_MAX_CHUNK = 32
#: Fewer files than this decode on threads: starting processes would cost more than it saves.
MIN_FOR_PROCESSES = 64
#: A tile to load: a path, or (display name, path or bytes).
TileInput = str | os.PathLike[str] | tuple[str, ImageSource]
#: The tiles placed in a mosaic at its cell size: ``placer(indices, (w, h))`` gives the pixels
#: ``(m, h, w, 3)`` of the library's tiles at ``indices`` and their opacity ``(m, h, w)`` (None
#: when the library is opaque). :meth:`TileSet.fitted` resizes the stored tiles; a caller whose
#: stored tiles are smaller than the cells can decode the placed ones again at that size.
Placer = Callable[[NDArray[np.intp], tuple[int, int]], tuple[NDArray[np.uint8], NDArray[np.uint8] | None]]


@dataclass(frozen=True)
class Rejection:
    """A file that could not be used as a tile, and why."""

    name: str
    reason: str


@dataclass
class TileSet:
    """Tile thumbnails of one library.

    Attributes
    ----------
    images
        ``uint8`` array ``(n, h, w, 3)``: every accepted tile, centre-cropped to ``w:h``.
    names
        ``n`` display names, in the order of ``images``.
    rejected
        Files that were skipped, each with its reason.
    alpha
        ``uint8`` ``(n, h, w)`` opacity of every pixel, or None when every tile is opaque. With it
        a tile shown on a background ``b`` is ``images + (1 - alpha / 255) * (b - 255)``:
        ``images`` holds the tiles composited onto white.
    """

    images: NDArray[np.uint8]
    names: list[str]
    rejected: list[Rejection] = field(default_factory=list)
    alpha: NDArray[np.uint8] | None = None

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[3] != 3 or self.images.dtype != np.uint8:
            raise ValueError(
                f"images must be uint8 (n, h, w, 3), got {self.images.dtype} {self.images.shape}"
            )
        if len(self.names) != len(self.images):
            raise ValueError(f"{len(self.names)} names for {len(self.images)} images")
        if self.alpha is not None and self.alpha.shape != self.images.shape[:3]:
            raise ValueError(f"alpha must be {self.images.shape[:3]}, got {self.alpha.shape}")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def tile_size(self) -> tuple[int, int]:
        """Stored (width, height) of every tile."""
        return int(self.images.shape[2]), int(self.images.shape[1])

    @classmethod
    def from_inputs(
        cls,
        inputs: Iterable[TileInput],
        *,
        size: tuple[int, int],
        background: RGB = WHITE,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        workers: int | None = None,
        parallel: Parallel = "process",
        progress: Progress | None = None,
    ) -> TileSet:
        """Decode, crop and shrink every input to a tile of ``size`` = (width, height).

        Files are decoded in chunks on ``workers`` processes (default: every core this process
        may run on) or, with ``parallel="thread"``, on threads; inputs given as open file objects
        always use threads. ``progress(done, total)`` is called in the caller's thread, once at
        the start and as chunks finish. Failures are collected in ``rejected``; the accepted
        tiles keep their input order.
        """
        items = [_named(item) for item in inputs]
        if size[0] < 1 or size[1] < 1:
            raise ValueError(f"tile size must be positive, got {size}")
        if parallel not in ("process", "thread"):
            raise ValueError(f"parallel must be 'process' or 'thread', got {parallel!r}")
        job = TileJob((size[0], size[1]), background, max_pixels)
        images = np.empty((len(items), size[1], size[0], 3), dtype=np.uint8)
        alpha = np.empty((len(items), size[1], size[0]), dtype=np.uint8)
        reasons: list[str | None] = [None] * len(items)
        done = 0
        if progress is not None:
            progress(0, len(items))
        for start, part, opacity, why in decode_chunks(job, items, workers or usable_cores(), parallel):
            images[start : start + len(part)] = part
            alpha[start : start + len(part)] = opacity
            reasons[start : start + len(why)] = why
            done += len(why)
            if progress is not None:
                progress(done, len(items))
        return cls._from_decoded(images, alpha, [name for name, _ in items], reasons)

    @classmethod
    def _from_decoded(
        cls, images: NDArray[np.uint8], alpha: NDArray[np.uint8], names: list[str], reasons: list[str | None]
    ) -> TileSet:
        """Drop the rejected rows of ``images`` in place (no second full-size array)."""
        kept = 0
        for i, reason in enumerate(reasons):
            if reason is None:
                if kept != i:
                    images[kept] = images[i]
                    alpha[kept] = alpha[i]
                kept += 1
        rejected = [Rejection(names[i], r) for i, r in enumerate(reasons) if r is not None]
        accepted = [names[i] for i, r in enumerate(reasons) if r is None]
        opacity = alpha[:kept] if (alpha[:kept] < 255).any() else None
        return cls(images[:kept], accepted, rejected, opacity)

    @classmethod
    def from_paths(cls, paths: Sequence[str | os.PathLike[str]], **kwargs: object) -> TileSet:
        """Like :meth:`from_inputs`, but directories are walked recursively (hidden files skipped)
        and paths that do not exist are reported as rejected."""
        inputs: list[TileInput] = []
        missing: list[Rejection] = []
        for path in paths:
            p = Path(path)
            if p.is_dir():
                inputs.extend(str(f) for f in walk_images(p))
            elif p.is_file():
                inputs.append(str(p))
            else:
                missing.append(Rejection(str(p), "no such file or directory"))
        tiles = cls.from_inputs(inputs, **kwargs)  # type: ignore[arg-type]
        tiles.rejected[:0] = missing
        return tiles

    def extend(self, other: TileSet) -> TileSet:
        """A new set holding this set's tiles followed by ``other``'s (same tile size)."""
        if other.images.shape[1:] != self.images.shape[1:]:
            raise ValueError(f"tile shapes differ: {self.images.shape[1:]} vs {other.images.shape[1:]}")
        alpha = None
        if self.alpha is not None or other.alpha is not None:
            alpha = np.concatenate([self.opacity(), other.opacity()])
        return TileSet(
            np.concatenate([self.images, other.images]),
            self.names + other.names,
            self.rejected + other.rejected,
            alpha,
        )

    def opacity(self, indices: NDArray[np.intp] | None = None) -> NDArray[np.uint8]:
        """``alpha`` (or only its rows at ``indices``), all 255 when every tile is opaque."""
        if self.alpha is None:
            count = len(self) if indices is None else len(indices)
            return np.full((count, *self.images.shape[1:3]), 255, dtype=np.uint8)
        return self.alpha if indices is None else self.alpha[indices]

    def resized_alpha(
        self, size: tuple[int, int], indices: NDArray[np.intp] | None = None
    ) -> NDArray[np.uint8] | None:
        """Like :meth:`resized` for ``alpha`` ``(m, h, w)``; None when every tile is opaque."""
        if self.alpha is None:
            return None
        chosen = self.alpha if indices is None else self.alpha[indices]
        if (chosen.shape[2], chosen.shape[1]) == size:
            return chosen
        return np.stack([fit_alpha(Image.fromarray(a), size) for a in chosen]).astype(np.uint8)

    def fitted(
        self, indices: NDArray[np.intp], size: tuple[int, int]
    ) -> tuple[NDArray[np.uint8], NDArray[np.uint8] | None]:
        """The tiles at ``indices`` fitted to ``size``, with their opacity: the default
        :data:`Placer` (:meth:`resized` and :meth:`resized_alpha`)."""
        return self.resized(size, indices), self.resized_alpha(size, indices)

    def files(self, folder: str | os.PathLike[str]) -> list[Path]:
        """The files :meth:`save` writes into ``folder`` for this set."""
        folder = Path(folder)
        stored = [folder / "images.npy", folder / "tiles.json"]
        return stored + ([folder / "alpha.npy"] if self.alpha is not None else [])

    def resized(
        self, size: tuple[int, int], indices: NDArray[np.intp] | None = None, *, workers: int | None = None
    ) -> NDArray[np.uint8]:
        """The tiles (or only those at ``indices``) at another (width, height): ``(m, h, w, 3)``.

        Each tile is fitted as :func:`fit_tile` does (centre crop to the new aspect, Lanczos);
        chunks of tiles are resized on ``workers`` threads (Pillow releases the GIL while
        resampling). Enlarging beyond the stored size works but adds no detail: the originals
        must be decoded again for that.
        """
        chosen = self.images if indices is None else self.images[indices]
        if (chosen.shape[2], chosen.shape[1]) == size:
            return chosen
        out = np.empty((len(chosen), size[1], size[0], 3), dtype=np.uint8)

        def fit_range(start: int, stop: int) -> None:
            for i in range(start, stop):
                out[i] = fit_tile(Image.fromarray(chosen[i]), size)

        _run_ranges(fit_range, len(chosen), workers or usable_cores())
        return out

    def save(self, folder: str | os.PathLike[str]) -> None:
        """Write ``images.npy`` and ``tiles.json`` into ``folder``; each file appears whole or not
        at all (written under a temporary name, then renamed)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / "images.npy.part"
        with open(tmp, "wb") as fh:
            np.save(fh, self.images)
        os.replace(tmp, folder / "images.npy")
        if self.alpha is not None:
            tmp = folder / "alpha.npy.part"
            with open(tmp, "wb") as fh:
                np.save(fh, self.alpha)
            os.replace(tmp, folder / "alpha.npy")
        meta = {"names": self.names, "rejected": [[r.name, r.reason] for r in self.rejected]}
        tmp = folder / "tiles.json.part"
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, folder / "tiles.json")

    @classmethod
    def load(cls, folder: str | os.PathLike[str], *, mmap: bool = False) -> TileSet:
        """Read a set written by :meth:`save`."""
        folder = Path(folder)
        images = np.load(folder / "images.npy", mmap_mode="r" if mmap else None)
        meta = json.loads((folder / "tiles.json").read_text())
        alpha_path = folder / "alpha.npy"
        alpha = np.load(alpha_path, mmap_mode="r" if mmap else None) if alpha_path.exists() else None
        return cls(images, list(meta["names"]), [Rejection(n, r) for n, r in meta["rejected"]], alpha)


def make_tile(
    source: ImageSource,
    *,
    name: str,
    size: tuple[int, int],
    background: RGB = WHITE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> NDArray[np.uint8]:
    """Decode one file into an upright ``(h, w, 3)`` tile: centre-cropped to ``w:h``, then shrunk.

    JPEGs are decoded at the smallest DCT scale that still covers the crop at ``size``. The crop
    and resize happen in the file's stored orientation; only the finished tile is turned upright.
    """
    return make_tile_rgba(source, name=name, size=size, background=background, max_pixels=max_pixels)[0]


def make_tile_rgba(
    source: ImageSource,
    *,
    name: str,
    size: tuple[int, int],
    background: RGB = WHITE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[NDArray[np.uint8], NDArray[np.uint8] | None]:
    """Like :func:`make_tile`, with the tile's opacity ``(h, w)`` (None when the file has no
    transparency): the colours are composited onto ``background``, the alpha channel is cropped
    and shrunk the same way, so the tile can be laid over any other background later."""

    def need(width: int, height: int) -> tuple[int, int]:
        left, top, right, bottom = crop_box(width, height, size)
        scale = max(size[0] / (right - left), size[1] / (bottom - top))
        return math.ceil(width * scale), math.ceil(height * scale)

    Decoded = tuple[NDArray[np.uint8], NDArray[np.uint8] | None]

    def finish(im: Image.Image, turn: Image.Transpose | None) -> Decoded:
        stored_size = size if turn is None else swap_if_turned(size, turn)
        alpha = None
        if has_transparency(im):
            alpha = fit_alpha(im.convert("RGBA").getchannel("A"), stored_size)
        rgb = fit_tile(to_rgb(im, background=background, grey_ok=True), stored_size)  # shrunk, then RGB
        if alpha is not None:  # resampling rings a little: a pixel left fully clear is the background
            rgb = rgb.copy()
            rgb[alpha == 0] = background
        if turn is None:
            return rgb, alpha
        upright = np.asarray(Image.fromarray(rgb).transpose(turn))
        return upright, None if alpha is None else np.asarray(Image.fromarray(alpha).transpose(turn))

    return decode_with(source, finish, name=name, need=need, max_pixels=max_pixels)


def fit_tile(img: Image.Image, size: tuple[int, int]) -> NDArray[np.uint8]:
    """Centre-crop ``img`` (RGB or greyscale 'L') to the aspect of ``size`` = (w, h) and resize
    it to exactly that, as an RGB ``(h, w, 3)`` array."""
    box = crop_box(img.width, img.height, size)
    resized = img.resize(size, Image.Resampling.LANCZOS, box=box, reducing_gap=2.0)
    return np.asarray(resized if resized.mode == "RGB" else resized.convert("RGB"), dtype=np.uint8)


def fit_alpha(img: Image.Image, size: tuple[int, int]) -> NDArray[np.uint8]:
    """An opacity channel ('L') cropped and resized as :func:`fit_tile` does: ``(h, w)``."""
    box = crop_box(img.width, img.height, size)
    return np.asarray(img.resize(size, Image.Resampling.LANCZOS, box=box, reducing_gap=2.0), dtype=np.uint8)


def crop_box(width: int, height: int, aspect: tuple[int, int]) -> tuple[float, float, float, float]:
    """The largest centred box of ``width`` x ``height`` with the aspect ``aspect`` = (w, h)."""
    target = aspect[0] / aspect[1]
    if width / height > target:  # too wide: trim the sides
        kept = height * target
        return (width - kept) / 2, 0.0, (width + kept) / 2, float(height)
    kept = width / target  # too tall: trim top and bottom
    return 0.0, (height - kept) / 2, float(width), (height + kept) / 2


def walk_images(folder: Path) -> list[Path]:
    """Every non-hidden file below ``folder``, recursively, in a stable order."""
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(Path(root) / f for f in sorted(files) if not f.startswith("."))
    return found


def usable_cores() -> int:
    """Cores this process may run on (respects ``taskset`` and container CPU sets)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class TileJob:
    """What every worker needs to turn files into tiles (sent once per chunk to processes)."""

    size: tuple[int, int]
    background: RGB
    max_pixels: int


#: (index of the chunk's first input, its tiles ``(m, h, w, 3)``, their opacity ``(m, h, w)``,
#: ``m`` reasons or None if accepted)
DecodedChunk = tuple[int, NDArray[np.uint8], NDArray[np.uint8], list[str | None]]


def decode_chunks(
    job: TileJob, items: Sequence[tuple[str, ImageSource]], workers: int, parallel: Parallel
) -> Iterator[DecodedChunk]:
    """Decode ``items`` in chunks on ``workers`` processes or threads, yielding chunks as they
    finish (in any order). One worker, or a single input, runs in the calling thread."""
    chunk = _chunk_size(len(items), workers)
    starts = range(0, len(items), chunk)
    if workers <= 1 or len(items) <= 1:
        for start in starts:
            yield _decode_chunk(job, start, items[start : start + chunk])
        return
    picklable = all(isinstance(source, (str, bytes, os.PathLike)) for _, source in items)
    pool: Executor
    if parallel == "process" and picklable and len(items) >= MIN_FOR_PROCESSES:
        pool = ProcessPoolExecutor(min(workers, len(starts)), mp_context=_process_context())
    else:
        pool = ThreadPoolExecutor(min(workers, len(starts)))
    with pool:
        futures = [pool.submit(_decode_chunk, job, s, list(items[s : s + chunk])) for s in starts]
        try:
            for future in as_completed(futures):
                yield future.result()
        finally:
            for future in futures:  # stop queued work when the caller gives up early
                future.cancel()


def _decode_chunk(job: TileJob, start: int, items: Sequence[tuple[str, ImageSource]]) -> DecodedChunk:
    width, height = job.size
    tiles = np.zeros((len(items), height, width, 3), dtype=np.uint8)
    alpha = np.full((len(items), height, width), 255, dtype=np.uint8)
    reasons: list[str | None] = []
    for i, (name, source) in enumerate(items):
        reasons.append(None)
        try:
            tiles[i], opacity = make_tile_rgba(
                source, name=name, size=job.size, background=job.background, max_pixels=job.max_pixels
            )
            if opacity is not None:
                alpha[i] = opacity
        except ImageRejected as exc:
            reasons[i] = exc.reason
        except Exception as exc:  # a decoder bug must not sink the whole library
            log.exception("unexpected failure decoding %s", name)
            reasons[i] = f"could not be decoded ({type(exc).__name__}: {exc})"
    return start, tiles, alpha, reasons


def _chunk_size(count: int, workers: int) -> int:
    """Files per task: few enough for even load and frequent progress (about 8 tasks per worker),
    many enough that task overhead (pickling, scheduling) stays small."""
    return max(1, min(_MAX_CHUNK, math.ceil(count / (8 * max(1, workers)))))


def _process_context() -> multiprocessing.context.BaseContext:
    """``fork`` starts workers in milliseconds but is unsafe once other threads exist (a lock
    held by one of them stays held in the child); then fall back to ``forkserver``."""
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    if "forkserver" in methods:
        return multiprocessing.get_context("forkserver")
    return multiprocessing.get_context("spawn")


def _run_ranges(work: Callable[[int, int], None], count: int, workers: int) -> None:
    """Call ``work(start, stop)`` over ``range(count)`` split into chunks, on up to ``workers``
    threads (inline when one is enough)."""
    chunk = max(64, math.ceil(count / max(1, workers)))
    bounds = [(s, min(s + chunk, count)) for s in range(0, count, chunk)]
    if len(bounds) <= 1:
        for start, stop in bounds:
            work(start, stop)
        return
    with ThreadPoolExecutor(len(bounds)) as pool:
        for future in [pool.submit(work, start, stop) for start, stop in bounds]:
            future.result()


def _named(item: TileInput) -> tuple[str, ImageSource]:
    if isinstance(item, tuple):
        return item
    return os.fspath(item), item
