"""Which browser origins may open a socket (cross-site WebSocket hijacking defence)."""

from __future__ import annotations

from typing import Any
from urllib.parse import SplitResult, urlsplit

from django.conf import settings
from django.http.request import validate_host

from .conf import gateway_settings
from .scope import header

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def _normalise(origin: str) -> str | None:
    try:
        parts = urlsplit(origin.strip().lower())
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname:
        return None
    default_port = _DEFAULT_PORTS.get(parts.scheme)
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
    page = urlsplit(normalised)
    return _same_host_and_port(page, _socket_host(scope)) and _on_allowed_hosts(page.hostname or "")


def _socket_host(scope: dict[str, Any]) -> str | None:
    """The host and port the browser opened the socket to, read as Django's ``request.get_host()``
    reads them: ``X-Forwarded-Host`` when ``USE_X_FORWARDED_HOST`` is on and it is there, else ``Host``."""
    forwarded = header(scope, b"x-forwarded-host") if settings.USE_X_FORWARDED_HOST else None
    return forwarded if forwarded is not None else header(scope, b"host")


def _same_host_and_port(page: SplitResult, host: str | None) -> bool:
    """Whether the page is on the host and port the socket is, as the handshake's Host header names them.

    Tornado's ``check_origin`` rule. The scheme is not compared: the Host header carries none,
    and behind a proxy that ends TLS the socket's own scheme (``ws``) says nothing of the page's
    (``https``). A missing port is the default one of the page's scheme on both sides, as a
    browser leaves it out of both headers: ``https://example.com`` matches ``Host: example.com``.
    """
    if host is None:  # no browser leaves it out
        return False
    try:
        socket = urlsplit("//" + host.strip().lower())
        socket_port = socket.port
    except ValueError:
        return False
    if not socket.hostname or socket.username is not None or socket.path or socket.query or socket.fragment:
        return False
    default_port = _DEFAULT_PORTS.get(page.scheme)
    return page.hostname == socket.hostname and (page.port or default_port) == (socket_port or default_port)


def _on_allowed_hosts(hostname: str) -> bool:
    """Django's host check (``.example.com`` for subdomains, ``*`` for any), as for HTTP requests."""
    hosts = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not hosts:
        hosts = [".localhost", "127.0.0.1", "[::1]"]  # what Django's own host check allows
    return validate_host(f"[{hostname}]" if ":" in hostname else hostname, hosts)
