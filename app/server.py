"""``tessera serve``: run the web app under uvicorn, with logging configured once, by uvicorn."""

from __future__ import annotations

import copy
from typing import Any

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from app.settings import get_settings


def log_config() -> dict[str, Any]:
    """uvicorn's own logging configuration, plus the app's loggers: ``app.*`` at INFO, everything
    else at WARNING, on stderr in uvicorn's format. uvicorn applies it once, at start; nothing
    else configures logging in the server process."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["app"] = {
        "()": "uvicorn.logging.DefaultFormatter",
        "fmt": "%(levelprefix)s %(name)s: %(message)s",
        "use_colors": None,
    }
    config["handlers"]["app"] = {
        "formatter": "app",
        "class": "logging.StreamHandler",
        "stream": "ext://sys.stderr",
    }
    config["loggers"]["app"] = {"level": "INFO"}  # propagates to the root's handler
    config["root"] = {"handlers": ["app"], "level": "WARNING"}
    return config


def serve(*, host: str | None = None, port: int | None = None) -> int:
    settings = get_settings()
    uvicorn.run(
        "app.main:app",
        host=host or settings.host,
        port=port or settings.port,
        log_config=log_config(),
        log_level="info",
        timeout_graceful_shutdown=5,
        # Bounds per connection (issue 17). h11, not httptools: only h11 caps the size of a request
        # line and headers that are still arriving. Half-sent requests need the proxy's timeouts
        # (deploy/nginx.conf): uvicorn has no timeout for a request that stops mid-way.
        http="h11",
        h11_max_incomplete_event_size=settings.max_header_bytes,
        limit_concurrency=settings.max_connections,
        timeout_keep_alive=settings.keep_alive_seconds,
    )
    return 0
