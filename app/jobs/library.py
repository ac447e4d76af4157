"""A session's tile library: uploads in, tile thumbnails and nearest-neighbour indexes out.

Every image source of a session (uploaded files, and the members of uploaded archives, unpacked)
is listed once in ``sources.jsonl``. Tiles are decoded once at the stored thumbnail size and
saved as arrays; a mosaic with larger or differently shaped tiles decodes the sources again at
that shape, once, and keeps that too. Indexes are never stored: their feature arrays are, and the
tree is refitted on load.

Every change to a library happens under the session's lock (a Redis lock in a cluster), and
every file is published to the shared storage after it is written and fetched before it is
read. A process keeps the libraries it loaded in memory for as long as the session's source
count (``ingest.json``) is unchanged; an index build elsewhere changes it, and the library
is loaded again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import threading
from collections import OrderedDict
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np

from app.engine import MosaicParams, TileIndex, TileSet
from app.engine.features import tile_features, weights_for
from app.engine.tiles import Rejection
from app.jobs.locks import SessionLocks
from app.jobs.progress import Progress
from app.jobs.records import Records, UploadEntry
from app.settings import Settings
from app.storage import ArchiveLimits, Storage, Upload, extract_zip, is_zip

log = logging.getLogger(__name__)


@dataclass
class _Cached:
    tiles: dict[tuple[int, int], TileSet] = field(default_factory=dict)
    folders: dict[tuple[int, int], Path] = field(default_factory=dict)
    indexes: dict[tuple[tuple[int, int], str, int], TileIndex] = field(default_factory=dict)
    generation: int = -1  # the number of registered sources these were loaded at


def _ignore(done: int, total: int) -> None:
    pass


def _write_json_atomically(path: Path, data: object) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


class Libraries:
    """Builds and caches the tile libraries of all sessions (a few kept in memory)."""

    def __init__(self, settings: Settings, storage: Storage, records: Records, locks: SessionLocks) -> None:
        self.settings = settings
        self.storage = storage
        self.records = records
        self.locks = locks
        self._cache: OrderedDict[str, _Cached] = OrderedDict()
        self._cache_guard = threading.Lock()

    @property
    def base_shape(self) -> tuple[int, int]:
        return self.settings.thumb_size, self.settings.thumb_size

    def lock(self, session_id: str) -> AbstractContextManager[None]:
        return self.locks.hold(session_id)

    def forget_cached(self, session_id: str) -> None:
        with self._cache_guard:
            self._cache.pop(session_id, None)

    def forget(self, session_id: str) -> None:
        self.forget_cached(session_id)
        self.locks.forget(session_id)

    # uploads ----------------------------------------------------------------------------------

    def add_upload(self, session_id: str, name: str, stream: IO[bytes], *, max_bytes: int) -> Upload:
        """Store an uploaded file under the session's next number, then list it in the manifest
        (an upload that fails midway uses up its number and is never listed)."""
        self._adopt_legacy_manifest(session_id)
        seq = self.records.next_upload_seq(session_id)
        upload = self.storage.write_upload(session_id, seq, name, stream, max_bytes=max_bytes)
        self.records.add_upload(session_id, UploadEntry(seq, name, upload.path.name))
        return upload

    def uploads(self, session_id: str) -> list[Upload]:
        """Every finished upload of a session, in upload order."""
        self._adopt_legacy_manifest(session_id)
        folder = self.storage.uploads_dir(session_id)
        return [Upload(e.seq, e.name, folder / e.file) for e in self.records.uploads(session_id)]

    def _adopt_legacy_manifest(self, session_id: str) -> None:
        """Sessions stored by earlier versions list their uploads in ``uploads.jsonl``: move the
        list into the records (once), and continue the numbering after it."""
        path = self._root(session_id) / "uploads.jsonl"
        if not path.exists():
            return
        with self.lock(session_id):
            if not path.exists():
                return
            entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            if not self.records.uploads(session_id):
                for e in entries:
                    self.records.add_upload(
                        session_id, UploadEntry(int(e["seq"]), str(e["name"]), str(e["file"]))
                    )
            last = max((int(e["seq"]) for e in entries), default=0)
            while self.records.next_upload_seq(session_id) < last:
                pass
            path.replace(path.with_name("uploads.jsonl.adopted"))

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
                    self._cached(session_id).generation = len(sources)
                    return tiles, len(sources)

    def _pending_uploads(self, session_id: str) -> list[Upload]:
        done = self._state(session_id).get("uploads_done", 0)
        return [u for u in self.uploads(session_id) if u.seq > done]

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
            disk_room=self.storage.room_bytes(self.settings.max_disk_bytes),
        )
        entries: list[dict[str, str]] = []
        rejected: list[Rejection] = []
        root = self._root(session_id)
        self.storage.fetch_many(u.path for u in pending)
        for upload in pending:
            if upload.path.exists() and is_zip(upload.path):
                dest = upload.path.with_name(upload.path.stem + "-unpacked")
                members, bad = extract_zip(upload.path, dest, label=upload.name, limits=limits)
                written = sum(p.stat().st_size for _, p in members)
                limits = dataclasses.replace(limits, disk_room=max(0, (limits.disk_room or 0) - written))
                self.storage.publish_many(p for _, p in members)  # other workers decode them too
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
        self.storage.publish(path, root / "ingest.json")
        return rejected

    def _source_entries(self, session_id: str) -> list[dict[str, str]]:
        path = self._root(session_id) / "sources.jsonl"
        if not self.storage.fetch(path, fresh=True):
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

    def open(
        self, session_id: str, params: MosaicParams, progress: Progress | None = None
    ) -> tuple[TileSet, TileIndex]:
        """The library to render ``params`` from and its nearest-neighbour index, taken together
        under the session's lock (so an index build cannot swap one without the other).

        The tiles are the stored thumbnails when they are large enough and of the right shape,
        else the sources decoded at the tile shape (once). The index is refitted from stored
        features (computed and stored on first use).
        """
        shape = self.shape_for(params)
        with self.lock(session_id):
            cached = self._current(session_id)
            if shape not in cached.tiles:
                sources = self._sources(session_id)
                self._update_shape(session_id, shape, sources, progress or _ignore, [])
            return cached.tiles[shape], self._index(cached, (shape, params.color_space, params.cell_grid))

    def tiles_for(self, session_id: str, params: MosaicParams, progress: Progress | None = None) -> TileSet:
        return self.open(session_id, params, progress)[0]

    def index_for(self, session_id: str, params: MosaicParams) -> TileIndex:
        return self.open(session_id, params)[1]

    def shape_for(self, params: MosaicParams) -> tuple[int, int]:
        tile_w, tile_h = params.tile_shape
        if params.aspect[0] == params.aspect[1] and tile_w <= self.settings.thumb_size:
            return self.base_shape
        return tile_w, tile_h

    def _current(self, session_id: str) -> _Cached:
        """This process's cached library of the session, dropped first if an index build (here
        or in another process) registered sources since it was loaded. Call under the lock."""
        generation = self._state(session_id).get("sources", 0)
        cached = self._cached(session_id)
        if cached.generation != generation:
            self.forget_cached(session_id)
            cached = self._cached(session_id)
            cached.generation = generation
        return cached

    def _index(self, cached: _Cached, key: tuple[tuple[int, int], str, int]) -> TileIndex:
        shape, color_space, cell_grid = key
        if key not in cached.indexes:
            tiles, folder = cached.tiles[shape], cached.folders[shape]
            version = hashlib.sha1(repr(weights_for(color_space)).encode()).hexdigest()[:8]  # type: ignore[arg-type]
            path = folder / f"features-{color_space}-{cell_grid}-{version}.npy"  # weights change: new file
            if self.storage.fetch(path):
                index = TileIndex.load(path)
            else:
                features = tile_features(tiles.images, color_space=color_space, grid=cell_grid)  # type: ignore[arg-type]
                index = TileIndex(features)
                index.save(path)
                self.storage.publish(path)
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
        if self.storage.fetch(pointer, fresh=True):
            meta = json.loads(pointer.read_text())
            folder, done = base / meta["version"], int(meta["sources_done"])
            self.storage.fetch_many([folder / "images.npy", folder / "tiles.json"])
            tiles = TileSet.load(folder)
        else:
            folder, done = base / "v0", 0
            tiles = TileSet(np.zeros((0, shape[1], shape[0], 3), dtype=np.uint8), [])
        pending = sources[done:]
        if pending or extra_rejections:
            self.storage.fetch_many(Path(path) for _, path in pending)
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
            self.storage.publish_many([folder / "images.npy", folder / "tiles.json"])
            self.storage.publish(pointer)  # only once what it names is there
            self.storage.delete_tree(old)
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
        return json.loads(path.read_text()) if self.storage.fetch(path, fresh=True) else {}
