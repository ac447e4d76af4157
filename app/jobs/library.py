"""A session's tile library: uploads in, tile thumbnails and nearest-neighbour indexes out.

Every image source of a session (uploaded files, and the members of uploaded archives, unpacked)
is listed once in ``sources.jsonl``. Tiles are decoded once at the stored thumbnail size and
saved as arrays; a mosaic with larger or differently shaped tiles decodes the sources again at
that shape, once, and keeps that too. Indexes are never stored: their feature arrays are, and the
tree is refitted on load.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.engine import MosaicParams, TileIndex, TileSet
from app.engine.features import tile_features, weights_for
from app.engine.tiles import Rejection
from app.settings import Settings
from app.storage import ArchiveLimits, Storage, Upload, extract_zip, is_zip

log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]


@dataclass
class _Cached:
    tiles: dict[tuple[int, int], TileSet] = field(default_factory=dict)
    folders: dict[tuple[int, int], Path] = field(default_factory=dict)
    indexes: dict[tuple[tuple[int, int], str, int], TileIndex] = field(default_factory=dict)


def _ignore(done: int, total: int) -> None:
    pass


def _write_json_atomically(path: Path, data: object) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


class Libraries:
    """Builds and caches the tile libraries of all sessions (a few kept in memory)."""

    def __init__(self, settings: Settings, storage: Storage) -> None:
        self.settings = settings
        self.storage = storage
        self._locks: dict[str, threading.RLock] = {}
        self._locks_guard = threading.Lock()
        self._cache: OrderedDict[str, _Cached] = OrderedDict()
        self._cache_guard = threading.Lock()

    @property
    def base_shape(self) -> tuple[int, int]:
        return self.settings.thumb_size, self.settings.thumb_size

    def lock(self, session_id: str) -> threading.RLock:
        with self._locks_guard:
            return self._locks.setdefault(session_id, threading.RLock())

    def forget_cached(self, session_id: str) -> None:
        with self._cache_guard:
            self._cache.pop(session_id, None)

    def forget(self, session_id: str) -> None:
        self.forget_cached(session_id)
        with self._locks_guard:
            self._locks.pop(session_id, None)

    # ingest -----------------------------------------------------------------------------------

    def ingest(self, session_id: str, progress: Progress) -> tuple[TileSet, int]:
        """Decode every upload not yet in the base library; returns it and the number of sources.

        Runs until no unprocessed upload is left, so uploads that arrive during a build are
        taken in by the same build.
        """
        with self.lock(session_id):
            self.forget_cached(session_id)  # other shapes must take in the new sources too
            while True:
                new_rejections = self._register_sources(session_id)
                sources = self._sources(session_id)
                tiles = self._update_shape(session_id, self.base_shape, sources, progress, new_rejections)
                if not self._pending_uploads(session_id):
                    return tiles, len(sources)

    def _pending_uploads(self, session_id: str) -> list[Upload]:
        done = self._state(session_id).get("uploads_done", 0)
        return [u for u in self.storage.uploads(session_id) if u.seq > done]

    def _register_sources(self, session_id: str) -> list[Rejection]:
        """Turn new uploads into image sources (archives unpacked); returns archive rejections."""
        pending = self._pending_uploads(session_id)
        if not pending:
            return []
        limits = ArchiveLimits(
            max_members=self.settings.max_zip_members,
            max_total_bytes=self.settings.max_zip_bytes,
            max_member_bytes=self.settings.max_file_bytes,
            max_ratio=self.settings.max_zip_ratio,
        )
        entries: list[dict[str, str]] = []
        rejected: list[Rejection] = []
        root = self._root(session_id)
        for upload in pending:
            if upload.path.exists() and is_zip(upload.path):
                dest = upload.path.with_name(upload.path.stem + "-unpacked")
                members, bad = extract_zip(upload.path, dest, label=upload.name, limits=limits)
                entries += [{"name": n, "path": str(p.relative_to(root))} for n, p in members]
                rejected += [Rejection(n, r) for n, r in bad]
            else:
                entries.append({"name": upload.name, "path": str(upload.path.relative_to(root))})
        # Rewrite the list whole (dropping lines of a registration a crash interrupted), then
        # record how far it goes: either step may be lost, never half of one.
        known = self._source_entries(session_id)[: self._state(session_id).get("sources", 0)]
        path = root / "sources.jsonl"
        tmp = path.with_name(path.name + ".part")
        tmp.write_text("".join(json.dumps(e) + "\n" for e in known + entries))
        tmp.replace(path)
        _write_json_atomically(
            root / "ingest.json",
            {"uploads_done": pending[-1].seq, "sources": len(known) + len(entries)},
        )
        return rejected

    def _source_entries(self, session_id: str) -> list[dict[str, str]]:
        path = self._root(session_id) / "sources.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def sources(self, session_id: str) -> list[tuple[str, str]]:
        """(display name, file path) of every image source of the session, in upload order."""
        return self._sources(session_id)

    def _sources(self, session_id: str) -> list[tuple[str, str]]:
        """(display name, file path) of every registered image source, in upload order."""
        root = self._root(session_id)
        count = self._state(session_id).get("sources", 0)
        return [(e["name"], str(root / e["path"])) for e in self._source_entries(session_id)[:count]]

    # libraries at a shape ---------------------------------------------------------------------

    def tiles_for(self, session_id: str, params: MosaicParams, progress: Progress | None = None) -> TileSet:
        """The library to render ``params`` from: the stored thumbnails when they are large
        enough and of the right shape, else the sources decoded at the tile shape (once)."""
        shape = self.shape_for(params)
        cached = self._cached(session_id)
        if shape not in cached.tiles:
            with self.lock(session_id):
                if shape not in cached.tiles:
                    sources = self._sources(session_id)
                    self._update_shape(session_id, shape, sources, progress or _ignore, [])
        return cached.tiles[shape]

    def shape_for(self, params: MosaicParams) -> tuple[int, int]:
        tile_w, tile_h = params.tile_shape
        if params.aspect[0] == params.aspect[1] and tile_w <= self.settings.thumb_size:
            return self.base_shape
        return tile_w, tile_h

    def index_for(self, session_id: str, params: MosaicParams) -> TileIndex:
        """The nearest-neighbour index for ``params``' feature settings, refitted from stored
        features (computed and stored on first use)."""
        shape = self.shape_for(params)
        key = (shape, params.color_space, params.cell_grid)
        with self.lock(session_id):  # two renders must not compute and write one file at once
            self.tiles_for(session_id, params)  # (again, should the cache have dropped the session)
            return self._index(self._cached(session_id), key)

    def _index(self, cached: _Cached, key: tuple[tuple[int, int], str, int]) -> TileIndex:
        shape, color_space, cell_grid = key
        if key not in cached.indexes:
            tiles, folder = cached.tiles[shape], cached.folders[shape]
            version = hashlib.sha1(repr(weights_for(color_space)).encode()).hexdigest()[:8]  # type: ignore[arg-type]
            path = folder / f"features-{color_space}-{cell_grid}-{version}.npy"  # weights change: new file
            if path.exists():
                index = TileIndex.load(path)
            else:
                features = tile_features(tiles.images, color_space=color_space, grid=cell_grid)  # type: ignore[arg-type]
                index = TileIndex(features)
                index.save(path)
            cached.indexes[key] = index
        return cached.indexes[key]

    def _update_shape(
        self,
        session_id: str,
        shape: tuple[int, int],
        sources: list[tuple[str, str]],
        progress: Progress,
        extra_rejections: list[Rejection],
    ) -> TileSet:
        """Bring the library at ``shape`` up to date with ``sources``.

        Each update is written as a new version folder; ``current.json`` names the live one and
        is replaced atomically, so a crash mid-write leaves the previous version intact.
        """
        base = self.storage.library_dir(session_id, shape)
        pointer = base / "current.json"
        if pointer.exists():
            meta = json.loads(pointer.read_text())
            folder, done = base / meta["version"], int(meta["sources_done"])
            tiles = TileSet.load(folder)
        else:
            folder, done = base / "v0", 0
            tiles = TileSet(np.zeros((0, shape[1], shape[0], 3), dtype=np.uint8), [])
        pending = sources[done:]
        if pending or extra_rejections:
            fresh = TileSet.from_inputs(
                pending,
                size=shape,
                max_pixels=self.settings.max_image_pixels,
                workers=self.settings.decode_threads,
                progress=lambda d, t: progress(done + d, len(sources)),
            )
            fresh.rejected[:0] = extra_rejections
            tiles = tiles.extend(fresh)
            old, folder = folder, base / f"v{int(folder.name[1:]) + 1}"
            tiles.save(folder)
            _write_json_atomically(pointer, {"version": folder.name, "sources_done": len(sources)})
            shutil.rmtree(old, ignore_errors=True)
        progress(len(sources), len(sources))
        cached = self._cached(session_id)
        cached.tiles[shape] = tiles
        cached.folders[shape] = folder
        for key in [k for k in cached.indexes if k[0] == shape]:
            del cached.indexes[key]
        return tiles

    def _cached(self, session_id: str) -> _Cached:
        with self._cache_guard:
            entry = self._cache.get(session_id)
            if entry is None:
                entry = self._cache[session_id] = _Cached()
                while len(self._cache) > self.settings.library_cache_sessions:
                    self._cache.popitem(last=False)
            self._cache.move_to_end(session_id)
            return entry

    def _root(self, session_id: str) -> Path:
        return self.storage.session_dir(session_id)

    def _state(self, session_id: str) -> dict[str, int]:
        path = self._root(session_id) / "ingest.json"
        return json.loads(path.read_text()) if path.exists() else {}
