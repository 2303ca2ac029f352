"""Reading a WebSocket handshake's ASGI scope: its headers and cookies.

Both the origin check and the authenticators read the handshake; neither owns it.
"""

from __future__ import annotations

from typing import Any

from django.http.cookie import parse_cookie

Scope = dict[str, Any]


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of header ``name`` (lower-case bytes), or None."""
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def cookies(scope: Scope) -> dict[str, str]:
    """The handshake's cookies, as Channels' CookieMiddleware left them or from the header."""
    if "cookies" in scope:
        return dict(scope["cookies"])
    raw = header(scope, b"cookie")
    return parse_cookie(raw) if raw else {}
