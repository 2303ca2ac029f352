"""Writing to the socket and closing it: its state, its window, the code it was closed with.

What the ASGI server is sent goes through one :class:`Transport` per socket, so that nothing is
sent once the socket is closed, every text frame is counted against the window (wsgateway.flow)
but a revocation's last two (:meth:`Transport.abort`) and the window's marks, which go out in order
with the frames they follow, and a close is one the server can send.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from django.utils.functional import Promise
from django.utils.translation import gettext, gettext_lazy

from . import frames, metrics
from .codes import PRIVATE_CLOSE_CODES, CloseCode, ErrorCode
from .conf import gateway_settings
from .flow import NOT_READING_REASON, OutboundWindow

logger = logging.getLogger("wsgateway")

Message = dict[str, Any]
#: The ASGI server's ``send``.
ServerSend = Callable[[Message], Awaitable[None]]

NOT_ENCODABLE_MESSAGE = gettext_lazy("The server failed to encode its answer.")

#: A close frame has room for 123 bytes of reason (RFC 6455).
MAX_CLOSE_REASON = 123

#: What the server's ``send`` raises for a socket that is already closing. ASGI 2.4 asks servers
#: for an OSError: uvicorn's ClientDisconnected is one (measured: frames answered after uvicorn read
#: the client's close, see tests/test_servers.py; uvicorn swallows it silently if it escapes, and the
#: consumer would end without its clean-up). hypercorn raises nothing: it drops a send to a closing
#: socket (wsproto's LocalProtocolError and the writer's ConnectionError are caught inside it), so it
#: needs no entry here. daphne lets autobahn's Disconnected, a RuntimeError, through: measured when a
#: client sent a stray continuation frame after a valid frame, and autobahn was closing the
#: connection while the valid frame's reply was on its way.
SOCKET_GONE: tuple[type[Exception], ...] = (OSError,)
try:  # autobahn comes with daphne; a site on uvicorn or hypercorn has neither
    from autobahn.exception import Disconnected
except ImportError:  # pragma: no cover - daphne is installed wherever the suite runs
    pass
else:
    SOCKET_GONE += (Disconnected,)


class SocketState(enum.Enum):
    """Where the socket is, as far as sending goes."""

    #: The handshake is not answered yet.
    CONNECTING = "connecting"
    #: Accepted: frames go out.
    OPEN = "open"
    #: This side is closing at once (:meth:`Transport.abort`, a revocation): its last frames are on
    #: their way, ahead of whatever else waits; nothing else is sent.
    CLOSING = "closing"
    #: This side sent its close, the client's disconnect came, or the server said the socket is
    #: gone. Anything sent from now on is dropped: the client would never read it.
    CLOSED = "closed"


class Transport:
    """The socket as the server sees it: its state, its window (wsgateway.flow), and the code it was
    closed with.

    Every accept, frame and close goes out through :meth:`send`, and nothing once the socket is
    closed. ``close_code`` is the code of the close this side sent, else the client's: what
    ``client_disconnected`` reports, whoever closed (daphne reports 1006 for a close the server
    sent and the client never answered).
    """

    __slots__ = ("close_code", "send_limit", "server_send", "state", "window")

    def __init__(self, server_send: ServerSend) -> None:
        self.server_send = server_send
        self.state = SocketState.CONNECTING
        self.close_code: int | None = None
        #: Set at the connect: nothing is bounded before it (a refusal's frames).
        self.window: OutboundWindow | None = None
        #: ``MAX_SEND_SIZE`` as it was at the connect: read once, not on every push (0: not yet).
        self.send_limit = 0

    def open(self, window: OutboundWindow, send_limit: int) -> None:
        """The socket is accepted: from now on its frames count against ``window``."""
        self.window, self.send_limit = window, send_limit

    @property
    def closed(self) -> bool:
        """Nothing more goes out but a close under way: closing or closed."""
        return self.state is SocketState.CLOSED or self.state is SocketState.CLOSING

    def end(self, client_code: int | None = None) -> None:
        """The socket has ended (the client's disconnect, or the application's end): a send waiting
        for an acknowledgement gives up."""
        self.state = SocketState.CLOSED
        if self.close_code is None:
            self.close_code = client_code
        if self.window is not None:
            self.window.wake()

    async def send_text(self, text: str, *, wait: bool = True) -> None:
        """Send a text frame, waiting for room in the window if it must.

        ``wait=False`` from the task that reads the client: the acknowledgements come through that
        task, so it never waits for one. What it sends is counted all the same, and is little (a
        ``rate_limited`` error, the reply to an ack: at most ``RATE_LIMIT_CLOSE_AFTER`` a minute).
        """
        window = self.window
        if window is None or self.closed:
            await self.send({"type": "websocket.send", "text": text})
            return
        size = len(text)  # every frame wsgateway writes is ASCII: its length is its size
        if wait and not window.fits(size) and not await self.room_for(window, size):
            return
        window.count(size)
        await self.send({"type": "websocket.send", "text": text})
        if window.sent >= window.next_mark:  # a quarter of the window since the last mark
            await self.send_mark(window)

    async def send_mark(self, window: OutboundWindow) -> None:
        """Put a mark in the stream after what was sent (see wsgateway.flow), past the window: it is
        what lets the client make room, so it never waits for any.

        Nothing yields between the mark's place and its send, and every frame is counted right before
        it goes to the server: the mark follows every byte it stands for, whichever task sent them.
        """
        if (mark := window.place_mark()) is not None:
            await self.send({"type": "websocket.send", "text": frames.mark(mark)})

    async def send_frame(self, channel: str, payload: Any, frame_id: frames.FrameId | None = None) -> None:
        """Send a data frame; a payload with no JSON form sends ``internal_error`` in its place, and
        one over ``MAX_SEND_SIZE`` ``too_large``: the server would refuse it and close the socket."""
        limit = self.send_limit or gateway_settings.MAX_SEND_SIZE
        try:
            text = frames.data(channel, payload, frame_id)
        except frames.NotJSON:
            logger.exception("wsgateway service %r answered with a value that is not JSON", channel)
            text = frames.error(channel, ErrorCode.INTERNAL_ERROR, NOT_ENCODABLE_MESSAGE, frame_id)
        if (size := frames.size(text)) > limit:
            metrics.increment(metrics.SEND_TOO_LARGE)
            logger.warning("wsgateway: a %d-byte frame on channel %r was not sent", size, channel)
            message = gettext("The answer is over the server's limit of %(limit)d bytes.") % {"limit": limit}
            text = frames.error(channel, ErrorCode.TOO_LARGE, message, frame_id)
        await self.send_text(text)

    async def room_for(self, window: OutboundWindow, size: int) -> bool:
        """Wait for the client to acknowledge enough for ``size`` more bytes; False if the socket
        ends first, or if that takes over ``ACK_TIMEOUT`` seconds (then this closes it with 4408).

        The sender holds the turn meanwhile, so the socket's pushes wait in the channel layer, whose
        capacity bounds them (past it, the layer's overflow brings a catch-up once the client reads).
        """
        metrics.increment(metrics.OUTBOUND_WAITED)
        try:
            return await window.room_for(size, lambda: self.closed, lambda: self.send_mark(window))
        except TimeoutError:
            window.not_reading(size)
            # The reason in an error frame too, past the window (its last frame, and a small one):
            # daphne drops a close's reason (see docs/protocol.md).
            error = frames.error(frames.GATEWAY_CHANNEL, ErrorCode.NOT_READING, NOT_READING_REASON)
            await self.send({"type": "websocket.send", "text": error})
            await send_close(self.send, CloseCode.NOT_READING, NOT_READING_REASON)
            return False

    async def abort(self, error: str, code: int, reason: str | None) -> None:
        """Close now, whatever waits: the ``error`` frame, then a close with ``code`` and ``reason``.

        A revocation must not wait behind a send waiting for room (it holds the turn, for up to
        ``ACK_TIMEOUT``), so this needs no turn: it marks the socket closing first, which drops every
        frame sent from then on and wakes that send, which gives up. Neither frame counts against
        the window: a client that stopped reading still gets its close.
        """
        if self.state is not SocketState.OPEN:
            return
        self.state = SocketState.CLOSING
        if self.window is not None:
            self.window.wake()
        await self.write({"type": "websocket.send", "text": error})
        if self.state is SocketState.CLOSING:  # not gone meanwhile (the client's disconnect)
            await send_close(self.write, code, reason)

    async def send(self, message: Message) -> None:
        if self.closed:
            logger.debug("wsgateway: dropped a %r on a closed socket", message["type"])
            return
        await self.write(message)

    async def write(self, message: Message) -> None:
        """Hand ``message`` to the server, whatever the state: :meth:`send` and :meth:`abort` decide."""
        try:
            await self.server_send(message)
        except SOCKET_GONE as exc:
            # The client's disconnect is on its way and ends this consumer; this is not a failure.
            logger.debug(
                "wsgateway: the server refused a %r, the socket is closing: %r", message["type"], exc
            )
            self.state = SocketState.CLOSED
            return
        if message["type"] == "websocket.accept":
            self.state = SocketState.OPEN
        elif message["type"] == "websocket.close":
            self.state = SocketState.CLOSED
            self.close_code = message.get("code", 1000)


async def send_close(send: ServerSend, code: int, reason: str | Promise | None) -> None:
    """Send a close with ``code``, or with the private code that stands for it where the server
    refuses it (autobahn, under daphne, takes only 1000 and 3000-4999, and no int subclass such as
    a CloseCode member: it raises from the send). ``reason`` is cut to what a close frame holds: a
    long translation fits, rather than a send that raises."""
    if reason is not None:
        reason = str(reason).encode()[:MAX_CLOSE_REASON].decode("utf-8", "ignore")
    message = {"type": "websocket.close", "code": int(code), "reason": reason}
    try:
        await send(message)
    except Exception:
        fallback = PRIVATE_CLOSE_CODES.get(code)  # type: ignore[call-overload]
        if fallback is None:
            raise
        await send({**message, "code": int(fallback)})
