"""Liveness: answers from the event loop, never waits on a job."""

from __future__ import annotations

from fastapi import APIRouter

from app import __version__
from app.web.deps import ServicesDep
from app.web.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz(services: ServicesDep) -> Health:
    return Health(status="ok", version=__version__, jobs_idle=services.jobs.idle())
