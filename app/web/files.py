"""Serving a finished, never-changing file (a mosaic, an animation) to its owner."""

from __future__ import annotations

from pathlib import Path

from fastapi import status
from fastapi.responses import FileResponse, RedirectResponse

from app.jobs.services import Services
from app.web.errors import ApiError

#: Finished files never change: browsers may keep them.
IMMUTABLE = {"Cache-Control": "private, max-age=31536000, immutable"}


def stored_file_response(
    services: Services,
    path: Path,
    *,
    filename: str,
    media_type: str,
    download: bool,
    what: str,
    field: str,
) -> FileResponse | RedirectResponse:
    """The file at ``path``: a redirect to a presigned object-store URL when so configured,
    else the file itself (fetched from the object store first, if there is one)."""
    if services.settings.presigned_downloads:
        url = services.storage.download_url(
            path, seconds=services.settings.presigned_seconds, filename=filename,
            media_type=media_type, inline=not download,
        )  # fmt: skip
        return RedirectResponse(url, status_code=status.HTTP_307_TEMPORARY_REDIRECT)
    if not services.storage.fetch(path):
        raise ApiError(404, f"the {what}'s file is missing", field=field)
    return FileResponse(
        path,
        media_type=media_type,
        filename=filename,
        content_disposition_type="attachment" if download else "inline",
        headers=IMMUTABLE,
    )
