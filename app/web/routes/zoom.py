"""Seeing a mosaic: its Deep Zoom pyramid, its animations, and the read-only share viewer.

API (session-scoped, like the rest of the REST API)::

    GET  /api/sessions/{sid}/mosaics/{mid}/dzi/mosaic.dzi                      the descriptor
    GET  /api/sessions/{sid}/mosaics/{mid}/dzi/mosaic_files/{level}/{c}_{r}.jpg   its tiles
    POST /api/sessions/{sid}/mosaics/{mid}/animations                          -> 202, poll
    GET  /api/sessions/{sid}/mosaics/{mid}/animations[/{aid}[/file]]

Share links (``/v/<token>``, no session id in them, nothing to change through them)::

    GET  /v/{token}   the viewer page;   /v/{token}/mosaic.dzi, /v/{token}/mosaic_files/...,
    GET  /v/{token}/image                the mosaic file

With an object store (a cluster), the worker that made a pyramid or an animation published its
files; a web process fetches each file the first time it is asked for (a tile: that tile only)
and serves it from its cache afterwards (the files never change once published).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request, status
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, Response

from app.engine.animate import VIDEO_MEDIA_TYPES, AnimationSpec
from app.engine.pyramid import TILE_MEDIA_TYPES, DziLayout
from app.engine.render import MEDIA_TYPES
from app.jobs.records import MosaicRecord
from app.jobs.services import Services
from app.jobs.zoom_jobs import PYRAMID_NAME
from app.jobs.zoom_records import AnimationRecord, PyramidRecord
from app.web.budgets import check_animation_budget, check_session_jobs
from app.web.deps import AnimationDep, MosaicDep, ServicesDep, SharedDep
from app.web.errors import ApiError
from app.web.files import IMMUTABLE, stored_file_response
from app.web.forms import LimitedRoute
from app.web.routes.api import download_name
from app.web.routes.pages import TEMPLATES
from app.web.schemas import AnimationOptions, AnimationOut, Progress

router = APIRouter(
    route_class=LimitedRoute, prefix="/api/sessions/{session_id}/mosaics/{mosaic_id}", tags=["zoom"]
)
share_router = APIRouter(prefix="/v/{token}", include_in_schema=False)

Level = Annotated[int, PathParam(ge=0, le=40)]
TileName = Annotated[str, PathParam(pattern=r"^\d{1,6}_\d{1,6}\.(jpg|png)$")]
_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "unknown session, mosaic, animation or tile"},
    409: {"description": "not ready yet"},
}


# the pyramid --------------------------------------------------------------------------------------


@router.get("/dzi/mosaic.dzi", responses=_ERRORS, response_class=Response)
def get_dzi(mosaic: MosaicDep, services: ServicesDep) -> Response:
    """The Deep Zoom descriptor (XML). Tiles are at ``mosaic_files/<level>/<col>_<row>.<format>``."""
    return _descriptor(services, mosaic, services.zoom_records.pyramid(mosaic.id))


@router.get("/dzi/mosaic_files/{level}/{tile}", responses=_ERRORS, response_class=FileResponse)
def get_dzi_tile(mosaic: MosaicDep, level: Level, tile: TileName, services: ServicesDep) -> Response:
    """One tile of the pyramid."""
    return _tile(services, mosaic, services.zoom_records.pyramid(mosaic.id), level, tile)


def _ready_pyramid(mosaic: MosaicRecord, pyramid: PyramidRecord | None) -> PyramidRecord:
    if mosaic.state != "ready":
        raise ApiError(409, f"the mosaic is {mosaic.state}, not ready", field="mosaic_id")
    if pyramid is None or pyramid.state in ("queued", "building"):
        raise ApiError(409, "the zoom pyramid is still being built; try again shortly", field="mosaic_id")
    if pyramid.state != "ready":
        raise ApiError(409, f"the zoom pyramid failed: {pyramid.error}", field="mosaic_id")
    return pyramid


def _descriptor(services: Services, mosaic: MosaicRecord, pyramid: PyramidRecord | None) -> Response:
    _ready_pyramid(mosaic, pyramid)
    path = services.zoom.pyramid_dir(mosaic) / f"{PYRAMID_NAME}.dzi"
    if not services.storage.fetch(path):
        raise ApiError(404, "the zoom pyramid's files are missing", field="mosaic_id")
    return FileResponse(path, media_type="application/xml", headers=IMMUTABLE)


def _tile(
    services: Services, mosaic: MosaicRecord, pyramid: PyramidRecord | None, level: int, tile: str
) -> Response:
    ready = _ready_pyramid(mosaic, pyramid)
    if not _in_layout(ready.layout, level, tile):
        raise ApiError(404, f"no tile {level}/{tile} in this pyramid", field="tile")
    media_type = TILE_MEDIA_TYPES[tile.rsplit(".", 1)[1]]
    if level > int(ready.layout.get("render_level", level)):  # below the render: drawn from the photos
        col, row = (int(part) for part in tile.split(".")[0].split("_"))
        try:
            data = services.zoom.deep_tile(mosaic, ready.layout, level, col, row)
        except FileNotFoundError:
            raise ApiError(404, "the mosaic's files are missing", field="mosaic_id") from None
        return Response(data, media_type=media_type, headers=IMMUTABLE)
    path = services.zoom.pyramid_dir(mosaic) / f"{PYRAMID_NAME}_files" / str(level) / tile
    # Only a tile the layout has is looked for (in the object store: that one tile, once).
    if not services.storage.fetch(path):
        raise ApiError(404, f"no tile {level}/{tile} in this pyramid", field="tile")
    return FileResponse(path, media_type=media_type, headers=IMMUTABLE)


def _in_layout(layout: dict[str, Any], level: int, tile: str) -> bool:
    name, _, fmt = tile.partition(".")
    if fmt != layout.get("fmt"):
        return False
    try:
        geometry = DziLayout(**{k: layout[k] for k in ("width", "height", "tile_size", "overlap", "fmt")})
    except (KeyError, TypeError):  # a layout recorded without its geometry: let the file decide
        return True
    if level >= geometry.levels:
        return False
    col, row = (int(part) for part in name.split("_"))
    cols, rows = geometry.tile_counts(level)
    return col < cols and row < rows


# animations ---------------------------------------------------------------------------------------


@router.post(
    "/animations", status_code=status.HTTP_202_ACCEPTED, response_model=AnimationOut,
    responses={**_ERRORS, 422: {"description": "a parameter is out of range"}},
)  # fmt: skip
def create_animation(mosaic: MosaicDep, options: AnimationOptions, services: ServicesDep) -> AnimationOut:
    """Make a zoom (into the cell ``col``, ``row``), assemble or disperse animation of a ready
    mosaic, in the background: poll ``status_url`` until ``state`` is ``ready``, then get ``url``."""
    if mosaic.state != "ready":
        raise ApiError(409, f"the mosaic is {mosaic.state}, not ready", field="mosaic_id")
    values = options.model_dump()
    spec = AnimationSpec(fmt=values.pop("format"), **values)
    check_animation_budget(services.settings, spec)
    check_session_jobs(services, mosaic.session_id)
    return animation_out(services.zoom.create_animation(mosaic, spec))


@router.get("/animations", response_model=list[AnimationOut], responses=_ERRORS)
def list_animations(mosaic: MosaicDep, services: ServicesDep) -> list[AnimationOut]:
    """Every animation of the mosaic, oldest first."""
    return [animation_out(a) for a in services.zoom_records.animations_of(mosaic.id)]


@router.get("/animations/{animation_id}", response_model=AnimationOut, responses=_ERRORS)
def get_animation(animation: AnimationDep) -> AnimationOut:
    """State (``queued``, ``rendering``, ``ready``, ``failed``) and progress in frames."""
    return animation_out(animation)


@router.get("/animations/{animation_id}/file", response_class=FileResponse, responses=_ERRORS)
def get_animation_file(animation: AnimationDep, services: ServicesDep, download: bool = False) -> Response:
    """The finished animation. ``?download=1`` asks the browser to save it. With
    ``TESSERA_PRESIGNED_DOWNLOADS``, a redirect to the file in the object store."""
    if animation.state != "ready":
        raise ApiError(409, f"the animation is {animation.state}, not ready", field="animation_id")
    path = services.zoom.animation_path(animation)
    media_type = VIDEO_MEDIA_TYPES[animation.spec["fmt"]]
    return stored_file_response(
        services, path, filename=animation_name(animation), media_type=media_type,
        download=download, what="animation", field="animation_id",
    )  # fmt: skip


def animation_out(record: AnimationRecord) -> AnimationOut:
    base = f"/api/sessions/{record.session_id}/mosaics/{record.mosaic_id}/animations/{record.id}"
    spec = AnimationSpec(**record.spec)
    ready = record.state == "ready"
    return AnimationOut(
        id=record.id,
        mosaic_id=record.mosaic_id,
        state=record.state,
        progress=Progress(done=record.done, total=record.total),
        kind=spec.kind,
        format=spec.fmt,
        seconds=spec.seconds,
        width=spec.width,
        height=spec.height,
        fps=spec.fps,
        frames=spec.frames,
        col=spec.col,
        row=spec.row,
        reverse=spec.reverse,
        bytes=record.bytes,
        seconds_taken=record.seconds_taken,
        error=record.error,
        created=record.created,
        updated=record.updated,
        status_url=base,
        url=f"{base}/file" if ready else None,
        download_name=animation_name(record) if ready else None,
    )


def animation_name(record: AnimationRecord) -> str:
    spec = record.spec
    return f"tessera-{spec['kind']}-{spec['width']}x{spec['height']}.{spec['fmt']}"


# share links --------------------------------------------------------------------------------------


def _shared_mosaic(services: Services, pyramid: PyramidRecord) -> MosaicRecord:
    mosaic = services.records.mosaic(pyramid.mosaic_id)
    if mosaic is None:
        raise ApiError(404, "no mosaic is shared under this link", field="token")
    return mosaic


@share_router.get("", response_class=HTMLResponse)
def share_viewer(request: Request, shared: SharedDep, services: ServicesDep) -> HTMLResponse:
    """The pan-and-zoom viewer alone, read-only."""
    mosaic = _shared_mosaic(services, shared)
    base = f"/v/{shared.share_token}"
    return TEMPLATES.TemplateResponse(
        request,
        "viewer.html",
        {
            "title": mosaic.cover_name,
            "dzi_url": f"{base}/mosaic.dzi",
            "image_url": f"{base}/image",
            "cols": mosaic.result.get("cols", 0),
            "rows": mosaic.result.get("rows", 0),
        },
    )


@share_router.get("/mosaic.dzi", response_class=Response)
def share_dzi(shared: SharedDep, services: ServicesDep) -> Response:
    return _descriptor(services, _shared_mosaic(services, shared), shared)


@share_router.get("/mosaic_files/{level}/{tile}", response_class=FileResponse)
def share_tile(shared: SharedDep, level: Level, tile: TileName, services: ServicesDep) -> Response:
    return _tile(services, _shared_mosaic(services, shared), shared, level, tile)


@share_router.get("/image", response_class=FileResponse)
def share_image(shared: SharedDep, services: ServicesDep) -> FileResponse:
    """The mosaic file, always served from here: a presigned URL would reveal the object's key,
    and with it the session id that a share link keeps secret."""
    mosaic = _shared_mosaic(services, shared)
    path = services.storage.mosaic_dir(mosaic.session_id, mosaic.id) / str(mosaic.result["file"])
    if mosaic.state != "ready" or not services.storage.fetch(path):
        raise ApiError(404, "the mosaic's file is missing", field="token")
    return FileResponse(
        path, media_type=MEDIA_TYPES[mosaic.format], filename=download_name(mosaic), headers=IMMUTABLE
    )
