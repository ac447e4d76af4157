"""The tile library: every usable tile photo, cropped to the cell's shape and shrunk, as one array.

A :class:`TileSet` holds ``images``, a ``uint8`` array of shape ``(n, h, w, 3)``, the ``names`` of
the files they came from and the files that were ``rejected`` with the reason. It is built once per
library (decoding is the expensive part) and can be saved to and loaded from a folder as plain
arrays.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from app.engine.decode import DEFAULT_MAX_PIXELS, RGB, WHITE, ImageSource, load_rgb
from app.engine.errors import ImageRejected

log = logging.getLogger(__name__)

#: ``progress(done, total)``, called from worker threads as tiles finish.
Progress = Callable[[int, int], None]
#: A tile to load: a path, or (display name, path or bytes).
TileInput = str | os.PathLike[str] | tuple[str, ImageSource]


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
    """

    images: NDArray[np.uint8]
    names: list[str]
    rejected: list[Rejection] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[3] != 3 or self.images.dtype != np.uint8:
            raise ValueError(
                f"images must be uint8 (n, h, w, 3), got {self.images.dtype} {self.images.shape}"
            )
        if len(self.names) != len(self.images):
            raise ValueError(f"{len(self.names)} names for {len(self.images)} images")

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
        progress: Progress | None = None,
    ) -> TileSet:
        """Decode, crop and shrink every input to a tile of ``size`` = (width, height).

        Files are decoded on ``workers`` threads (Pillow releases the GIL while decoding).
        Failures are collected in ``rejected``; the others keep their input order.
        """
        items = [_named(item) for item in inputs]
        width, height = size
        if width < 1 or height < 1:
            raise ValueError(f"tile size must be positive, got {size}")
        images = np.empty((len(items), height, width, 3), dtype=np.uint8)
        ok = np.zeros(len(items), dtype=bool)
        reasons: dict[int, str] = {}
        done = 0

        def work(i: int) -> None:
            name, source = items[i]
            try:
                images[i] = make_tile(
                    source, name=name, size=size, background=background, max_pixels=max_pixels
                )
                ok[i] = True
            except ImageRejected as exc:
                reasons[i] = exc.reason
            except Exception as exc:  # a decoder bug must not sink the whole library
                log.exception("unexpected failure decoding %s", name)
                reasons[i] = f"could not be decoded ({type(exc).__name__}: {exc})"

        workers = workers or os.cpu_count() or 1
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for _ in pool.map(work, range(len(items))):
                done += 1
                if progress is not None:
                    progress(done, len(items))
        rejected = [Rejection(items[i][0], reasons[i]) for i in sorted(reasons)]
        names = [items[i][0] for i in range(len(items)) if ok[i]]
        return cls(images[ok], names, rejected)

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
        return TileSet(
            np.concatenate([self.images, other.images]),
            self.names + other.names,
            self.rejected + other.rejected,
        )

    def resized(self, size: tuple[int, int], indices: NDArray[np.intp] | None = None) -> NDArray[np.uint8]:
        """The tiles (or only those at ``indices``) at another (width, height), as an array."""
        chosen = self.images if indices is None else self.images[indices]
        if (chosen.shape[2], chosen.shape[1]) == size:
            return chosen
        out = np.empty((len(chosen), size[1], size[0], 3), dtype=np.uint8)
        for i, tile in enumerate(chosen):
            out[i] = fit_tile(Image.fromarray(tile), size)
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
        return cls(images, list(meta["names"]), [Rejection(n, r) for n, r in meta["rejected"]])


def make_tile(
    source: ImageSource,
    *,
    name: str,
    size: tuple[int, int],
    background: RGB = WHITE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> NDArray[np.uint8]:
    """Decode one file into a ``(h, w, 3)`` tile: centre-cropped to ``w:h``, then shrunk.

    JPEGs are decoded at the smallest DCT scale that still covers the crop at ``size``.
    """

    def need(width: int, height: int) -> tuple[int, int]:
        left, top, right, bottom = crop_box(width, height, size)
        scale = max(size[0] / (right - left), size[1] / (bottom - top))
        return math.ceil(width * scale), math.ceil(height * scale)

    img = load_rgb(source, name=name, need=need, background=background, max_pixels=max_pixels)
    return fit_tile(img, size)


def fit_tile(img: Image.Image, size: tuple[int, int]) -> NDArray[np.uint8]:
    """Centre-crop ``img`` to the aspect of ``size`` = (w, h) and resize it to exactly that."""
    box = crop_box(img.width, img.height, size)
    resized = img.resize(size, Image.Resampling.LANCZOS, box=box, reducing_gap=2.0)
    return np.asarray(resized, dtype=np.uint8)


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


def _named(item: TileInput) -> tuple[str, ImageSource]:
    if isinstance(item, tuple):
        return item
    return os.fspath(item), item
