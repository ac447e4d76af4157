"""The one place where errors become HTTP responses.

Every error body is JSON: ``{"detail": "<what and why>", "file": <file name or null>,
"field": <parameter name or null>}``.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.engine import (
    BadParameter,
    EngineError,
    ImageRejected,
    ImageTooLarge,
    NoUsableTiles,
    OutputTooLarge,
)

log = logging.getLogger(__name__)


class ApiError(Exception):
    """A refusal the client can act on."""

    def __init__(
        self, status: int, detail: str, *, file: str | None = None, field: str | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.file = file
        self.field = field


class PartTooLarge(StarletteHTTPException):
    """A file part passed the file limit while it streamed in. An ``HTTPException``, so FastAPI
    lets it out of its form parsing unchanged; rendered like :class:`ApiError`."""

    def __init__(self, detail: str, *, file: str, field: str) -> None:
        super().__init__(413, detail)
        self.file = file
        self.field = field


def error_body(detail: str, *, file: str | None = None, field: str | None = None) -> dict[str, str | None]:
    return {"detail": detail, "file": file, "field": field}


def _json(status: int, detail: str, *, file: str | None = None, field: str | None = None) -> JSONResponse:
    return JSONResponse(error_body(detail, file=file, field=field), status_code=status)


#: Domain errors to HTTP status codes, most specific first.
ENGINE_STATUS: tuple[tuple[type[EngineError], int], ...] = (
    (ImageTooLarge, 413),
    (ImageRejected, 415),
    (OutputTooLarge, 413),
    (BadParameter, 422),
    (NoUsableTiles, 422),
    (EngineError, 422),
)
_STARLETTE_DEFAULTS = ("Not Found", "Method Not Allowed", "Content Too Large")
_STATUS_TEXT = {
    404: "not found",
    405: "method not allowed",
    413: "request body larger than the server accepts",
}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _json(exc.status, exc.detail, file=exc.file, field=exc.field)

    @app.exception_handler(EngineError)
    async def engine_error(_: Request, exc: EngineError) -> JSONResponse:
        status = next(code for kind, code in ENGINE_STATUS if isinstance(exc, kind))
        if isinstance(exc, ImageRejected):
            return _json(status, exc.reason, file=exc.name)
        if isinstance(exc, BadParameter):
            return _json(status, exc.message, field=exc.field)
        return _json(status, str(exc), field="tiles" if isinstance(exc, NoUsableTiles) else None)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        location = [
            str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path", "form")
        ]
        field = location[0] if location else None
        message = str(first.get("msg", "invalid request"))
        detail = f"{field}: {message}" if field else message
        body = error_body(detail, field=field)
        body["errors"] = [  # type: ignore[assignment]
            {"field": ".".join(str(p) for p in e.get("loc", ())[1:]), "message": e.get("msg")} for e in errors
        ]
        return JSONResponse(body, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        status = exc.status_code
        if isinstance(exc, PartTooLarge):
            return _json(status, detail, file=exc.file, field=exc.field)
        if status in _STATUS_TEXT and detail in _STARLETTE_DEFAULTS:
            detail = _STATUS_TEXT[status]
        if status == 400 and detail.startswith("Too many files"):  # Starlette's multipart file cap
            return _json(413, f"{detail} Upload in several requests.", field="tiles")
        return JSONResponse(error_body(detail), status_code=status, headers=exc.headers)
