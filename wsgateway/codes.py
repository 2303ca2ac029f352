"""Every close code and error code wsgateway puts on the wire, named once, and what a client does
after each close: one table, ``RECONNECT``, which wsgateway.js holds a copy of (``tests/test_codes.py``
fails when the two differ)."""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum, StrEnum
from types import MappingProxyType


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
    #: is sent (see "Flow control" in docs/protocol.md). A client reconnects after a pause
    #: (``Reconnect.PAUSE``), and catches up.
    NOT_READING = 4408
    #: ``RATE_LIMIT_CLOSE_AFTER`` frames in a row were refused ``rate_limited``: "too many
    #: requests"; or a new socket of a user so closed less than ``RATE_LIMIT_COOLDOWN`` seconds ago.
    #: Its error frame gives ``retry_after``, which a client waits (as after any close that follows
    #: one); without it, a pause (``Reconnect.PAUSE``), which a quick hello does not cut short.
    TOO_MANY_REQUESTS = 4429
    #: The user has ``MAX_CONNECTIONS_PER_USER`` sockets open already, on all processes: "conflict"
    #: with the user's other sockets. A client may reconnect, after a pause (one may have closed by then).
    TOO_MANY_CONNECTIONS = 4409
    #: The path is retired (wsgateway.consumers.RefusingConsumer): "gone". A client does not reconnect.
    GONE = 4410
    #: The site is in maintenance (wsgateway.maintenance), or its channel layer failed the connect
    #: (down, or slower than ``LAYER_CONNECT_TIMEOUT``): "service unavailable". A client reconnects
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


class ClientCloseCode(IntEnum):
    """Close codes a client sees that wsgateway's server does not choose: the browser's, a proxy's,
    an ASGI server's, and the one wsgateway.js closes with itself. Named here for ``RECONNECT``."""

    #: A close without a reason to give: an ASGI server's ``websocket.close`` without a code (daphne
    #: after its ``--websocket_timeout``), ``gw.close()``.
    NORMAL_CLOSURE = 1000
    #: The server is shutting down (a deploy), or the page is leaving.
    GOING_AWAY = 1001
    #: Never on the wire: what a browser reports for a connection lost without a close frame, and for
    #: a handshake that failed (a refused origin's HTTP 403, a server that is down).
    ABNORMAL_CLOSURE = 1006
    #: The ASGI server's own answer to an application that raised.
    INTERNAL_ERROR = 1011
    #: A server or proxy restarting.
    SERVICE_RESTART = 1012
    #: A server or proxy overloaded: "try again later".
    TRY_AGAIN_LATER = 1013
    #: Sent by wsgateway.js when it gives up on a socket that stopped answering its pings.
    PING_TIMEOUT = 4000


class Reconnect(StrEnum):
    """What a client does after a close: the values of ``RECONNECT``, written as wsgateway.js writes them.

    The waits are wsgateway.js's (its options ``minDelay``, 500 ms, and ``maxDelay``, 30 s); another
    client may choose its own, but not come back sooner than ``PAUSE`` and ``RETRY_AFTER`` say.
    """

    #: Do not reconnect by itself: nothing changes by trying again until the person does something
    #: (logs in, loads another page). ``gw.connect()`` tries again.
    STOP = "stop"
    #: Reconnect at once, give or take the backoff: full jitter over ``minDelay`` x 2^n (n failed
    #: attempts since the last hello), so within 0.5 s after a connection that said hello. Coming back
    #: online cuts the wait short.
    NOW = "now"
    #: Reconnect after a pause: the server asked this client to slow down, and coming back at once
    #: would be closed again for the same reason. The wait is at least half of the backoff's sixth
    #: step and at most all of it (8 to 16 s with the defaults), then grows with each ``PAUSE`` close
    #: in a row (15 to 30 s, capped by ``maxDelay``). The hello of the next connection does not reset
    #: it: only a connection that stays open as long as the pause before it does, so that a client
    #: closed 4429 again right after its hello waits as long again, or longer. Coming back online does
    #: not cut it short.
    PAUSE = "pause"
    #: Reconnect after the ``retry_after`` seconds of the error frame sent just before the close, and a
    #: random spread (a fifth of it, at least a second); without one, after a pause (``PAUSE``).
    #: Any close that reconnects and follows an error frame with ``retry_after`` waits for it too.
    RETRY_AFTER = "retry_after"


#: The rule after each close code a client knows, the server's and the others; wsgateway.js's
#: ``RECONNECT`` is the same table. The comments say why.
RECONNECT: Mapping[int, Reconnect] = MappingProxyType(
    {
        # The network or the server went away, not this client's doing: the backoff's jitter spreads
        # a thousand tabs over ``minDelay``, and its growth keeps a dead server from being hammered.
        ClientCloseCode.NORMAL_CLOSURE: Reconnect.NOW,
        ClientCloseCode.GOING_AWAY: Reconnect.NOW,
        ClientCloseCode.ABNORMAL_CLOSURE: Reconnect.NOW,
        ClientCloseCode.INTERNAL_ERROR: Reconnect.NOW,
        ClientCloseCode.SERVICE_RESTART: Reconnect.NOW,
        # The server says it is overloaded: coming back at once adds to it.
        ClientCloseCode.TRY_AGAIN_LATER: Reconnect.PAUSE,
        # The client dropped a socket that stopped answering: a new one may well answer.
        ClientCloseCode.PING_TIMEOUT: Reconnect.NOW,
        # One frame was too big. It is not sent again (its request is rejected "closed"), so a new
        # socket is as good as the old one was before it.
        CloseCode.MESSAGE_TOO_BIG: Reconnect.NOW,
        CloseCode.CONTENT_TOO_LARGE: Reconnect.NOW,
        # The server asks for it (close_sockets(): a deploy, a changed permission).
        CloseCode.RECONNECT: Reconnect.NOW,
        # "Log in first": the same credentials get the same answer, and a logged-out tab must not
        # hammer the server. A login (then gw.connect()) is what changes it.
        CloseCode.UNAUTHORIZED: Reconnect.STOP,
        # The path is retired: it will not come back; the page needs another address.
        CloseCode.GONE: Reconnect.STOP,
        # The tab did not read what it was sent (a blocked main thread, a starved machine): coming back
        # at once, it would be sent the same backlog by the catch-up, and be closed again.
        CloseCode.NOT_READING: Reconnect.PAUSE,
        # The client went on sending after rate_limited: a reconnect at once would get the same close
        # (the page's loop that sent them is still running), with a hello in between every time.
        CloseCode.TOO_MANY_REQUESTS: Reconnect.PAUSE,
        # The user's other sockets are all still open: one of them must close first.
        CloseCode.TOO_MANY_CONNECTIONS: Reconnect.PAUSE,
        # Maintenance, or the channel layer down: the server says when to come back (a few seconds
        # for the layer: the refusal costs it little, and connects work again as soon as it answers).
        CloseCode.SERVICE_UNAVAILABLE: Reconnect.RETRY_AFTER,
    }
)

#: The rule for a code ``RECONNECT`` does not name, by range (first, last, rule), as centrifuge decides
#: by range: a newer server's code, or one a site chose for ``close_sockets()`` or a revocation.
#: No range stops: a code this client does not know must not strand a page until it is reloaded.
RECONNECT_RANGES: tuple[tuple[int, int, Reconnect], ...] = (
    # RFC 6455's own codes, and the browser's: the transport's business, not a refusal.
    (1000, 2999, Reconnect.NOW),
    # Registered to libraries and frameworks (a proxy's): nothing says the client did wrong.
    (3000, 3999, Reconnect.NOW),
    # wsgateway's signals that mirror no HTTP status (4000, 4001), and a site's close_sockets() codes.
    (4000, 4399, Reconnect.NOW),
    # Mirrors HTTP 4xx, the client's side: a refusal that coming back at once would not change.
    (4400, 4499, Reconnect.PAUSE),
    # Mirrors HTTP 5xx, the server's side: give it room.
    (4500, 4999, Reconnect.PAUSE),
)


def reconnect_rule(code: int) -> Reconnect:
    """What a client does after closing with ``code``: its entry in ``RECONNECT``, else its range's
    rule, else (a code outside 1000-4999, which no server should send) reconnect as after 1006."""
    rule = RECONNECT.get(code)
    if rule is not None:
        return rule
    for first, last, by_range in RECONNECT_RANGES:
        if first <= code <= last:
            return by_range
    return Reconnect.NOW


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
    #: Sent on channel "gateway" just before a 4429 close, with ``retry_after`` (seconds): too many
    #: frames were refused, or (a new socket) the user's cool-down after such a close is not over.
    TOO_MANY_FRAMES = "too_many_frames"
    #: Sent on channel "gateway" just before a 4408 close: the client did not acknowledge what it read.
    NOT_READING = "not_reading"
    #: Sent on channel "gateway" just before a 4409 close: the user has too many sockets open.
    TOO_MANY_CONNECTIONS = "too_many_connections"
    #: Sent on channel "gateway" just before a 4503 close, with ``retry_after`` (seconds) next to the
    #: message: the site is in maintenance.
    MAINTENANCE = "maintenance"
    #: Sent on channel "gateway" just before a 4503 close, with ``retry_after`` (seconds): the site
    #: cannot take the socket now (its channel layer is down or too slow), whoever the user is. Not
    #: ``unauthorized``: the client's login is fine, and it reconnects by itself.
    UNAVAILABLE = "unavailable"
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

    # The preferences API (HTTP), in the same body; also ``unknown_channel`` (a channel the kind does not
    # use) and ``invalid_data``. Nothing of a refused change is stored.
    #: A kind the site does not declare (now: one removed from the settings is unknown too).
    UNKNOWN_KIND = "unknown_kind"
    #: Turning off a kind the site marks required.
    REQUIRED_KIND = "required_kind"
