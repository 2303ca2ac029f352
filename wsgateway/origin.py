"""Which browser origins may open a socket (cross-site WebSocket hijacking defence)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.http.request import validate_host

from .conf import gateway_settings
from .scope import header


def _normalise(origin: str) -> str | None:
    try:
        parts = urlsplit(origin.strip().lower())
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname:
        return None
    default_port = {"http": 80, "https": 443, "ws": 80, "wss": 443}.get(parts.scheme)
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default_port else "")


def origin_allowed(scope: dict[str, Any]) -> bool:
    """True when the handshake's Origin may connect.

    A handshake without an Origin header is not from a browser (browsers always
    send one), so it cannot ride on a victim's cookies and is let through to
    authentication like any other API client.
    """
    origin = header(scope, b"origin")
    if origin is None:
        return True
    normalised = _normalise(origin)
    if normalised is None:  # "null" (sandboxed frames, file://) and garbage
        return False
    allowed = gateway_settings.ALLOWED_ORIGINS
    if allowed is not None:
        return "*" in allowed or normalised in {_normalise(item) for item in allowed}
    hosts = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not hosts:
        hosts = [".localhost", "127.0.0.1", "[::1]"]  # what Django's own host check allows
    hostname = urlsplit(normalised).hostname or ""
    return validate_host(f"[{hostname}]" if ":" in hostname else hostname, hosts)
