"""Builds the web application: settings -> services -> routes. ``uvicorn app.main:app`` serves it."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from app import __version__
from app.jobs.services import Services
from app.jobs.sweeper import sweep
from app.settings import Settings, get_settings
from app.web.assets import STATIC_DIR
from app.web.errors import install_error_handlers
from app.web.headers import SecurityHeaders, content_security_policy
from app.web.limits import BodySizeLimit
from app.web.routes import api, health, pages, zoom

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    Services.prepare(settings)
    services = Services.build(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(services.jobs.resume_interrupted)  # reads records: off the loop
        await run_in_threadpool(services.zoom.resume_interrupted)
        sweeper = asyncio.create_task(_sweep_periodically(services))
        log.info("serving with data in %s", settings.data_dir)
        yield
        sweeper.cancel()
        services.jobs.shutdown(wait=False)

    app = FastAPI(
        title="Tessera",
        version=__version__,
        summary="Photo mosaics from your own photos.",
        lifespan=lifespan,
        docs_url=None,  # /docs is ours (pages.docs): Swagger UI from static/, no CDN, no inline script
        redoc_url=None,
        form_limits={
            "max_files": settings.max_files_per_request,
            "max_fields": 100,
            "max_part_size": 64 * 1024,
        },
    )
    app.state.services = services
    app.state.max_file_bytes = settings.max_file_bytes  # read on the event loop by app.web.forms
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(
        SecurityHeaders,
        csp=content_security_policy(
            frame_ancestors=settings.frame_ancestors,
            extra_origins=settings.download_origins,
        ),
    )  # fmt: skip  (added last: it wraps everything, the 413s too)
    install_error_handlers(app)
    app.include_router(api.router)
    app.include_router(zoom.router)
    app.include_router(zoom.share_router)
    app.include_router(health.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


async def _sweep_periodically(services: Services) -> None:
    while True:
        try:
            await run_in_threadpool(sweep, services)
        except Exception:  # a failed sweep must not stop the next one
            log.exception("sweeping expired sessions failed")
        await asyncio.sleep(services.settings.sweep_interval_seconds)


@functools.cache
def _default_app() -> FastAPI:
    return create_app()


def __getattr__(name: str) -> FastAPI:
    """``app.main:app`` is built on first access, so importing this module has no side effects."""
    if name == "app":
        return _default_app()
    raise AttributeError(name)
