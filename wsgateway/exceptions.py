"""Exceptions a service or an authenticator raises to answer a client, the one a sender of data
the server could not send gets, and those of a request to a client (:func:`wsgateway.ask`)."""

from __future__ import annotations

from django.utils.functional import Promise

from .codes import ErrorCode


class GatewayError(Exception):
    """Answered with an error frame; the socket stays open.

    ``message`` is for people, in the socket's language: ``gettext(...)`` in a service's hook (which
    runs in that language), or ``gettext_lazy(...)`` for a constant (see wsgateway.i18n).
    """

    def __init__(self, code: ErrorCode | str, message: str | Promise) -> None:
        super().__init__(message)
        self.code = str(code)
        self.message = message


class InvalidData(GatewayError):
    """A frame's data is not what its action takes: answered ``invalid_data``."""

    def __init__(self, message: str | Promise) -> None:
        super().__init__(ErrorCode.INVALID_DATA, message)


class AuthenticationFailed(GatewayError):
    """Credentials were presented but are not valid: the socket is closed with 4401."""


class FrameTooLarge(ValueError):
    """What was to be sent would make a frame over ``MAX_SEND_SIZE``, which the server cannot send
    (see :data:`wsgateway.bounds.DAPHNE_MAX_SEND`); nothing was stored or sent."""

    def __init__(self, what: str, size: int, limit: int) -> None:
        super().__init__(
            f"{what} would be a frame of {size} bytes, over WSGATEWAY['MAX_SEND_SIZE'] ({limit} bytes)."
        )
        self.size = size
        self.limit = limit


class RequestFailed(Exception):
    """A request to a client (:func:`wsgateway.ask`) got no answer: ``code`` says why, for code;
    ``message`` for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class RequestTimeout(RequestFailed):
    """No socket answered within the timeout (``code`` ``"timeout"``)."""


class RequestDropped(RequestFailed):
    """No socket could take the request, and no other will: the user has none open (``"no_socket"``),
    or each one that had it closed (``"closed"``), held too many (``"busy"``), or could not be sent
    a frame that big (``"too_large"``); ``code`` is the first socket's reason."""


class RequestRejected(RequestFailed):
    """The client answered with an error: ``code`` and ``message`` are the client's own."""
