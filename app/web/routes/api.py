"""The REST API: sessions (tile libraries) and the mosaics made from them."""

from __future__ import annotations

import mimetypes
import secrets
import shutil
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, File, Form, Response, UploadFile, status
from fastapi.responses import FileResponse

from app.engine.decode import upright_size
from app.engine.render import FILE_EXTENSIONS, MEDIA_TYPES
from app.jobs.records import MosaicRecord, SessionRecord
from app.jobs.services import Services
from app.jobs.zoom_records import PyramidRecord
from app.storage import FileTooLarge, display_name, write_stream_atomically
from app.web.budgets import check_render_budget, check_session_jobs
from app.web.deps import MosaicDep, ServicesDep, SessionDep
from app.web.errors import ApiError
from app.web.files import stored_file_response
from app.web.forms import LimitedRoute
from app.web.schemas import MosaicOptions, MosaicOut, Progress, PyramidOut, RejectedFile, SessionOut

# Every handler here is a plain ``def``: FastAPI runs it in its thread pool, so the records
# (SQLite, Redis), the files and the object store are never called from the event loop. The
# uploads are spooled before a handler starts, and read from its thread.
router = APIRouter(route_class=LimitedRoute, prefix="/api", tags=["mosaics"])

TilesField = Annotated[list[UploadFile], File(description="tile images, or .zip archives of them")]
CoverField = Annotated[UploadFile, File(description="the picture to re-create")]
OptionsForm = Annotated[MosaicOptions, Form()]
_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "unknown session or mosaic id"},
    413: {"description": "a file, the request or the output is too large"},
    415: {"description": "a file is not a supported image"},
    422: {"description": "a parameter is out of range"},
}


def new_id() -> str:
    """An unguessable id: 192 random bits, URL-safe."""
    return secrets.token_urlsafe(24)


@router.post("/sessions", status_code=status.HTTP_202_ACCEPTED, response_model=SessionOut, responses=_ERRORS)
def create_session(tiles: TilesField, services: ServicesDep, background: BackgroundTasks) -> SessionOut:
    """Upload a tile library. The index is built in the background: poll ``status_url``."""
    session_id = _new_session(services, tiles)
    background.add_task(services.jobs.submit_index, session_id)
    return session_out(services, _session(services, session_id))


@router.get("/sessions/{session_id}", response_model=SessionOut, responses=_ERRORS)
def get_session(session: SessionDep, services: ServicesDep) -> SessionOut:
    """State of the tile library (``indexing``, ``ready``, ``failed``), progress, rejected files,
    and the session's mosaics."""
    return session_out(services, session)


@router.post(
    "/sessions/{session_id}/tiles", status_code=status.HTTP_202_ACCEPTED, response_model=SessionOut,
    responses=_ERRORS,
)  # fmt: skip
def add_tiles(
    session: SessionDep, tiles: TilesField, services: ServicesDep, background: BackgroundTasks
) -> SessionOut:
    """Add tiles to a library; the index is rebuilt in the background."""
    _store_tiles(services, session.id, tiles)
    services.records.update_session(session.id, state="indexing", error=None)
    background.add_task(services.jobs.submit_index, session.id)
    return session_out(services, _session(services, session.id))


@router.delete("/sessions/{session_id}", status_code=status.HTTP_204_NO_CONTENT, responses=_ERRORS)
def delete_session(session: SessionDep, services: ServicesDep) -> Response:
    """Remove the session, its tiles and every mosaic made from them (with their zoom pyramids,
    share links and animations)."""
    services.delete_session(session.id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/sessions/{session_id}/mosaics", status_code=status.HTTP_202_ACCEPTED, response_model=MosaicOut,
    responses={**_ERRORS, 409: {"description": "the tile library is not ready"}},
)  # fmt: skip
def create_mosaic(
    session: SessionDep, cover: CoverField, options: OptionsForm, services: ServicesDep,
    background: BackgroundTasks,
) -> MosaicOut:  # fmt: skip
    """Make a mosaic of ``cover`` from the session's tiles; rendering runs in the background."""
    if session.state != "ready":
        detail = "the tile library is still being indexed; try again when its state is ready"
        if session.state == "failed":
            detail = f"the tile library failed: {session.error}"
        raise ApiError(409, detail, field="session_id")
    check_session_jobs(services, session.id)
    record = _new_mosaic(services, session.id, cover, options)
    background.add_task(services.jobs.submit_render, record.id)
    return mosaic_out(record, None)


@router.get("/sessions/{session_id}/mosaics/{mosaic_id}", response_model=MosaicOut, responses=_ERRORS)
def get_mosaic(mosaic: MosaicDep, services: ServicesDep) -> MosaicOut:
    """State (``queued``, ``rendering``, ``ready``, ``failed``), progress, size and timings; once
    ready, the zoom pyramid's state, ``dzi_url`` and the share link ``viewer_url``."""
    return mosaic_out(mosaic, services.zoom_records.pyramid(mosaic.id))


@router.delete(
    "/sessions/{session_id}/mosaics/{mosaic_id}", status_code=status.HTTP_204_NO_CONTENT, responses=_ERRORS
)
def delete_mosaic(mosaic: MosaicDep, services: ServicesDep) -> Response:
    """Remove one mosaic: its file, zoom pyramid, share link and animations."""
    services.delete_mosaic(mosaic.session_id, mosaic.id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.head("/sessions/{session_id}/mosaics/{mosaic_id}/image", include_in_schema=False)
@router.get(
    "/sessions/{session_id}/mosaics/{mosaic_id}/image",
    response_class=FileResponse,
    responses={**_ERRORS, 409: {"description": "the mosaic is not ready"}},
)
def get_mosaic_image(mosaic: MosaicDep, services: ServicesDep, download: bool = False) -> Response:
    """The finished mosaic file. ``?download=1`` asks the browser to save it. With
    ``TESSERA_PRESIGNED_DOWNLOADS``, a redirect to the file in the object store."""
    if mosaic.state != "ready":
        raise ApiError(409, f"the mosaic is {mosaic.state}, not ready", field="mosaic_id")
    path = services.storage.mosaic_dir(mosaic.session_id, mosaic.id) / str(mosaic.result["file"])
    return stored_file_response(
        services, path, filename=download_name(mosaic), media_type=MEDIA_TYPES[mosaic.format],
        download=download, what="mosaic", field="mosaic_id",
    )  # fmt: skip


@router.get(
    "/sessions/{session_id}/mosaics/{mosaic_id}/cover", response_class=FileResponse, responses=_ERRORS
)
def get_mosaic_cover(mosaic: MosaicDep, services: ServicesDep) -> Response:
    """The cover picture the mosaic was made of, as uploaded (for a before/after view)."""
    path = _cover_path(services.storage.mosaic_dir(mosaic.session_id, mosaic.id), mosaic.cover_name)
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return stored_file_response(
        services, path, filename=mosaic.cover_name, media_type=media_type, download=False, what="cover",
        field="mosaic_id",
    )  # fmt: skip


@router.post("/mosaics", status_code=status.HTTP_202_ACCEPTED, response_model=MosaicOut, responses=_ERRORS)
def create_mosaic_one_shot(
    cover: CoverField, tiles: TilesField, options: OptionsForm, services: ServicesDep,
    background: BackgroundTasks,
) -> MosaicOut:  # fmt: skip
    """Cover and tiles in one request, for scripts: a new session is made for the tiles and the
    mosaic renders as soon as they are indexed. Poll the returned ``status_url``."""
    session_id = _new_session(services, tiles)
    try:
        record = _new_mosaic(services, session_id, cover, options)
    except BaseException:
        services.delete_session(session_id)
        raise
    background.add_task(services.jobs.submit_index, session_id)
    return mosaic_out(record, None)


# helpers ----------------------------------------------------------------------------------------


def _new_session(services: Services, tiles: list[UploadFile]) -> str:
    session_id = new_id()
    services.storage.create_session(session_id)
    services.records.create_session(session_id)
    try:
        _store_tiles(services, session_id, tiles)
    except BaseException:
        services.delete_session(session_id)
        raise
    return session_id


def _store_tiles(services: Services, session_id: str, tiles: list[UploadFile]) -> None:
    settings = services.settings
    files = [f for f in tiles if f.filename or (f.size or 0) > 0]
    if not files:
        raise ApiError(422, "no tile files in the request", field="tiles")
    _check_disk(services)
    existing = len(services.records.uploads(session_id))
    if existing + len(files) > settings.max_files_per_session:
        raise ApiError(
            413, f"a session holds at most {settings.max_files_per_session} files", field="tiles"
        )  # fmt: skip
    services.records.update_session(session_id, total=existing + len(files))
    for number, upload in enumerate(files, start=1):
        name = display_name(upload.filename or f"file-{number}")
        try:
            services.libraries.add_upload(session_id, name, upload.file, max_bytes=settings.max_file_bytes)
        except FileTooLarge as exc:
            raise ApiError(413, str(exc), file=name, field="tiles") from exc
        finally:
            upload.file.close()


def _new_mosaic(
    services: Services, session_id: str, cover: UploadFile, options: MosaicOptions
) -> MosaicRecord:
    settings = services.settings
    if options.cols > settings.cols_limit:  # before the cover is even stored
        check_render_budget(settings, cols=options.cols, rows=1, tile_shape=(1, 1), fmt=options.format)
    max_pixels = settings.max_tiff_pixels if options.format == "tiff" else settings.max_output_pixels
    params = options.engine_params(max_output_pixels=max_pixels)
    mosaic_id = new_id()
    folder = services.storage.mosaic_dir(session_id, mosaic_id)
    name = display_name(cover.filename or "cover")
    _check_disk(services)
    try:
        path = _cover_path(folder, name)
        try:
            write_stream_atomically(cover.file, path, max_bytes=settings.max_file_bytes)
        except FileTooLarge as exc:
            raise ApiError(413, str(exc), file=name, field="cover") from exc
        width, height = upright_size(path, name=name, max_pixels=settings.max_image_pixels)
        rows = params.rows_for(width, height)
        check_render_budget(
            settings, cols=params.cols, rows=rows, tile_shape=params.tile_shape, fmt=options.format
        )
        services.storage.publish(path)  # for the worker that renders it
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    stored = {**params.to_record(), "format": options.format, "rows": rows}
    return services.records.create_mosaic(
        mosaic_id, session_id, params=stored, fmt=options.format, cover_name=name
    )


def _cover_path(folder: Path, name: str) -> Path:
    """Where a mosaic's cover is kept: ``cover.<the client's suffix>`` in the mosaic's folder."""
    suffix = (name.rsplit(".", 1)[-1].lower() if "." in name else "img")[:5]
    return folder / f"cover.{suffix if suffix.isalnum() else 'img'}"


def _check_disk(services: Services) -> None:
    cap = services.settings.max_disk_bytes
    if services.storage.used_bytes >= cap:
        raise ApiError(
            507, f"the server's storage is full ({cap / 2**30:.1f} GiB, TESSERA_MAX_DISK_BYTES); "
            "try again later"
        )  # fmt: skip


def _session(services: Services, session_id: str) -> SessionRecord:
    record = services.records.session(session_id)
    if record is None:
        raise ApiError(404, f"no session {session_id}", field="session_id")
    return record


def session_out(services: Services, record: SessionRecord) -> SessionOut:
    return SessionOut(
        id=record.id,
        state=record.state,
        status_url=f"/api/sessions/{record.id}",
        progress=Progress(done=record.done, total=record.total),
        tiles_accepted=record.accepted,
        rejected=[RejectedFile(**r) for r in record.rejected],
        error=record.error,
        created=record.created,
        updated=record.updated,
        mosaics=[
            mosaic_out(m, services.zoom_records.pyramid(m.id)) for m in services.records.mosaics_of(record.id)
        ],
    )


def mosaic_out(record: MosaicRecord, pyramid: PyramidRecord | None) -> MosaicOut:
    base = f"/api/sessions/{record.session_id}/mosaics/{record.id}"
    result = record.result
    ready = record.state == "ready"
    zoom_ready = ready and pyramid is not None and pyramid.state == "ready"
    return MosaicOut(
        id=record.id,
        session_id=record.session_id,
        state=record.state,
        stage=record.stage,
        progress=Progress(done=record.done, total=record.total),
        params=_public_params(record.params),
        format=record.format,
        cover_name=record.cover_name,
        width=result.get("width"),
        height=result.get("height"),
        cols=result.get("cols", record.params.get("cols")),
        rows=result.get("rows", record.params.get("rows")),
        report={k: v for k, v in result.items() if k not in ("timings", "params", "file")},
        timings=result.get("timings", {}),
        error=record.error,
        created=record.created,
        updated=record.updated,
        status_url=base,
        image_url=f"{base}/image" if ready else None,
        cover_url=f"{base}/cover",
        download_name=download_name(record) if ready else None,
        dzi_url=f"{base}/dzi/mosaic.dzi" if zoom_ready else None,
        viewer_url=f"/v/{pyramid.share_token}" if ready and pyramid is not None else None,
        pyramid=pyramid_out(pyramid) if ready and pyramid is not None else None,
        animations_url=f"{base}/animations" if ready else None,
    )


def pyramid_out(pyramid: PyramidRecord) -> PyramidOut:
    layout = pyramid.layout
    return PyramidOut(
        state=pyramid.state,
        progress=Progress(done=pyramid.done, total=pyramid.total),
        levels=layout.get("levels"),
        tile_size=layout.get("tile_size"),
        overlap=layout.get("overlap"),
        format=layout.get("fmt"),
        error=pyramid.error,
    )


def download_name(record: MosaicRecord) -> str:
    stem = record.cover_name.rsplit(".", 1)[0]
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in stem)[:40].strip("-") or "cover"
    cols, rows = record.params.get("cols"), record.params.get("rows")
    return f"tessera-{safe}-{cols}x{rows}{FILE_EXTENSIONS[record.format]}"


def _public_params(stored: dict[str, Any]) -> dict[str, Any]:
    """Parameters as a client sends them (aspect as ``W:H``), without server-side limits."""
    public = {k: v for k, v in stored.items() if k != "max_output_pixels"}
    if isinstance(public.get("aspect"), list):
        public["aspect"] = ":".join(str(part) for part in public["aspect"])
    return public
