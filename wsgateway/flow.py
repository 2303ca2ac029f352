"""Flow control: how much one socket may have sent that its client has not acknowledged.

daphne's ``send`` never waits: what a client does not read stays in the server's memory, however
much it is. So the server tells each client a window (``OUTBOUND_WINDOW`` bytes, in the connect
frame) and counts the bytes of the text frames it sends. Every quarter of the window it puts a
*mark* in the stream, a short random string of this socket's
(``{"channel": "gateway", "payload": {"action": "mark", "data": "<mark>"}}``), and the client
acknowledges what it has read by echoing the last mark it read
(``{"action": "ack", "data": "<mark>"}``). A client that does not read cannot know the mark, so it
cannot acknowledge what it was sent without reading it (a count of bytes could be forged from the
frames' sizes: measured, daphne grew by 76 MB in 40 s for one such client).

A send that would leave more than the window unacknowledged waits for an acknowledgement, for at
most ``ACK_TIMEOUT`` seconds; then the socket is closed with 4408 and its client catches up on
reconnect. See "Flow control" in docs/protocol.md.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from django.utils.translation import gettext, pgettext_lazy

from . import metrics
from .conf import gateway_settings
from .exceptions import InvalidData

logger = logging.getLogger("wsgateway")

#: The close's reason (4408): a close frame holds at most 123 bytes of reason, so a translation stays short.
NOT_READING_REASON = pgettext_lazy("close reason, at most 123 bytes", "Not reading: reconnect.")

#: Most marks a socket has outstanding (sent, not yet acknowledged). A client that reads acknowledges
#: each mark as it reads it, and one acknowledgement drops every older mark: marks come a quarter of
#: the window apart, and one more right before a send waits for room, so a reading client has about
#: five outstanding. Past this bound no new mark is placed until the client acknowledges one: what a
#: socket keeps for its marks is bounded whatever its client does.
MAX_MARKS = 8
#: Random bytes of a mark: 64 bits, 11 characters on the wire. A client refused for each wrong guess
#: (and closed 4429 past the rate limits) has no way to guess one.
MARK_BYTES = 8


class OutboundWindow:
    """One socket's window: what it sent since the connect, what its client has acknowledged, and
    the marks in the stream it may acknowledge with.

    Every frame wsgateway writes is ASCII (see frames.encode): its length is its size in bytes.

    Marks do not count against the window, as a revocation's close does not: a mark must never wait
    for room, since it is what the client needs to make room (a mark that waited for an
    acknowledgement would wait for itself). Not counted, they cannot push a data frame out of the
    window either; what they add beyond it is at most :data:`MAX_MARKS` small frames.
    """

    __slots__ = ("acked", "marked", "marks", "moved", "next_mark", "owner", "sent", "size")

    def __init__(self, size: int, owner: Any = None) -> None:
        self.size = size
        #: Whose socket it is (a user's pk), for the log.
        self.owner = owner
        self.sent = 0
        #: Always the position of a mark the client echoed (or 0): what it proved it read.
        self.acked = 0
        #: The marks outstanding, oldest first: (mark, bytes sent before it). At most MAX_MARKS.
        self.marks: list[tuple[str, int]] = []
        #: Bytes sent before the latest mark: what is past it is not covered by any mark yet.
        self.marked = 0
        #: Bytes sent at which the next mark is due: a send compares ``sent`` with it, nothing more.
        self.next_mark = size // 4
        #: Set by each acknowledgement (and the socket's end): what a send waiting for room waits
        #: on. Made by the first wait: most sockets never wait.
        self.moved: asyncio.Event | None = None

    def fits(self, size: int) -> bool:
        """Whether ``size`` more bytes leave at most the window unacknowledged."""
        return self.sent + size - self.acked <= self.size

    @property
    def unacknowledged(self) -> int:
        return self.sent - self.acked

    def count(self, size: int) -> None:
        """``size`` bytes went out."""
        self.sent += size

    def place_mark(self) -> str | None:
        """A new mark for the stream, at what was sent so far; None when every byte sent is covered
        by a mark already, or :data:`MAX_MARKS` are outstanding.

        The caller sends it at once, with nothing sent in between: a client that reads it has read
        every byte before it.
        """
        self.next_mark = self.sent + self.size // 4
        if self.sent <= self.marked or len(self.marks) >= MAX_MARKS:
            return None
        mark = secrets.token_urlsafe(MARK_BYTES)
        self.marks.append((mark, self.sent))
        self.marked = self.sent
        return mark

    def acknowledge(self, mark: object) -> None:
        """The client read up to ``mark``, one of this socket's outstanding marks: what came before
        it no longer counts, and neither do the older marks.

        Raises ``invalid_data`` for anything else (a number of bytes, as the protocol had it before;
        a mark of another socket; a mark acknowledged already), and nothing moves.
        """
        for index, (outstanding, position) in enumerate(self.marks):
            if outstanding == mark:
                del self.marks[: index + 1]
                self.acked = position
                self.wake()
                return
        raise InvalidData(
            gettext(
                # Translators: "ack" and "mark" are names of actions: keep them as they are.
                "ack takes the data of a mark the server sent on this socket and that was not "
                "acknowledged yet."
            )
        )

    def wake(self) -> None:
        """Wake a send waiting for room: the window moved, or the socket ended."""
        if self.moved is not None:
            self.moved.set()

    def not_reading(self, size: int) -> None:
        """Count and log the close of a socket that does not read (4408)."""
        metrics.increment(metrics.OUTBOUND_CLOSED)
        logger.warning(
            "wsgateway: closed a socket of user %r with 4408: %d bytes unacknowledged, and a "
            "frame of %d more over its window of %d",
            self.owner,
            self.unacknowledged,
            size,
            self.size,
        )

    async def room_for(
        self, size: int, closed: Callable[[], bool], mark: Callable[[], Awaitable[None]]
    ) -> bool:
        """Wait until ``size`` more bytes fit; False if ``closed()`` becomes true first.

        Before each wait, ``mark()`` puts a mark after what was sent (see :meth:`place_mark`), so
        that a client that read everything can acknowledge everything: no frame up to the window's
        size waits for ever on a client that reads.

        Raises TimeoutError after ``ACK_TIMEOUT`` seconds: the client does not read.
        """
        if self.moved is None:
            self.moved = asyncio.Event()
        async with asyncio.timeout(gateway_settings.ACK_TIMEOUT):
            while not self.fits(size) and not closed():
                # Cleared before the mark's send, which may yield: an ack read meanwhile is not lost.
                self.moved.clear()
                await mark()
                if not self.fits(size) and not closed():
                    await self.moved.wait()
        return not closed()
