"""The command line's tile library cache: tiles decoded once, kept across runs.

One SQLite database (``tiles.sqlite3``, WAL journal) in the cache folder holds every tile a run
decoded: its file's path, size and modification time (nanoseconds), the tile's shape and
background, and the tile's pixels (or why the file was rejected). A later run from the same
folders decodes only files that are new or changed; a file whose size or time changed is
decoded again. Rows of files that disappeared from a folder are dropped.

Safe against concurrent runs (SQLite's locking; each writer's rows go in one short
transaction per decoded chunk) and a killed run (a transaction is whole or absent; what
was committed before the kill is used by the next run). A damaged database is set aside
and rebuilt.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.engine.decode import DEFAULT_MAX_PIXELS, RGB, WHITE
from app.engine.tiles import (
    MIN_FOR_PROCESSES,
    Progress,
    Rejection,
    TileJob,
    TileSet,
    decode_chunks,
    usable_cores,
    walk_images,
)

log = logging.getLogger(__name__)
#: Bump when tiles are made differently: old rows are then never matched (2: RGB then alpha bytes).
_VERSION = 2
_SCHEMA = """
CREATE TABLE IF NOT EXISTS tiles (
    path TEXT NOT NULL,
    variant TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    reason TEXT,
    pixels BLOB,
    PRIMARY KEY (path, variant)
) WITHOUT ROWID;
"""
_IN_BATCH = 500  # paths per SELECT ... IN (...)


@dataclass(frozen=True)
class CacheUse:
    """What one load took from the cache and what it decoded."""

    cached: int
    decoded: int
    dropped: int  # rows of files gone from the folders


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/tessera``, else ``~/.cache/tessera``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tessera"


class TileCache:
    """The cache database in ``folder`` (created when missing)."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / "tiles.sqlite3"
        try:
            self._conn = self._open()
        except sqlite3.DatabaseError as exc:  # not a database, or damaged: keep it aside, start anew
            log.warning("tile cache %s is unusable (%s): starting a new one", self.path, exc)
            os.replace(self.path, self.path.with_name(f"tiles.broken-{int(time.time())}.sqlite3"))
            self._conn = self._open()

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=120, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(_SCHEMA)
        conn.execute("SELECT 1 FROM tiles LIMIT 1").fetchall()  # a damaged file fails here
        return conn

    def close(self) -> None:
        self._conn.close()

    def lookup(
        self, files: Sequence[tuple[str, int, int]], variant: str
    ) -> dict[str, tuple[bytes | None, str | None]]:
        """The cached (pixels, reason) of each (path, size, mtime_ns) whose size and time match."""
        wanted = {path: (size, mtime) for path, size, mtime in files}
        found: dict[str, tuple[bytes | None, str | None]] = {}
        paths = list(wanted)
        for start in range(0, len(paths), _IN_BATCH):
            part = paths[start : start + _IN_BATCH]
            marks = ",".join("?" * len(part))
            rows = self._conn.execute(
                "SELECT path, size, mtime_ns, pixels, reason FROM tiles"
                f" WHERE variant = ? AND path IN ({marks})",
                [variant, *part],
            )
            for path, size, mtime, pixels, reason in rows:
                if wanted[path] == (size, mtime):
                    found[path] = (pixels, reason)
        return found

    def store(self, rows: Iterable[tuple[str, int, int, bytes | None, str | None]], variant: str) -> None:
        """Keep (path, size, mtime_ns, pixels, reason) rows, in one transaction."""
        with self._conn:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.executemany(
                "INSERT OR REPLACE INTO tiles (path, variant, size, mtime_ns, pixels, reason)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [(p, variant, s, m, px, r) for p, s, m, px, r in rows],
            )

    def drop_missing(self, folder: Path, present: set[str]) -> int:
        """Forget the rows of files below ``folder`` that are not in ``present``."""
        prefix = os.path.join(str(folder), "")
        rows = self._conn.execute(
            "SELECT DISTINCT path FROM tiles WHERE path >= ? AND path < ?", (prefix, prefix + "\U0010ffff")
        ).fetchall()
        gone = [(p,) for (p,) in rows if p not in present]
        if gone:
            with self._conn:
                self._conn.execute("BEGIN IMMEDIATE")
                self._conn.executemany("DELETE FROM tiles WHERE path = ?", gone)
        return len(gone)


def variant_of(size: tuple[int, int], background: RGB, max_pixels: int) -> str:
    return f"v{_VERSION}:{size[0]}x{size[1]}:{bytes(background).hex()}:{max_pixels}"


def load_tiles(
    paths: Sequence[str | os.PathLike[str]],
    *,
    size: tuple[int, int],
    cache: TileCache,
    background: RGB = WHITE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    workers: int | None = None,
    progress: Progress | None = None,
    started: Callable[[], None] | None = None,
) -> tuple[TileSet, CacheUse]:
    """Like :meth:`TileSet.from_paths`, taking from ``cache`` every file it holds unchanged and
    decoding (and adding to it) only the others. ``started()`` is called once the decode
    processes exist (or right away when none are needed): from then on threads may start."""
    files: list[tuple[str, int, int]] = []  # (absolute path, size, mtime_ns) of every input, in order
    names: list[str] = []  # as TileSet.from_paths names them
    missing: list[Rejection] = []
    folders: list[tuple[Path, set[str]]] = []
    for given in paths:
        p = Path(given)
        if p.is_dir():
            shown = walk_images(p)
            found = _stat_all(shown)
            files.extend(found)
            names.extend(str(f) for f in shown)
            folders.append((p.absolute(), {f for f, _, _ in found}))
        elif p.is_file():
            files.extend(_stat_all([p]))
            names.append(str(p))
        else:
            missing.append(Rejection(str(given), "no such file or directory"))
    variant = variant_of(size, background, max_pixels)
    cached = cache.lookup(files, variant)
    width, height = size
    images = np.empty((len(files), height, width, 3), dtype=np.uint8)
    alpha = np.full((len(files), height, width), 255, dtype=np.uint8)
    reasons: list[str | None] = [None] * len(files)
    todo: list[int] = []
    for i, (path, _, _) in enumerate(files):
        hit = cached.get(path)
        if hit is None:
            todo.append(i)
            continue
        pixels, reason = hit
        if pixels is not None:
            stored = np.frombuffer(pixels, dtype=np.uint8)
            images[i] = stored[: height * width * 3].reshape(height, width, 3)
            alpha[i] = stored[height * width * 3 :].reshape(height, width)
        reasons[i] = reason
    done = len(files) - len(todo)
    if progress is not None:
        progress(done, len(files))
    job = TileJob((width, height), background, max_pixels)
    items = [(files[i][0], files[i][0]) for i in todo]
    workers = workers or usable_cores()
    pending = started
    if pending is not None and (len(items) < MIN_FOR_PROCESSES or workers <= 1):
        pending()  # decoded on threads, or not at all: no fork follows
        pending = None
    for start, part, opacity, why in decode_chunks(job, items, workers, "process"):
        if pending is not None:
            pending()
            pending = None
        rows = []
        for k, reason in enumerate(why):
            i = todo[start + k]
            images[i] = part[k]
            alpha[i] = opacity[k]
            reasons[i] = reason
            path, fsize, mtime = files[i]
            blob = None if reason else part[k].tobytes() + opacity[k].tobytes()
            rows.append((path, fsize, mtime, blob, reason))
        cache.store(rows, variant)
        done += len(why)
        if progress is not None:
            progress(done, len(files))
    if pending is not None:
        pending()
    dropped = sum(cache.drop_missing(folder, present) for folder, present in folders)
    tiles = TileSet._from_decoded(images, alpha, names, reasons)
    tiles.rejected[:0] = missing
    return tiles, CacheUse(cached=len(files) - len(todo), decoded=len(todo), dropped=dropped)


def _stat_all(paths: Iterable[Path]) -> list[tuple[str, int, int]]:
    out = []
    for p in paths:
        key = os.path.abspath(p)
        try:
            st = os.stat(key)
        except OSError:
            out.append((key, -1, -1))  # vanished: decoding it reports why
            continue
        out.append((key, st.st_size, st.st_mtime_ns))
    return out
