"""A session's tile library: uploads in, tile thumbnails and nearest-neighbour indexes out.

Every image source of a session (uploaded files, and the members of uploaded archives, unpacked)
is listed once in ``sources.jsonl``. Tiles are decoded once at the stored thumbnail size and
saved as arrays. A mosaic is always matched on thumbnails: the stored ones for square cells, and
for other cell shapes the sources decoded once at that aspect, at about the thumbnails' pixel
count (kept too, and counted against ``TESSERA_MAX_DISK_BYTES``). Cells larger than the
thumbnails get only their placed tiles decoded again at the cell size (:meth:`Libraries.placer`),
never the whole library: what a mosaic costs follows what it uses. Each library version keeps
``origins.npy``, the source of each tile, for that. Indexes are never stored: their feature
arrays are, and the tree is refitted on load.

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
import math
import threading
from collections import OrderedDict
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
from numpy.typing import NDArray

from app.engine import MosaicParams, TileIndex, TileSet
from app.engine.decode import WHITE
from app.engine.features import tile_features, weights_for
from app.engine.tiles import Placer, Rejection, TileJob, decode_chunks, usable_cores
from app.jobs.locks import SessionLocks
from app.jobs.progress import Progress
from app.jobs.records import Records, UploadEntry
from app.settings import Settings
from app.storage import ArchiveLimits, Storage, StorageFull, Upload, extract_zip, is_zip

log = logging.getLogger(__name__)


@dataclass
class _Cached:
    tiles: dict[tuple[int, int], TileSet] = field(default_factory=dict)
    folders: dict[tuple[int, int], Path] = field(default_factory=dict)
    origins: dict[tuple[int, int], NDArray[np.intp] | None] = field(default_factory=dict)
    indexes: dict[tuple[tuple[int, int], str, int], TileIndex] = field(default_factory=dict)
    generation: int = -1  # the number of registered sources these were loaded at


#: Each side of a library matched at another aspect has at least this many pixels (the finest
#: cell grid's blocks).
MIN_MATCH_SIDE = 8
#: The index into the sources list of each tile of a library version.
ORIGINS_FILE = "origins.npy"


def _ignore(done: int, total: int) -> None:
    pass


def _decode_sources(sources: list[tuple[str, str]], **kwargs: object) -> tuple[TileSet, NDArray[np.intp]]:
    """:meth:`TileSet.from_inputs` of ``sources`` (display name, path), and the position in
    ``sources`` of each accepted tile. Each input is keyed by its position while it decodes (a
    display name need not be unique), and named again after."""
    keyed = [(f"{i}:{name}", path) for i, (name, path) in enumerate(sources)]
    tiles = TileSet.from_inputs(keyed, **kwargs)  # type: ignore[arg-type]
    origins = np.array([int(key.split(":", 1)[0]) for key in tiles.names], dtype=np.intp)
    tiles.names = [key.split(":", 1)[1] for key in tiles.names]
    tiles.rejected = [Rejection(r.name.split(":", 1)[1], r.reason) for r in tiles.rejected]
    return tiles, origins


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
        """The shape of the library ``params`` is matched on: the stored thumbnails for square
        cells, else that aspect at about the thumbnails' pixel count (each side at least
        :data:`MIN_MATCH_SIDE`), whatever the tile size."""
        aw, ah = params.aspect
        if aw == ah:
            return self.base_shape
        scale = self.settings.thumb_size / math.sqrt(aw * ah)
        scale = max(scale, MIN_MATCH_SIDE / min(aw, ah))
        return max(1, round(aw * scale)), max(1, round(ah * scale))

    def placer(self, session_id: str, params: MosaicParams, tiles: TileSet) -> Placer:
        """How the tiles a mosaic of ``params`` places from ``tiles`` (:meth:`open`'s) reach its
        cell size: resized when the stored tiles are at least that large, else decoded again
        from their sources at the cell size (only those: the cost follows the cells)."""
        cell_w, cell_h = params.tile_shape
        stored_w, stored_h = tiles.tile_size
        if cell_w <= stored_w and cell_h <= stored_h:
            return tiles.fitted
        paths = self._tile_paths(session_id, tiles)

        def decode_placed(
            indices: NDArray[np.intp], size: tuple[int, int]
        ) -> tuple[NDArray[np.uint8], NDArray[np.uint8] | None]:
            return self._decode_placed(tiles, paths, indices, size)

        return decode_placed

    def _tile_paths(self, session_id: str, tiles: TileSet) -> list[str | None]:
        """The source file of each tile of ``tiles`` (None where it cannot be told)."""
        shape = tiles.tile_size
        sources = self._sources(session_id)
        with self.lock(session_id):
            origins = self._cached(session_id).origins.get(shape)
            if origins is None or len(origins) < len(tiles):  # not loaded here: the stored ones
                origins = self._stored_origins(session_id, shape)
        if origins is not None and len(origins) >= len(tiles):
            return [sources[int(i)][1] if 0 <= i < len(sources) else None for i in origins[: len(tiles)]]
        # A library stored before origins were kept: by name (the last source of each name).
        by_name = dict(sources)
        return [by_name.get(name) for name in tiles.names]

    def _stored_origins(self, session_id: str, shape: tuple[int, int]) -> NDArray[np.intp] | None:
        pointer = self.storage.library_dir(session_id, shape) / "current.json"
        if not self.storage.fetch(pointer, fresh=True):
            return None
        path = pointer.parent / json.loads(pointer.read_text())["version"] / ORIGINS_FILE
        return np.load(path).astype(np.intp) if self.storage.fetch(path) else None

    def _decode_placed(
        self, tiles: TileSet, paths: list[str | None], indices: NDArray[np.intp], size: tuple[int, int]
    ) -> tuple[NDArray[np.uint8], NDArray[np.uint8] | None]:
        """The tiles at ``indices`` decoded from their sources at ``size``; a tile whose source
        is gone or fails now is its thumbnail enlarged."""
        images = np.empty((len(indices), size[1], size[0], 3), dtype=np.uint8)
        alpha = None if tiles.alpha is None else np.empty((len(indices), size[1], size[0]), dtype=np.uint8)
        known = [k for k, i in enumerate(indices) if paths[int(i)] is not None]
        items = [(tiles.names[int(indices[k])], str(paths[int(indices[k])])) for k in known]
        self.storage.fetch_many(Path(path) for _, path in items)
        job = TileJob(size, WHITE, self.settings.max_image_pixels)
        decoded = np.zeros(len(indices), dtype=bool)
        workers = self.settings.decode_threads or usable_cores()
        for start, part, opacity, reasons in decode_chunks(job, items, workers, "thread"):
            for offset, reason in enumerate(reasons):
                if reason is None:
                    k = known[start + offset]
                    images[k] = part[offset]
                    if alpha is not None:
                        alpha[k] = opacity[offset]
                    decoded[k] = True
        for missing in np.flatnonzero(~decoded):
            enlarged, opacity_k = tiles.fitted(indices[missing : missing + 1], size)
            images[missing] = enlarged[0]
            if alpha is not None and opacity_k is not None:
                alpha[missing] = opacity_k[0]
        return images, alpha

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
            self.storage.fetch(folder / "alpha.npy")  # only libraries with transparent tiles have it
            tiles = TileSet.load(folder)
        else:
            folder, done = base / "v0", 0
            tiles = TileSet(np.zeros((0, shape[1], shape[0], 3), dtype=np.uint8), [])
        origins = self._load_origins(folder, len(tiles))
        pending = sources[done:]
        if pending or extra_rejections:
            if shape != self.base_shape:  # a matching library a mosaic asked for: it must fit
                self._check_room(len(pending), shape)
            self.storage.fetch_many(Path(path) for _, path in pending)
            fresh, fresh_origins = _decode_sources(
                pending, size=shape, max_pixels=self.settings.max_image_pixels,
                workers=self.settings.decode_threads, progress=lambda d, t: progress(done + d, len(sources)),
            )  # fmt: skip
            fresh.rejected[:0] = extra_rejections
            tiles = tiles.extend(fresh)
            if origins is not None:
                origins = np.concatenate([origins, done + fresh_origins])
            old, folder = folder, base / f"v{int(folder.name[1:]) + 1}"
            tiles.save(folder)
            written = tiles.files(folder)
            if origins is not None:
                np.save(folder / ORIGINS_FILE, origins)
                written.append(folder / ORIGINS_FILE)
            self.storage.count_written(sum(p.stat().st_size for p in written))
            _write_json_atomically(pointer, {"version": folder.name, "sources_done": len(sources)})
            self.storage.publish_many(written)
            self.storage.publish(pointer)  # only once what it names is there
            self.storage.delete_tree(old)
        progress(len(sources), len(sources))
        cached = self._cached(session_id)
        cached.tiles[shape] = tiles
        cached.folders[shape] = folder
        cached.origins[shape] = origins
        for key in [k for k in cached.indexes if k[0] == shape]:
            del cached.indexes[key]
        return tiles

    def _load_origins(self, folder: Path, count: int) -> NDArray[np.intp] | None:
        """The stored origins of the library version in ``folder`` (``count`` tiles): empty for a
        new library, None for one stored before origins were kept."""
        if count == 0:
            return np.zeros(0, dtype=np.intp)
        path = folder / ORIGINS_FILE
        return np.load(path).astype(np.intp) if self.storage.fetch(path) else None

    def _check_room(self, count: int, shape: tuple[int, int]) -> None:
        """Refuse to decode ``count`` sources at ``shape`` when their arrays would not fit under
        ``TESSERA_MAX_DISK_BYTES`` (colour and opacity: 4 bytes a pixel)."""
        need = count * shape[0] * shape[1] * 4
        room = self.storage.room_bytes(self.settings.max_disk_bytes)
        if need > room:
            raise StorageFull(
                f"the server's storage is full (TESSERA_MAX_DISK_BYTES): the tiles at {shape[0]}x{shape[1]} "
                f"need {need / 2**20:.0f} MB, {room / 2**20:.0f} MB are left"
            )

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
