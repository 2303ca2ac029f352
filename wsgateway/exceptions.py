"""Exceptions a service or an authenticator raises to answer a client."""

from __future__ import annotations

from .codes import ErrorCode


class GatewayError(Exception):
    """Answered with an error frame; the socket stays open."""

    def __init__(self, code: ErrorCode | str, message: str) -> None:
        super().__init__(message)
        self.code = str(code)
        self.message = message


class AuthenticationFailed(GatewayError):
    """Credentials were presented but are not valid: the socket is closed with 4401."""
