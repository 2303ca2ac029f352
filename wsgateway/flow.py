"""Flow control: how much one socket may have sent that its client has not acknowledged.

daphne's ``send`` never waits: what a client does not read stays in the server's memory, however
much it is. So the server tells each client a window (``OUTBOUND_WINDOW`` bytes, in the connect
frame), counts the bytes of the text frames it sends, and the client acknowledges what it has read
(``{"channel": "gateway", "payload": {"action": "ack", "data": <bytes received>}}``). A send that
would leave more than the window unacknowledged waits for an acknowledgement, for at most
``ACK_TIMEOUT`` seconds; then the socket is closed with 4408 and its client catches up on
reconnect. See "Flow control" in docs/protocol.md.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from django.utils.translation import gettext, pgettext_lazy

from . import metrics
from .conf import gateway_settings
from .exceptions import InvalidData

logger = logging.getLogger("wsgateway")

#: The close's reason (4408): a close frame holds at most 123 bytes of reason, so a translation stays short.
NOT_READING_REASON = pgettext_lazy("close reason, at most 123 bytes", "Not reading: reconnect.")


class OutboundWindow:
    """One socket's window: what it sent since the connect, and what its client has acknowledged.

    Every frame wsgateway writes is ASCII (see frames.encode): its length is its size in bytes, as
    the server writes it and as the client counts it.
    """

    __slots__ = ("acked", "moved", "owner", "sent", "size")

    def __init__(self, size: int, owner: Any = None) -> None:
        self.size = size
        #: Whose socket it is (a user's pk), for the log.
        self.owner = owner
        self.sent = 0
        self.acked = 0
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

    def acknowledge(self, received: object) -> None:
        """The client has read ``received`` bytes since the connect: those no longer count.

        Raises ``invalid_data`` for anything but a whole number from the last acknowledgement to
        what was sent.
        """
        if type(received) is not int or not self.acked <= received <= self.sent:
            message = gettext(
                # Translators: "ack" is the name of an action: keep it as it is.
                "ack takes the bytes of text frames received since the connect, from "
                "%(acked)d (the last ack) to %(sent)d (what was sent)."
            )
            raise InvalidData(message % {"acked": self.acked, "sent": self.sent})
        self.acked = received
        self.wake()

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

    async def room_for(self, size: int, closed: Callable[[], bool]) -> bool:
        """Wait until ``size`` more bytes fit; False if ``closed()`` becomes true first.

        Raises TimeoutError after ``ACK_TIMEOUT`` seconds: the client does not read.
        """
        if self.moved is None:
            self.moved = asyncio.Event()
        async with asyncio.timeout(gateway_settings.ACK_TIMEOUT):
            while not self.fits(size):
                if closed():
                    return False
                self.moved.clear()
                await self.moved.wait()
        return not closed()
