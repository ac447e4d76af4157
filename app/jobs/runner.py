"""The index builds and renders: what they do, and how they are submitted.

What a job does is the same in every deployment; only where it runs differs, and that is the
dispatcher's business (:mod:`app.jobs.dispatch`): a thread pool here, or Celery workers
anywhere. :class:`Jobs` registers its two kinds in the job-kind table (:mod:`app.jobs.kinds`),
through which every dispatcher runs them. Every job's state lives in the records: after a
restart of a single server, interrupted jobs are resumed from the files on disk; in a cluster
the queue hands them out again.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from app.engine import (
    BadParameter,
    EngineError,
    ImageRejected,
    MosaicParams,
    make_mosaic,
    write_mosaic,
)
from app.engine.render import FILE_EXTENSIONS
from app.jobs.dispatch import Dispatcher
from app.jobs.kinds import INDEX, RENDER, JobKinds
from app.jobs.library import Libraries
from app.jobs.progress import Throttle
from app.jobs.records import Records
from app.settings import Settings
from app.storage import Storage, StorageFull, atomic_writer

log = logging.getLogger(__name__)


class Jobs:
    """Submits and runs the index builds and renders of every session.

    ``after_render``: called with a mosaic's id when its render is ready (to queue its zoom
    pyramid).
    """

    def __init__(
        self,
        settings: Settings,
        storage: Storage,
        records: Records,
        libraries: Libraries,
        *,
        dispatcher: Dispatcher,
        kinds: JobKinds,
        after_render: Sequence[Callable[[str], None]] = (),
    ) -> None:
        self.settings = settings
        self.storage = storage
        self.records = records
        self.libraries = libraries
        self.dispatcher = dispatcher
        self.worker_name = f"{socket.gethostname()}:{os.getpid()}"
        self._after_render = tuple(after_render)
        kinds.register(INDEX, self.build_index)
        kinds.register(RENDER, self.render)

    def shutdown(self, *, wait: bool = True) -> None:
        self.dispatcher.shutdown(wait=wait)

    def submit_index(self, session_id: str) -> None:
        self.dispatcher.submit(INDEX, session_id)

    def submit_render(self, mosaic_id: str) -> None:
        self.dispatcher.submit(RENDER, mosaic_id)

    def idle(self) -> bool:
        return self.dispatcher.idle()

    def resume_interrupted(self) -> None:
        """Restart what a stopped server left unfinished: index builds first, then renders.

        Only for a dispatcher whose jobs die with the process: a durable queue still holds them.
        """
        if self.dispatcher.durable:
            return
        for session_id in self.records.sessions_in_state("indexing"):
            log.info("resuming index build of session %s", session_id)
            self.submit_index(session_id)
        for mosaic in self.records.mosaics_in_state("queued", "rendering"):
            log.info("resuming render of mosaic %s", mosaic.id)
            self.records.update_mosaic(mosaic.id, state="queued", stage=None, done=0, total=0)
            session = self.records.session(mosaic.session_id)
            if session is not None and session.state != "indexing":  # else the build submits it
                self.submit_render(mosaic.id)

    # jobs ---------------------------------------------------------------------------------------

    def build_index(self, session_id: str, *, worker: str | None = None) -> None:
        """Decode the session's new uploads into its tile library and mark it ready."""
        if self.records.session(session_id) is None:
            return  # deleted meanwhile
        self.records.update_session(session_id, worker=worker or self.worker_name)
        throttle = Throttle()

        def progress(done: int, total: int) -> None:
            if throttle.due(done, total):
                self.records.update_session(session_id, done=done, total=total)

        try:
            tiles, sources = self.libraries.ingest(session_id, progress)
        except FileNotFoundError:
            if self.records.session(session_id) is None:  # deleted while it was being indexed
                self.storage.forget_local(session_id)  # folders the build re-created
                return
            raise
        except Exception as exc:
            log.exception("index build of session %s failed", session_id)
            self.records.update_session(session_id, state="failed", error=f"index build failed: {exc}")
            self._submit_waiting_renders(session_id)
            return
        rejected = [{"file": r.name, "reason": r.reason} for r in tiles.rejected]
        if len(tiles):
            state, error = "ready", None
        else:
            state, error = "failed", "no usable tiles: every file was rejected"
        if self.records.session(session_id) is None:  # deleted while it was being indexed
            self.storage.forget_local(session_id)
            return
        self.records.update_session(
            session_id, state=state, error=error, done=sources, total=sources,
            accepted=len(tiles), rejected=rejected,
        )  # fmt: skip
        self._submit_waiting_renders(session_id)

    def _submit_waiting_renders(self, session_id: str) -> None:
        """Mosaics requested together with their tiles wait for the index; start them now."""
        for mosaic in self.records.mosaics_of(session_id):
            if mosaic.state == "queued":
                self.submit_render(mosaic.id)

    def render(self, mosaic_id: str, *, worker: str | None = None) -> None:
        """Render one queued mosaic into its folder (again, if a worker died rendering it)."""
        record = self.records.mosaic(mosaic_id)
        if record is None or record.state in ("ready", "failed"):
            return  # deleted, or a second delivery of a finished job
        session_id = record.session_id
        session = self.records.session(session_id)
        if session is None:
            return
        if session.state == "indexing":
            return  # stays queued: the running index build submits it again when done
        if session.state != "ready":
            reason = session.error or "the tile library is not ready"
            self.records.update_mosaic(mosaic_id, state="failed", error=reason)
            return
        params = mosaic_params(record.params)
        folder = self.storage.mosaic_dir(session_id, mosaic_id)
        throttle = Throttle()

        def progress(stage: str, done: int, total: int) -> None:
            if throttle.due(done, total):
                self.records.update_mosaic(mosaic_id, stage=stage, done=done, total=total)

        self.records.update_mosaic(
            mosaic_id, state="rendering", stage="tiles", worker=worker or self.worker_name
        )
        started = time.perf_counter()
        try:
            tiles, index = self.libraries.open(session_id, params, lambda d, t: progress("tiles", d, t))
            self.storage.fetch_tree(folder)  # the cover, when another process stored it
            result = make_mosaic(
                _cover_path(folder), tiles, params, index=index, cover_name=record.cover_name,
                max_pixels=self.settings.max_image_pixels, progress=progress,
                stitched=record.format != "tiff",  # a print file is streamed from the cells
                placer=self.libraries.placer(session_id, params, tiles),  # cells above thumbnail size
            )  # fmt: skip
            progress("encode", 0, 1)
            t = time.perf_counter()
            out = folder / f"mosaic{FILE_EXTENSIONS[record.format]}"
            with atomic_writer(out) as fh:
                write_mosaic(result, fh, record.format, progress=lambda d, t: progress("encode", d, t))
            encode_s = time.perf_counter() - t
            # The placement, for viewers and animations that render from tiles, not from pixels.
            with atomic_writer(folder / "grid.npy") as fh:
                np.save(fh, result.grid.astype(np.int32))
            written = [out, folder / "grid.npy"]
            (folder / "offsets.npy").unlink(missing_ok=True)
            if result.cell_offsets is not None:  # the tint of each cell: with the grid, the exact picture
                with atomic_writer(folder / "offsets.npy") as fh:
                    np.save(fh, result.cell_offsets)
                written.append(folder / "offsets.npy")
            (folder / "backgrounds.npy").unlink(missing_ok=True)
            if result.backgrounds is not None:  # what shows through each cell's transparent tile
                with atomic_writer(folder / "backgrounds.npy") as fh:
                    np.save(fh, result.backgrounds)
                written.append(folder / "backgrounds.npy")
            self.storage.publish_many(written)  # before the record says ready
        except ImageRejected as exc:
            self._fail(mosaic_id, f"cover {exc.name}: {exc.reason}")
            return
        except (BadParameter, EngineError, StorageFull) as exc:
            self._fail(mosaic_id, str(exc))
            return
        except FileNotFoundError:
            if self.records.mosaic(mosaic_id) is None:  # the session was deleted while rendering
                if self.records.session(session_id) is None:
                    self.storage.forget_local(session_id)  # folders the render re-created
                return
            log.exception("render of mosaic %s lost its files", mosaic_id)
            self._fail(mosaic_id, "the mosaic's files disappeared while rendering")
            return
        except Exception as exc:
            log.exception("render of mosaic %s failed", mosaic_id)
            self._fail(mosaic_id, f"internal error while rendering ({type(exc).__name__})")
            return
        report = result.report()
        report["timings"] = {**report["timings"], "encode": round(encode_s, 4),  # type: ignore[dict-item]
                             "job": round(time.perf_counter() - started, 4)}  # fmt: skip
        report["bytes"] = out.stat().st_size
        report["file"] = out.name
        report["library_shape"] = list(tiles.tile_size)
        self.records.update_mosaic(mosaic_id, state="ready", stage=None, done=1, total=1, result=report)
        for listener in self._after_render:
            listener(mosaic_id)

    def _fail(self, mosaic_id: str, reason: str) -> None:
        if self.records.mosaic(mosaic_id) is not None:
            self.records.update_mosaic(mosaic_id, state="failed", stage=None, error=reason)


def _cover_path(folder: Path) -> Path:
    return next(folder.glob("cover.*"))


def mosaic_params(params: dict[str, Any]) -> MosaicParams:
    """The engine parameters of a mosaic, rebuilt from its stored record parameters."""
    return MosaicParams.from_record(params)
