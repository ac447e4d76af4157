"""Request body size limit, enforced while the body streams in, answered in our JSON shape."""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.web.errors import error_body


class RequestTooLarge(HTTPException):
    """Raised from ``receive`` once a body passes the limit; the error handlers render it."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than the limit of {_mb(limit)}")


class BodySizeLimit:
    """Refuses bodies over ``max_bytes``: at once when Content-Length says so, otherwise as soon
    as the bytes received pass it (so a huge upload never lands on disk whole)."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await _send_json_413(send, self.max_bytes)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise RequestTooLarge(self.max_bytes)
            return message

        await self.app(scope, limited_receive, send)


async def _send_json_413(send: Send, limit: int) -> None:
    body = json.dumps(error_body(f"request body larger than the limit of {_mb(limit)}")).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close")]  # fmt: skip
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _mb(limit: int) -> str:
    return f"{limit / 1048576:.1f} MB" if limit < 10 * 1048576 else f"{limit // 1048576} MB"
