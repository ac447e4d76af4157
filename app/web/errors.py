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

from app.engine import BadParameter, ImageRejected, ImageTooLarge, NoUsableTiles, OutputTooLarge

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


def error_body(detail: str, *, file: str | None = None, field: str | None = None) -> dict[str, str | None]:
    return {"detail": detail, "file": file, "field": field}


def _json(status: int, detail: str, *, file: str | None = None, field: str | None = None) -> JSONResponse:
    return JSONResponse(error_body(detail, file=file, field=field), status_code=status)


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

    @app.exception_handler(ImageTooLarge)
    async def image_too_large(_: Request, exc: ImageTooLarge) -> JSONResponse:
        return _json(413, exc.reason, file=exc.name)

    @app.exception_handler(ImageRejected)
    async def image_rejected(_: Request, exc: ImageRejected) -> JSONResponse:
        return _json(415, exc.reason, file=exc.name)

    @app.exception_handler(OutputTooLarge)
    async def output_too_large(_: Request, exc: OutputTooLarge) -> JSONResponse:
        return _json(413, exc.message, field=exc.field)

    @app.exception_handler(BadParameter)
    async def bad_parameter(_: Request, exc: BadParameter) -> JSONResponse:
        return _json(422, exc.message, field=exc.field)

    @app.exception_handler(NoUsableTiles)
    async def no_tiles(_: Request, exc: NoUsableTiles) -> JSONResponse:
        return _json(422, str(exc), field="tiles")

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
        if exc.status_code in _STATUS_TEXT and detail in (
            "Not Found",
            "Method Not Allowed",
            "Content Too Large",
        ):
            detail = _STATUS_TEXT[exc.status_code]
        return JSONResponse(error_body(detail), status_code=exc.status_code, headers=exc.headers)
