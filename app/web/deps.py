"""Request dependencies: the shared services, and records that must exist (else 404)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from app.jobs.records import MosaicRecord, SessionRecord
from app.jobs.services import Services
from app.web.errors import ApiError

_ID = Path(pattern=r"^[A-Za-z0-9_-]{16,64}$", description="an id returned by the API")


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def valid_session(session_id: Annotated[str, _ID], services: ServicesDep) -> SessionRecord:
    record = services.records.session(session_id)
    if record is None:
        raise ApiError(404, f"no session {session_id}", field="session_id")
    return record


SessionDep = Annotated[SessionRecord, Depends(valid_session)]


def valid_mosaic(session: SessionDep, mosaic_id: Annotated[str, _ID], services: ServicesDep) -> MosaicRecord:
    record = services.records.mosaic(mosaic_id)
    if record is None or record.session_id != session.id:
        raise ApiError(404, f"no mosaic {mosaic_id} in this session", field="mosaic_id")
    return record


MosaicDep = Annotated[MosaicRecord, Depends(valid_mosaic)]
