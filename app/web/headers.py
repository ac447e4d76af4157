"""Hardening headers on every response (issue 17): no MIME sniffing, a Content-Security-Policy
that the page fits (scripts and styles only from our own /static files, no inline script), no
framing by other sites unless ``TESSERA_FRAME_ANCESTORS`` allows them, and no full-URL referrers."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: The one inline style the page runs with: OpenSeadragon (static/vendor/openseadragon) adds a
#: <style> with a focus rule for touch screens; it is allowed by its hash, not by 'unsafe-inline'
#: (tests/web/test_hardening.py recomputes it from the vendored file).
OPENSEADRAGON_STYLE_HASH = "'sha256-9xTiqzfwFaL2SGb1rmr8gysEwVVjIvqWAgmZgqFqpEE='"


def content_security_policy(*, frame_ancestors: str, extra_origins: list[str]) -> str:
    """The policy: everything from our origin; images and fetches also from ``extra_origins``
    (the object store that presigned downloads redirect to); framing as ``frame_ancestors``."""
    extra = "".join(f" {origin}" for origin in extra_origins)
    return "; ".join([
        "default-src 'self'",
        "script-src 'self'",
        f"style-src 'self' {OPENSEADRAGON_STYLE_HASH}",
        f"img-src 'self' data: blob:{extra}",
        f"media-src 'self' blob:{extra}",
        f"connect-src 'self'{extra}",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        f"frame-ancestors {frame_ancestors}",
    ])  # fmt: skip


class SecurityHeaders:
    """Adds the hardening headers to every HTTP response the app sends (errors and 413s included)."""

    def __init__(self, app: ASGIApp, *, csp: str) -> None:
        self.app = app
        self.headers = [
            ("X-Content-Type-Options", "nosniff"),
            ("Content-Security-Policy", csp),
            ("Referrer-Policy", "same-origin"),
            ("Cross-Origin-Opener-Policy", "same-origin"),
        ]
        if "frame-ancestors 'none'" in csp:
            self.headers.append(("X-Frame-Options", "DENY"))  # for browsers without frame-ancestors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers:
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)
