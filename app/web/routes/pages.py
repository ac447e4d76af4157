"""The HTML page: upload tiles and a cover, watch progress, see and download the mosaic."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from app import __version__
from app.engine import OPTIONS
from app.settings import Settings
from app.web.assets import TEMPLATES_DIR
from app.web.deps import ServicesDep
from app.web.errors import ApiError

TEMPLATES = Jinja2Templates(directory=TEMPLATES_DIR)
router = APIRouter(include_in_schema=False)
_ID_PATTERN = r"^[A-Za-z0-9_-]{16,64}$"


def option_inputs(settings: Settings) -> dict[str, dict[str, str]]:
    """The ``min``, ``max`` and ``value`` of each option's input on the page, from the engine's
    table; ``cols`` stops at this server's cap (``TESSERA_MAX_COLS``), as the API does. An empty
    string is an attribute the input goes without."""
    caps = {"cols": settings.cols_limit}
    return {
        name: {
            "min": option.text(option.minimum),
            "max": option.text(caps.get(name, option.maximum)),
            "value": option.text(option.default),
        }
        for name, option in OPTIONS.items()
    }


def _page(request: Request, services: ServicesDep, session_id: str | None) -> HTMLResponse:
    return TEMPLATES.TemplateResponse(
        request,
        "index.html",
        {
            "session_id": session_id or "",
            "options": OPTIONS,
            "inputs": option_inputs(services.settings),
            "version": __version__,
        },
    )


@router.get("/", response_class=HTMLResponse)
def index(request: Request, services: ServicesDep) -> HTMLResponse:
    return _page(request, services, None)


@router.get("/s/{session_id}", response_class=HTMLResponse)
def session_page(
    request: Request,
    services: ServicesDep,
    session_id: Annotated[str, PathParam(pattern=r"^[A-Za-z0-9_-]{16,64}$")],
) -> HTMLResponse:
    """The same page, reopened on a session (its id in the URL survives a reload); an unknown or
    expired session gets a page that says so (404)."""
    if services.records.session(session_id) is None:
        raise ApiError(404, f"no session {session_id}", field="session_id")
    return _page(request, services, session_id)


@router.get("/docs", response_class=HTMLResponse)
def docs(request: Request) -> HTMLResponse:
    """The API's Swagger UI, from the pinned copy in static/swagger-ui/ (works offline)."""
    return TEMPLATES.TemplateResponse(request, "docs.html", {"openapi_url": request.app.openapi_url})
