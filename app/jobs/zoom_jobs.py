"""Background work for seeing a mosaic: its Deep Zoom pyramid and its animations.

A pyramid is queued as soon as a render is ready and cut from the mosaic's placement grid
(``grid.npy``) and the session's tile library, never from the encoded mosaic. Animations are
rendered the same way. Both run wherever the dispatcher runs jobs (the in-process pool, or the
Celery workers, on their own queue), keep their state in the zoom records (SQLite or Redis), and
start again from scratch after a restart. With an object store, a job publishes its files
before its record says ready; the web processes fetch each file the first time it is asked for.

:class:`ZoomJobs` registers its two kinds in the job-kind table (:mod:`app.jobs.kinds`) beside
those of :class:`app.jobs.runner.Jobs`; :meth:`ZoomJobs.submit_pyramid` is what ``Jobs`` is
given to call after each render.
"""

from __future__ import annotations

import io
import logging
import secrets
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from app.engine import EngineError, MosaicParams, TileSet
from app.engine.animate import AnimationSpec, MosaicScene, make_animation, scene_of
from app.engine.deep_zoom import CellCache, PhotoLevels, photo_levels
from app.engine.pyramid import DziLayout, GridSource, save_tile, write_pyramid
from app.jobs.dispatch import Dispatcher
from app.jobs.kinds import ANIMATION, PYRAMID, JobKinds
from app.jobs.library import Libraries
from app.jobs.progress import Throttle
from app.jobs.records import MosaicRecord, Records
from app.jobs.runner import mosaic_params
from app.jobs.zoom_records import AnimationRecord, ZoomRecords
from app.settings import Settings
from app.storage import Storage

log = logging.getLogger(__name__)
PYRAMID_DIR = "dzi"
PYRAMID_NAME = "mosaic"
ANIMATION_DIR = "animations"
_DEEP_MOSAICS = 8  # mosaics whose placement is kept for drawing deep tiles


def new_token() -> str:
    """An unguessable URL-safe token (192 random bits)."""
    return secrets.token_urlsafe(24)


class ZoomJobs:
    """Queues and runs pyramid builds and animation renders."""

    def __init__(
        self,
        settings: Settings,
        storage: Storage,
        records: Records,
        zoom_records: ZoomRecords,
        libraries: Libraries,
        *,
        dispatcher: Dispatcher,
        kinds: JobKinds,
    ) -> None:
        self.settings = settings
        self.storage = storage
        self.records = records
        self.zoom_records = zoom_records
        self.libraries = libraries
        self.dispatcher = dispatcher
        self._cache_bytes = settings.zoom_cache_mb * 2**20
        self._cells = CellCache(self._cache_bytes)  # decoded photo cells of every mosaic's deep levels
        self._deep_levels: OrderedDict[str, PhotoLevels] = OrderedDict()
        self._deep_tiles: OrderedDict[tuple[str, int, int, int], bytes] = OrderedDict()
        self._deep_tile_bytes = 0
        self._deep_lock = threading.Lock()
        kinds.register(PYRAMID, self.build_pyramid)
        kinds.register(ANIMATION, self.render_animation)

    def pyramid_dir(self, mosaic: MosaicRecord) -> Path:
        return self.storage.mosaic_dir(mosaic.session_id, mosaic.id) / PYRAMID_DIR

    def animation_path(self, animation: AnimationRecord) -> Path:
        folder = self.storage.mosaic_dir(animation.session_id, animation.mosaic_id) / ANIMATION_DIR
        return folder / f"{animation.id}.{animation.spec['fmt']}"

    # submitting -------------------------------------------------------------------------------

    def submit_pyramid(self, mosaic_id: str, *, if_absent: bool = False) -> None:
        """Queue the build of a mosaic's pyramid (``if_absent``: only if it has none yet)."""
        mosaic = self.records.mosaic(mosaic_id)
        if mosaic is not None and self.zoom_records.queue_pyramid(
            mosaic_id, mosaic.session_id, new_token(), if_absent=if_absent
        ):
            if self._deleted_meanwhile(mosaic):
                return
            self.dispatcher.submit(PYRAMID, mosaic_id)

    def create_animation(self, mosaic: MosaicRecord, spec: AnimationSpec) -> AnimationRecord:
        """Record and queue an animation of a ready mosaic (``spec`` is validated here: raises
        :class:`~app.engine.BadParameter` naming the field)."""
        spec.validate(int(mosaic.result["cols"]), int(mosaic.result["rows"]))
        record = self.zoom_records.create_animation(
            new_token(),
            mosaic_id=mosaic.id,
            session_id=mosaic.session_id,
            spec=asdict(spec),
            total=spec.frames,
        )
        if not self._deleted_meanwhile(mosaic):
            self.dispatcher.submit(ANIMATION, record.id)
        return record

    def _deleted_meanwhile(self, mosaic: MosaicRecord) -> bool:
        """True (and the session's zoom records removed) if the mosaic's session was deleted
        while a zoom record of it was being created: nothing of a deleted session stays behind."""
        if self.records.mosaic(mosaic.id) is not None:
            return False
        self.zoom_records.delete_session(mosaic.session_id)
        return True

    def resume_interrupted(self) -> None:
        """After a restart: build the pyramids a stopped server left unfinished (and those of
        mosaics made before pyramids existed), and render the unfinished animations again. With
        a durable queue, which hands its jobs out again by itself, only the pyramids of mosaics
        made before pyramids existed (queued once, whichever web process gets there first)."""
        if self.dispatcher.durable:
            # In the background: a backend that is down must not keep the web process from
            # starting (readiness reports it).
            threading.Thread(target=self._queue_missing_pyramids, name="zoom-backfill", daemon=True).start()
            return
        for pyramid in self.zoom_records.pyramids_in_state("queued", "building"):
            log.info("resuming pyramid of mosaic %s", pyramid.mosaic_id)
            self.submit_pyramid(pyramid.mosaic_id)
        for mosaic in self.records.mosaics_in_state("ready"):
            if self.zoom_records.pyramid(mosaic.id) is None:
                self.submit_pyramid(mosaic.id)
        for animation in self.zoom_records.animations_in_state("queued", "rendering"):
            log.info("resuming animation %s", animation.id)
            self.zoom_records.update_animation(animation.id, state="queued", done=0)
            self.dispatcher.submit(ANIMATION, animation.id)

    def _queue_missing_pyramids(self) -> None:
        try:
            for mosaic in self.records.mosaics_in_state("ready"):
                if self.zoom_records.pyramid(mosaic.id) is None:
                    self.submit_pyramid(mosaic.id, if_absent=True)
        except Exception:
            log.warning("could not queue the pyramids of older mosaics", exc_info=True)

    # jobs -------------------------------------------------------------------------------------

    def build_pyramid(self, mosaic_id: str, *, worker: str | None = None) -> None:
        mosaic = self.records.mosaic(mosaic_id)
        if mosaic is None or mosaic.state != "ready":
            return
        throttle = Throttle()

        def progress(done: int, total: int) -> None:
            if throttle.due(done, total):
                self.zoom_records.update_pyramid(mosaic_id, done=done, total=total)

        self.zoom_records.update_pyramid(mosaic_id, state="building", error=None)
        final = self.pyramid_dir(mosaic)
        partial = final.with_name(final.name + ".building")  # a folder; resumed builds start it anew
        try:
            made = self._mosaic_cells(mosaic)
            source = GridSource.from_tiles(
                made.tiles, made.grid, made.params.tile_shape, made.offsets, made.backgrounds,
                placer=self.libraries.placer(mosaic.session_id, made.params, made.tiles),
            )  # fmt: skip
            fmt = "png" if mosaic.format == "png" else "jpg"
            deep = photo_levels(
                made.tiles, made.grid, made.params.tile_shape, DziLayout(*source.size, fmt=fmt),
                sources=self._sources(mosaic), zoom_tile_size=made.params.zoom_tile_size,
                max_pixels=self.settings.max_image_pixels,
            )  # fmt: skip
            depth = 0 if deep is None else deep.depth
            shutil.rmtree(partial, ignore_errors=True)
            layout = write_pyramid(
                source, partial, name=PYRAMID_NAME, fmt=fmt, progress=progress, depth=depth
            )  # the levels below the render are drawn on request (deep_tile)
            if self.records.mosaic(mosaic_id) is None:
                raise FileNotFoundError("the mosaic was deleted while its pyramid was built")
            shutil.rmtree(final, ignore_errors=True)
            partial.replace(final)
            self.storage.publish_tree(final)  # every tile and the descriptor, before it says ready
            if self.records.mosaic(mosaic_id) is None:  # deleted while publishing: leave nothing
                self.storage.delete_tree(final)
                self._discard_if_deleted(mosaic.session_id)
                return
        except Exception as exc:
            shutil.rmtree(partial, ignore_errors=True)
            if self.records.mosaic(mosaic_id) is None:
                self._discard_if_deleted(mosaic.session_id)
                return  # deleted while building
            log.exception("pyramid of mosaic %s failed", mosaic_id)
            self.zoom_records.update_pyramid(mosaic_id, state="failed", error=_reason(exc))
            return
        description = {**asdict(layout), "levels": layout.levels, "depth": depth,
                       "render_level": layout.max_level - depth}  # fmt: skip
        total = layout.tile_total()
        self.zoom_records.update_pyramid(
            mosaic_id, state="ready", done=total, total=total, layout=description
        )

    def render_animation(self, animation_id: str, *, worker: str | None = None) -> None:
        animation = self.zoom_records.animation(animation_id)
        mosaic = None if animation is None else self.records.mosaic(animation.mosaic_id)
        if animation is None or mosaic is None:
            return
        throttle = Throttle()

        def progress(done: int, total: int) -> None:
            if throttle.due(done, total):
                self.zoom_records.update_animation(animation_id, done=done, total=total)

        self.zoom_records.update_animation(animation_id, state="rendering", done=0, error=None)
        out = self.animation_path(animation)
        partial = out.with_name(out.name + ".part")
        started = time.perf_counter()
        try:
            spec = AnimationSpec(**animation.spec)
            scene = self._scene(mosaic)
            out.parent.mkdir(parents=True, exist_ok=True)
            frames = make_animation(scene, spec, partial, progress=progress)
            if self.records.mosaic(mosaic.id) is None:
                raise FileNotFoundError("the mosaic was deleted while it was animated")
            partial.replace(out)
            self.storage.publish(out)  # before the record says ready
            if self.records.mosaic(mosaic.id) is None:  # deleted while publishing: leave nothing
                self.storage.delete_file(out)
                self._discard_if_deleted(mosaic.session_id)
                return
        except Exception as exc:
            partial.unlink(missing_ok=True)
            if self.records.mosaic(mosaic.id) is None:
                self._discard_if_deleted(mosaic.session_id)
                return
            log.exception("animation %s failed", animation_id)
            self.zoom_records.update_animation(animation_id, state="failed", error=_reason(exc))
            return
        self.zoom_records.update_animation(
            animation_id, state="ready", done=frames, total=frames, file=out.name, bytes=out.stat().st_size,
            seconds_taken=round(time.perf_counter() - started, 3),
        )  # fmt: skip

    # helpers ----------------------------------------------------------------------------------

    def _discard_if_deleted(self, session_id: str) -> None:
        """A job that found its session deleted may have re-created folders of it (writing
        before it noticed): remove this process's copy, as the DELETE did."""
        if self.records.session(session_id) is None:
            self.storage.forget_local(session_id)

    def _mosaic_cells(self, mosaic: MosaicRecord) -> MosaicCells:
        """What a mosaic was made of: its parameters, tile library, placement grid ``(rows, cols)``
        and the colour shift of each cell ``(rows, cols, 3)`` (None if it had none)."""
        params = mosaic_params(mosaic.params)
        tiles = self.libraries.tiles_for(mosaic.session_id, params)
        folder = self.storage.mosaic_dir(mosaic.session_id, mosaic.id)
        offsets_file = folder / "offsets.npy"
        # The grid and the tints when another process rendered it (only those: the folder also
        # holds the mosaic, its pyramid's tiles and its animations).
        backgrounds_file = folder / "backgrounds.npy"
        self.storage.fetch_many([folder / "grid.npy", offsets_file, backgrounds_file])
        grid = np.load(folder / "grid.npy").astype(np.intp)
        offsets = np.load(offsets_file).astype(np.int16) if offsets_file.exists() else None
        backgrounds = np.load(backgrounds_file).astype(np.uint8) if backgrounds_file.exists() else None
        return MosaicCells(params, tiles, grid, offsets, backgrounds)

    def _sources(self, mosaic: MosaicRecord) -> _FetchedSources:
        return _FetchedSources(self.storage, dict(self.libraries.sources(mosaic.session_id)))

    def _scene(self, mosaic: MosaicRecord) -> MosaicScene:
        made = self._mosaic_cells(mosaic)
        return scene_of(
            made.tiles, made.grid, made.params.tile_shape, offsets=made.offsets,
            sources=self._sources(mosaic), max_pixels=self.settings.max_image_pixels,
            backgrounds=made.backgrounds,
        )  # fmt: skip

    # the levels below the render, drawn on request --------------------------------------------

    def deep_tile(
        self, mosaic: MosaicRecord, layout: Mapping[str, Any], level: int, col: int, row: int
    ) -> bytes:
        """The encoded tile (col, row) of a level of the pyramid deeper than the render
        (``layout``: the pyramid record's), drawn from the photos. Recently made tiles and the
        decoded cells they were made of are kept, each cache bounded (``TESSERA_ZOOM_CACHE_MB``)."""
        key = (mosaic.id, level, col, row)
        with self._deep_lock:
            cached = self._deep_tiles.get(key)
            if cached is not None:
                self._deep_tiles.move_to_end(key)
                return cached
        levels = self._photo_levels(mosaic, layout)
        out = io.BytesIO()
        save_tile(levels.tile(level, col, row), out, str(layout["fmt"]))
        data = out.getvalue()
        with self._deep_lock:
            self._deep_tiles[key] = data
            self._deep_tile_bytes += len(data)
            while self._deep_tile_bytes > self._cache_bytes // 4 and len(self._deep_tiles) > 1:
                _, dropped = self._deep_tiles.popitem(last=False)
                self._deep_tile_bytes -= len(dropped)
        return data

    def _photo_levels(self, mosaic: MosaicRecord, layout: Mapping[str, Any]) -> PhotoLevels:
        with self._deep_lock:
            levels = self._deep_levels.get(mosaic.id)
            if levels is not None:
                self._deep_levels.move_to_end(mosaic.id)
                return levels
        made = self._mosaic_cells(mosaic)
        render = DziLayout(
            int(layout["width"]) >> int(layout["depth"]), int(layout["height"]) >> int(layout["depth"]),
            tile_size=int(layout["tile_size"]), overlap=int(layout["overlap"]), fmt=str(layout["fmt"]),
        )  # fmt: skip
        made_levels = photo_levels(
            made.tiles, made.grid, made.params.tile_shape, render, sources=self._sources(mosaic),
            zoom_tile_size=made.params.zoom_tile_size, offsets=made.offsets,
            max_pixels=self.settings.max_image_pixels, cache=self._cells, key=mosaic.id,
            depth=int(layout["depth"]), backgrounds=made.backgrounds,
        )  # fmt: skip
        if made_levels is None:
            raise FileNotFoundError("this pyramid has no levels below the render")
        with self._deep_lock:
            self._deep_levels[mosaic.id] = made_levels
            while len(self._deep_levels) > _DEEP_MOSAICS:
                self._deep_levels.popitem(last=False)
        return made_levels


class _FetchedSources(Mapping[str, str]):
    """Tile name -> its photo's file, fetched from the object store when first asked for: a
    close view decodes only the few photos it shows, on a worker that may never have had them."""

    def __init__(self, storage: Storage, paths: dict[str, str]) -> None:
        self.storage = storage
        self.paths = paths

    def __getitem__(self, name: str) -> str:
        path = self.paths[name]
        self.storage.fetch(Path(path))  # uploads never change once written
        return path

    def __iter__(self) -> Iterator[str]:
        return iter(self.paths)

    def __len__(self) -> int:
        return len(self.paths)


@dataclass(frozen=True)
class MosaicCells:
    params: MosaicParams
    tiles: TileSet
    grid: NDArray[np.intp]
    offsets: NDArray[np.int16] | None
    backgrounds: NDArray[np.uint8] | None = None


def _reason(exc: Exception) -> str:
    if isinstance(exc, EngineError):
        return str(exc)
    if isinstance(exc, FileNotFoundError):
        return "the mosaic's files are missing"
    return f"internal error ({type(exc).__name__})"


__all__ = ["ANIMATION_DIR", "PYRAMID_DIR", "PYRAMID_NAME", "ZoomJobs", "new_token"]
