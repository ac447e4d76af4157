"""``tessera serve``: run the web app under uvicorn with logging set up once."""

from __future__ import annotations

import logging

import uvicorn

from app.settings import get_settings


def serve(*, host: str | None = None, port: int | None = None) -> int:
    settings = get_settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(
        "app.main:app",
        host=host or settings.host,
        port=port or settings.port,
        log_level="info",
        timeout_graceful_shutdown=5,
    )
    return 0
