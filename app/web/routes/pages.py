"""The HTML page: upload tiles and a cover, watch progress, see and download the mosaic."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from app import __version__
from app.engine import MosaicParams
from app.engine.features import COLOR_SPACES
from app.web.deps import ServicesDep

TEMPLATES = Jinja2Templates(directory=Path(__file__).resolve().parents[3] / "templates")
router = APIRouter(include_in_schema=False)
_ID_PATTERN = r"^[A-Za-z0-9_-]{16,64}$"


def _page(request: Request, services: ServicesDep, session_id: str | None) -> HTMLResponse:
    return TEMPLATES.TemplateResponse(
        request,
        "index.html",
        {
            "session_id": session_id or "",
            "defaults": MosaicParams(),
            "color_spaces": COLOR_SPACES,
            "max_cols": services.settings.max_cols,
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
    """The same page, reopened on a session (its id in the URL survives a reload)."""
    return _page(request, services, session_id)
