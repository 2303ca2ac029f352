"""Every close code and error code wsgateway puts on the wire, named once."""

from __future__ import annotations

from enum import IntEnum, StrEnum


class CloseCode(IntEnum):
    """WebSocket close codes sent by the server.

    The 4xxx codes are in the range RFC 6455 leaves to applications; they mirror
    the HTTP status a client would expect, so 4401 reads as "log in first".
    """

    #: A client frame over ``MAX_MESSAGE_SIZE``.
    MESSAGE_TOO_BIG = 1009
    #: Not authenticated, bad token, or the login the socket was opened with ended (logged out,
    #: revoked, expired): "log in first".
    UNAUTHORIZED = 4401
    #: What is sent instead of 1009 where the server lets an application send only
    #: 1000 and 3000-4999 (daphne, through autobahn). daphne's own
    #: ``--websocket-max-message-size`` is no help: autobahn then drops the TCP
    #: connection without any close code.
    CONTENT_TOO_LARGE = 4413
    #: The client left more than ``OUTBOUND_WINDOW`` bytes unacknowledged: it does not read what it
    #: is sent (see "Flow control" in docs/protocol.md). A client reconnects, and catches up.
    NOT_READING = 4408
    #: ``RATE_LIMIT_CLOSE_AFTER`` frames in a row were refused ``rate_limited``: "too many
    #: requests". A client may reconnect, after a pause.
    TOO_MANY_REQUESTS = 4429
    #: The user has ``MAX_CONNECTIONS_PER_USER`` sockets open already, on all processes: "conflict"
    #: with the user's other sockets. A client may reconnect, after a pause (one may have closed by then).
    TOO_MANY_CONNECTIONS = 4409
    #: The path is retired (wsgateway.consumers.RefusingConsumer): "gone". A client does not reconnect.
    GONE = 4410
    #: The site is in maintenance (wsgateway.maintenance): "service unavailable". A client reconnects
    #: after the ``retry_after`` seconds the error frame before the close gives, not sooner.
    SERVICE_UNAVAILABLE = 4503
    #: The server closed the socket on purpose (``close_sockets()``: a deploy, a changed setting, a
    #: user's permissions), and the client should reconnect, soon. No HTTP status says "reconnect",
    #: so not a 4xxx that mirrors one; and not 4000, which wsgateway.js sends itself when it gives up
    #: on a socket that stopped answering pings (``client_disconnected`` reports that code): 4001.
    #: Clients that know no 4001 (any that reconnect on all but 4401) reconnect after it too.
    RECONNECT = 4001


#: What to send instead of a code the server refuses from an application.
PRIVATE_CLOSE_CODES = {CloseCode.MESSAGE_TOO_BIG: CloseCode.CONTENT_TOO_LARGE}


class ErrorCode(StrEnum):
    """Machine-readable codes of error frames (``{"error": {"code": ...}}``)."""

    # Authentication: sent on channel "gateway" just before a 4401 close.
    UNAUTHORIZED = "unauthorized"
    TOKEN_INVALID = "token_invalid"
    TOKEN_EXPIRED = "token_expired"
    LOGGED_OUT = "logged_out"
    # An open socket's login ended (see wsgateway.revocation): then 4401.
    #: The password changed, the user was made inactive or deleted, or a site called close_user_sockets.
    REVOKED = "revoked"
    #: The Django session was deleted or expired.
    SESSION_ENDED = "session_ended"

    # Framing: the frame could not be read as an envelope.
    INVALID_JSON = "invalid_json"
    BINARY_NOT_SUPPORTED = "binary_not_supported"
    INVALID_FRAME = "invalid_frame"
    MISSING_CHANNEL = "missing_channel"
    UNKNOWN_CHANNEL = "unknown_channel"
    INVALID_ID = "invalid_id"

    # Services: the envelope was fine, the request was not.
    UNKNOWN_ACTION = "unknown_action"
    INVALID_DATA = "invalid_data"
    NOT_FOUND = "not_found"
    LIMIT_EXCEEDED = "limit_exceeded"
    #: The answer would be a frame over ``MAX_SEND_SIZE``: it was not sent, and the socket stays open.
    TOO_LARGE = "too_large"

    # Limits: the frame was not handled; its message says when to try again.
    RATE_LIMITED = "rate_limited"
    #: Sent on channel "gateway" just before a 4409 close: the user has too many sockets open.
    TOO_MANY_CONNECTIONS = "too_many_connections"
    #: Sent on channel "gateway" just before a 4503 close, with ``retry_after`` (seconds) next to the
    #: message: the site is in maintenance.
    MAINTENANCE = "maintenance"
    #: Sent on channel "gateway" just before a 4410 close: the path is retired; do not reconnect.
    GONE = "gone"
    #: Sent on channel "gateway" just before the server closes an open socket on purpose
    #: (``close_sockets()``), with 4001 unless the site chose another code. Not "closed": wsgateway.js
    #: rejects a request with that code, on the client's side, when its socket closes.
    CLOSING = "closing"
    INTERNAL_ERROR = "internal_error"

    # The token view (HTTP), in the same body: {"error": {"code", "message"}}.
    #: A session-authenticated POST without its CSRF token (403); an anonymous one is ``unauthorized`` (401).
    CSRF_FAILED = "csrf_failed"
