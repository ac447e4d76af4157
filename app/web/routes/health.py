"""Liveness (``/healthz``: never waits on a job or a backend) and readiness (``/readyz``: the
records, the job queue and the storage answer). Both are plain ``def``: FastAPI runs them in
its thread pool, off the event loop."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app import __version__
from app.web.deps import ServicesDep
from app.web.schemas import Health, Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz(services: ServicesDep) -> Health:
    return Health(status="ok", version=__version__, jobs_idle=services.jobs.idle())


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
def readyz(services: ServicesDep) -> JSONResponse:
    """200 when every backend answers, else 503 naming what failed (a load balancer takes the
    process out of rotation meanwhile)."""
    checks = services.check()
    ready = all(result == "ok" for result in checks.values())
    body = Readiness(status="ready" if ready else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)
