"""The one place where errors become HTTP responses.

Every error body is JSON: ``{"detail": "<what and why>", "file": <file name or null>,
"field": <parameter name or null>}``.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from app import __version__
from app.engine import (
    BadParameter,
    EngineError,
    ImageRejected,
    ImageTooLarge,
    NoUsableTiles,
    OutputTooLarge,
)
from app.web.assets import TEMPLATES_DIR

log = logging.getLogger(__name__)
_TEMPLATES = Jinja2Templates(directory=TEMPLATES_DIR)


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


class FormRefused(StarletteHTTPException):
    """A multipart form refused while it streams in (a file part over the file limit, too many
    files). An ``HTTPException``, so FastAPI lets it out of its form parsing unchanged; rendered
    like :class:`ApiError`."""

    def __init__(
        self, status: int, detail: str, *, file: str | None = None, field: str | None = None
    ) -> None:
        super().__init__(status, detail)
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


def wants_page(request: Request) -> bool:
    """A person's browser asking for a page (not the API, not a script or an image request)."""
    path = request.url.path
    return not path.startswith("/api/") and "text/html" in request.headers.get("accept", "")


#: What a person reads when a page's address leads nowhere: (title, explanation) by path prefix.
_MISSING_PAGES = (
    ("/v/", "This share link no longer works",
     "The mosaic it showed was deleted, or its session expired. Ask whoever sent it for a new link."),
    ("/s/", "This session no longer exists",
     "Sessions and their mosaics are removed after a while unused, or when deleted. Upload your "
     "tile photos again to make a new mosaic."),
)  # fmt: skip


def missing_page(request: Request, status: int) -> HTMLResponse:
    """A friendly HTML page for an address that names nothing (an unknown session, a dead link)."""
    path = request.url.path
    title, explanation = next(
        ((t, e) for prefix, t, e in _MISSING_PAGES if path.startswith(prefix)),
        ("This page does not exist", "The address may be mistyped, or what it named was removed."),
    )
    context = {"title": title, "explanation": explanation, "version": __version__}
    return _TEMPLATES.TemplateResponse(request, "error.html", context, status_code=status)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse | HTMLResponse:
        if exc.status == 404 and wants_page(request):
            return missing_page(request, 404)
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
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse | HTMLResponse:
        if wants_page(request) and request.method == "GET":  # e.g. /s/<not an id>: names nothing
            return missing_page(request, 404)
        errors = exc.errors()
        first = errors[0] if errors else {}
        if first.get("type") == "json_invalid":  # its loc is a character position, not a field
            where = first.get("loc", ("body", "?"))[-1]
            return _json(422, f"the request body is not valid JSON (stopped at character {where})")
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
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse | HTMLResponse:
        if exc.status_code == 404 and wants_page(request):
            return missing_page(request, 404)
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        status = exc.status_code
        if isinstance(exc, FormRefused):
            return _json(status, detail, file=exc.file, field=exc.field)
        if status in _STATUS_TEXT and detail in _STARLETTE_DEFAULTS:
            detail = _STATUS_TEXT[status]
        return JSONResponse(error_body(detail), status_code=status, headers=exc.headers)
