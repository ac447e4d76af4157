"""The command line's tile library cache: tiles decoded once, kept across runs.

One SQLite database (``tiles.sqlite3``, WAL journal) in the cache folder holds every tile a run
decoded: its file's path, size and modification time (nanoseconds), the tile's shape and
background, the tile's pixels (or why the file was rejected) and its feature vector under the
run's feature settings. A later run from the same folders decodes only files that are new or
changed; a file whose size or time changed is decoded again. Rows of files that disappeared
from a folder are dropped (those of that tile shape; other shapes' when a run uses them).

Rows are keyed by (variant, path), so one range scan per folder reads that folder's tiles of one
shape, and tells which files are gone, in one pass; the pixels come back as one buffer per scan.

Safe against concurrent runs (SQLite's locking; each writer's rows go in one short
transaction per decoded chunk) and a killed run (a transaction is whole or absent; what was
committed before the kill is used by the next run). A damaged database is set aside and
rebuilt.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.engine.decode import DEFAULT_MAX_PIXELS, RGB, WHITE
from app.engine.features import FeatureSpec
from app.engine.tiles import (
    MIN_FOR_PROCESSES,
    DecodedChunk,
    Progress,
    Rejection,
    TileJob,
    TileSet,
    decode_chunks,
    usable_cores,
    walk_files,
)

log = logging.getLogger(__name__)
#: Bump when tiles are made differently: old rows are then never matched (2: RGB then alpha bytes).
_VERSION = 2
#: The database layout (``PRAGMA user_version``); an older one is dropped and made anew.
_SCHEMA_VERSION = 3
_SCHEMA = """
CREATE TABLE IF NOT EXISTS tiles (
    variant TEXT NOT NULL,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    reason TEXT,
    pixels BLOB,
    features_key TEXT,
    features BLOB,
    PRIMARY KEY (variant, path)
) WITHOUT ROWID;
"""
_IN_BATCH = 500  # paths per SELECT ... IN (...)
#: One cached row as a lookup returns it: (size, mtime_ns, reason, pixels, features_key, features).
Row = tuple[int, int, str | None, bytes | None, str | None, bytes | None]
#: What a run stores: (path, size, mtime_ns, reason, pixels, features_key, features).
NewRow = tuple[str, int, int, str | None, bytes | None, str | None, bytes | None]


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
        # No fsync, ever: a killed process loses nothing the OS already has, and what a power cut
        # may damage is a cache, set aside and rebuilt when opened (below). With fsyncs, the WAL
        # checkpoints of a cold run of 20,000 tiles kept the run waiting about a second.
        conn.execute("PRAGMA synchronous=OFF")
        if conn.execute("PRAGMA user_version").fetchone()[0] != _SCHEMA_VERSION:
            with conn:
                conn.execute("BEGIN IMMEDIATE")  # one run migrates; another waits, then sees it done
                if conn.execute("PRAGMA user_version").fetchone()[0] != _SCHEMA_VERSION:
                    conn.execute("DROP TABLE IF EXISTS tiles")  # an older layout: its rows are stale
                    conn.execute(_SCHEMA)
                    conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
        conn.execute("SELECT 1 FROM tiles LIMIT 1").fetchall()  # a damaged file fails here
        return conn

    def close(self) -> None:
        self._conn.close()

    def folder_rows(self, folder: str, variant: str) -> dict[str, Row]:
        """Every row of ``variant`` whose path lies below the absolute ``folder``: one range scan."""
        prefix = os.path.join(folder, "")
        rows = self._conn.execute(
            "SELECT path, size, mtime_ns, reason, pixels, features_key, features FROM tiles"
            " WHERE variant = ? AND path >= ? AND path < ?",
            (variant, prefix, prefix + "\U0010ffff"),
        )
        return {path: rest for path, *rest in rows}

    def file_rows(self, paths: Sequence[str], variant: str) -> dict[str, Row]:
        """The rows of ``variant`` of the absolute ``paths`` (files named one by one)."""
        found: dict[str, Row] = {}
        for start in range(0, len(paths), _IN_BATCH):
            part = paths[start : start + _IN_BATCH]
            rows = self._conn.execute(
                "SELECT path, size, mtime_ns, reason, pixels, features_key, features FROM tiles"
                f" WHERE variant = ? AND path IN ({','.join('?' * len(part))})",
                [variant, *part],
            )
            found.update((path, rest) for path, *rest in rows)
        return found

    def store(self, rows: Iterable[NewRow], variant: str) -> None:
        """Keep (path, size, mtime_ns, reason, pixels, features_key, features) rows, in one
        transaction."""
        with self._conn:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.executemany(
                "INSERT OR REPLACE INTO tiles"
                " (variant, path, size, mtime_ns, reason, pixels, features_key, features)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(variant, *row) for row in rows],
            )

    def store_features(self, rows: Iterable[tuple[str, bytes]], key: str, variant: str) -> None:
        """Keep the features (under ``key``) of already cached (path, features) rows."""
        with self._conn:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.executemany(
                "UPDATE tiles SET features_key = ?, features = ? WHERE variant = ? AND path = ?",
                [(key, blob, variant, path) for path, blob in rows],
            )

    def forget(self, paths: Iterable[str], variant: str) -> int:
        """Drop the rows of ``variant`` of ``paths`` (files gone from their folder)."""
        gone = [(variant, p) for p in paths]
        if gone:
            with self._conn:
                self._conn.execute("BEGIN IMMEDIATE")
                self._conn.executemany("DELETE FROM tiles WHERE variant = ? AND path = ?", gone)
        return len(gone)


def variant_of(size: tuple[int, int], background: RGB, max_pixels: int) -> str:
    return f"v{_VERSION}:{size[0]}x{size[1]}:{bytes(background).hex()}:{max_pixels}"


@dataclass
class _Inputs:
    """The files of one load, in order: absolute path, size, mtime_ns, and the name shown."""

    files: list[tuple[str, int, int]]
    names: list[str]
    missing: list[Rejection]
    folders: list[tuple[str, int, int]]  # (absolute folder, first file, end): files[first:end]


def _list_inputs(paths: Sequence[str | os.PathLike[str]]) -> _Inputs:
    found = _Inputs([], [], [], [])
    for given in paths:
        p = Path(given)
        if p.is_dir():
            shown = walk_files(p)
            top = str(p)
            absolute = os.path.abspath(top)
            skip = 0 if top == "." else len(os.path.join(top, ""))
            first = len(found.files)
            found.files.extend(_stat_all([os.path.join(absolute, name[skip:]) for name in shown]))
            found.names.extend(shown)
            found.folders.append((absolute, first, len(found.files)))
        elif p.is_file():
            found.files.extend(_stat_all([os.path.abspath(p)]))
            found.names.append(str(p))
        else:
            found.missing.append(Rejection(str(given), "no such file or directory"))
    return found


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
    features: FeatureSpec | None = None,
    pool: ProcessPoolExecutor | None = None,
) -> tuple[TileSet, CacheUse]:
    """Like :meth:`TileSet.from_paths`, taking from ``cache`` every file it holds unchanged and
    decoding (and adding to it) only the others. ``started()`` is called once the decode
    processes exist (or right away when none are needed): from then on threads may start.
    With ``features`` the tiles' features come along (cached, or computed where they are
    decoded), as :meth:`TileSet.from_inputs` computes them; ``pool``, decode processes
    started earlier (:func:`app.engine.tiles.start_decoders`), is used and left running."""
    inputs = _list_inputs(paths)
    files = inputs.files
    variant = variant_of(size, background, max_pixels)
    cached: dict[str, Row] = {}
    gone: set[str] = set()
    in_folders = 0
    for folder, first, end in inputs.folders:
        held = cache.folder_rows(folder, variant)
        present = {path for path, _, _ in files[first:end]}
        gone.update(path for path in held if path not in present)
        cached.update(held)
        in_folders += end - first
    if in_folders < len(files):  # files named one by one
        cached.update(cache.file_rows([path for path, _, _ in files if path not in cached], variant))
    library = _Library(files, size, features)
    todo = library.take_cached(cached, cache, variant)
    del cached
    done = len(files) - len(todo)
    if progress is not None:
        progress(done, len(files))
    job = TileJob(size, background, max_pixels, features)
    items = [(files[i][0], files[i][0]) for i in todo]
    workers = workers or usable_cores()
    pending = started
    if pending is not None and (pool is not None or len(items) < MIN_FOR_PROCESSES or workers <= 1):
        pending()  # decoded on threads, or not at all: no fork follows
        pending = None
    for chunk in decode_chunks(job, items, workers, "process", pool):
        if pending is not None:
            pending()
            pending = None
        rows = library.take_decoded(chunk, todo)
        cache.store(rows, variant)  # one transaction per chunk: a killed run keeps what it decoded
        done += len(rows)
        if progress is not None:
            progress(done, len(files))
    if pending is not None:
        pending()
    dropped = cache.forget(gone, variant)
    tiles = TileSet._from_decoded(
        library.images, library.alpha, inputs.names, library.reasons, library.features, library.key
    )
    tiles.rejected[:0] = inputs.missing
    return tiles, CacheUse(cached=len(files) - len(todo), decoded=len(todo), dropped=dropped)


class _Library:
    """The arrays a load fills, from the cache and from the decoded chunks, in input order."""

    def __init__(self, files: list[tuple[str, int, int]], size: tuple[int, int], spec: FeatureSpec | None):
        width, height = size
        self.files = files
        self.spec = spec
        self.key = None if spec is None else spec.key
        self.images = np.empty((len(files), height, width, 3), dtype=np.uint8)
        self.alpha = np.full((len(files), height, width), 255, dtype=np.uint8)
        self.features = None if spec is None else np.zeros((len(files), spec.dims), dtype=np.float32)
        self.reasons: list[str | None] = [None] * len(files)

    def take_cached(self, cached: dict[str, Row], cache: TileCache, variant: str) -> list[int]:
        """Fill the rows ``cached`` holds unchanged (size and time as now); returns the others."""
        todo: list[int] = []
        hits: list[int] = []
        blobs: list[bytes] = []
        with_features: list[int] = []
        feature_blobs: list[bytes] = []
        for i, (path, fsize, mtime) in enumerate(self.files):
            row = cached.get(path)
            if row is None or row[0] != fsize or row[1] != mtime:
                todo.append(i)
                continue
            reason, blob, fkey, fblob = row[2:]
            self.reasons[i] = reason
            if blob is None:
                continue
            hits.append(i)
            blobs.append(blob)
            if fkey == self.key and fblob is not None:
                with_features.append(i)
                feature_blobs.append(fblob)
        if hits:  # every cached tile's bytes at once: one copy, no numpy call per row
            height, width = self.images.shape[1:3]
            rgba = np.frombuffer(b"".join(blobs), dtype=np.uint8).reshape(len(hits), -1)
            self.images[hits] = rgba[:, : height * width * 3].reshape(-1, height, width, 3)
            self.alpha[hits] = rgba[:, height * width * 3 :].reshape(-1, height, width)
        if self.features is not None and self.spec is not None:
            if feature_blobs:
                stored = np.frombuffer(b"".join(feature_blobs), dtype=np.float32)
                self.features[with_features] = stored.reshape(len(with_features), -1)
            if len(with_features) < len(hits):  # cached under other feature settings: compute once
                have = set(with_features)
                missing = [i for i in hits if i not in have]
                computed = self.spec.of(self.images[missing])
                self.features[missing] = computed
                rows = ((self.files[i][0], computed[k].tobytes()) for k, i in enumerate(missing))
                cache.store_features(rows, self.spec.key, variant)
        return todo

    def take_decoded(self, chunk: DecodedChunk, todo: list[int]) -> list[NewRow]:
        """Fill the rows of a decoded chunk (of the inputs ``todo``); returns them as cache rows."""
        rows: list[NewRow] = []
        for k, reason in enumerate(chunk.reasons):
            i = todo[chunk.start + k]
            self.images[i] = chunk.tiles[k]
            self.alpha[i] = chunk.alpha[k]
            self.reasons[i] = reason
            blob = fkey = fblob = None
            if not reason:
                blob = chunk.tiles[k].tobytes() + chunk.alpha[k].tobytes()
                if self.features is not None and chunk.features is not None:
                    self.features[i] = chunk.features[k]
                    fkey, fblob = self.key, chunk.features[k].tobytes()
            rows.append((*self.files[i], reason, blob, fkey, fblob))
        return rows


def _stat_all(paths: Iterable[str]) -> list[tuple[str, int, int]]:
    out = []
    for key in paths:
        try:
            st = os.stat(key)
        except OSError:
            out.append((key, -1, -1))  # vanished: decoding it reports why
            continue
        out.append((key, st.st_size, st.st_mtime_ns))
    return out
