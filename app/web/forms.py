"""Multipart uploads parsed with per-part bounds (issue 17): a file part over the file limit is
refused while it streams in, and the parts held in memory are bounded in total.

Starlette's parser spools every file part whole (to disk past 1 MB) before a handler can look at
its size, and keeps each small part in memory. :class:`LimitedRoute` gives the API's routes a
request whose form parser stops a part as soon as it passes ``TESSERA_MAX_FILE_BYTES`` (a 413
naming the file), and sends new parts straight to disk once ``MEMORY_BUDGET`` bytes of parts are
held in memory. Plain fields are bounded by the app's ``form_limits`` (count and size).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser

from app.storage import FileTooLarge
from app.web.errors import FormRefused

#: Bytes of upload parts kept in memory at once, over all parts of one request.
MEMORY_BUDGET = 32 * 1024 * 1024
#: A file part is kept in memory up to this size (Starlette's default), while the budget lasts.
SPOOL_BYTES = 1024 * 1024


class LimitedMultiPartParser(MultiPartParser):
    def __init__(self, *args: Any, max_file_bytes: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_file_bytes = max_file_bytes
        self._part_bytes = 0
        self._in_memory = 0

    def on_part_begin(self) -> None:
        super().on_part_begin()
        self._part_bytes = 0

    def on_headers_finished(self) -> None:
        # The spool of the part about to start: in memory while the budget lasts, else on disk.
        # (a SpooledTemporaryFile's max_size of 0 means "never roll over": 1 means "at once")
        self.spool_max_size = SPOOL_BYTES if self._in_memory + SPOOL_BYTES <= MEMORY_BUDGET else 1
        super().on_headers_finished()
        if self._current_part.file is not None:
            self._in_memory += self.spool_max_size

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        self._part_bytes += end - start
        part = self._current_part
        if part.file is not None and self._part_bytes > self.max_file_bytes:
            name = part.file.filename or ""
            raise FormRefused(413, str(FileTooLarge(self.max_file_bytes)), file=name, field=part.field_name)
        super().on_part_data(data, start, end)


class LimitedRequest(Request):
    async def _get_form(
        self,
        *,
        max_files: int | float = 1000,
        max_fields: int | float = 1000,
        max_part_size: int = 1024 * 1024,
    ) -> FormData:
        if self._form is None and self.headers.get("content-type", "").startswith("multipart/form-data"):
            parser = LimitedMultiPartParser(
                self.headers, self.stream(), max_files=max_files, max_fields=max_fields,
                max_part_size=max_part_size, max_file_bytes=self.app.state.max_file_bytes,
            )  # fmt: skip
            try:
                self._form = await parser.parse()
            except MultiPartException as exc:
                if exc.message.startswith("Too many files"):  # Starlette's count of file parts
                    message = (
                        f"Too many files: one request takes at most {int(max_files)}"
                        " (TESSERA_MAX_FILES_PER_REQUEST). Upload in several requests."
                    )
                    raise FormRefused(413, message, field="tiles") from exc
                raise HTTPException(status_code=400, detail=exc.message) from exc  # as Starlette answers it
        return await super()._get_form(
            max_files=max_files, max_fields=max_fields, max_part_size=max_part_size
        )


class LimitedRoute(APIRoute):
    """An API route whose uploads are parsed by :class:`LimitedMultiPartParser`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def limited(request: Request) -> Response:
            return await handler(LimitedRequest(request.scope, request.receive))

        return limited
