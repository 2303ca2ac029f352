"""The socket's side of requests from the server (wsgateway.asking has the requester's).

A socket passes a request event on to its client and holds it in :class:`PendingRequests` until
its client answers, the requester cancels it, its deadline passes or the socket closes; each of
those ends tells whoever still waits (the requester through its reply channel, the client with a
``cancel`` frame). See "Requests from the server" in docs/protocol.md.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Protocol

from . import events, frames, metrics
from .asking import Dropped
from .conf import gateway_settings

logger = logging.getLogger("wsgateway")


class Outlet(Protocol):
    """What the requests need of their socket."""

    channel_name: str
    channel_layer: Any

    @property
    def is_open(self) -> bool: ...

    async def send_text(self, text: str) -> None: ...


@dataclass(slots=True)
class Pending:
    """A request a socket sent its client: where its answer goes, and until when."""

    channel: str
    reply_to: str
    deadline: float


class PendingRequests:
    """The requests one socket sent its client and holds until they are answered.

    At most ``MAX_PENDING_REQUESTS``, each forgotten at its deadline at the latest. No timer per
    entry: :meth:`expire` is called as a request comes and as a client frame comes, and costs one
    comparison until the earliest deadline has passed.
    """

    __slots__ = ("entries", "next_deadline")

    def __init__(self) -> None:
        self.entries: dict[str, Pending] = {}
        self.next_deadline = math.inf

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, request_id: str, entry: Pending, limit: int) -> bool:
        """Hold ``entry``; False, and nothing held, when ``limit`` are held already."""
        if len(self.entries) >= limit:
            return False
        self.entries[request_id] = entry
        self.next_deadline = min(self.next_deadline, entry.deadline)
        return True

    def take(self, request_id: str, channel: str) -> Pending | None:
        """The entry a reply on ``channel`` answers, no longer held; None for none."""
        entry = self.entries.get(request_id)
        if entry is None or entry.channel != channel:
            return None
        del self.entries[request_id]
        return entry

    def holds(self, frame: frames.Frame) -> bool:
        """Whether ``frame`` answers a request held here (on the request's channel)."""
        entry = self.entries.get(frame.reply) if frame.reply is not None else None
        return entry is not None and entry.channel == frame.channel

    def pop(self, request_id: str) -> Pending | None:
        return self.entries.pop(request_id, None)

    def expire(self, now: float) -> list[tuple[str, Pending]]:
        """Forget and return the entries whose deadline has passed."""
        if now < self.next_deadline:
            return []
        expired = [(key, entry) for key, entry in self.entries.items() if entry.deadline <= now]
        for key, _ in expired:
            del self.entries[key]
        self.next_deadline = min((entry.deadline for entry in self.entries.values()), default=math.inf)
        return expired

    def drain(self) -> list[tuple[str, Pending]]:
        """Every entry, none held any more (the socket has closed)."""
        entries = list(self.entries.items())
        self.entries.clear()
        self.next_deadline = math.inf
        return entries

    # -- the steps, each given the socket it holds the requests of --------------------------

    async def on_request(self, socket: Outlet, event: dict[str, Any], send_limit: int) -> bool:
        """Pass a request on to the client and hold it until it is answered (True); or tell the
        requester at once why not (False)."""
        request_id, reply_to = event["request"], event["reply_to"]
        now = time.time()
        await self.expire_due(socket, now)
        # After the expiry's sends, with no await from here to the add: a socket that ended meanwhile
        # has drained its table already, and an entry added now would be nobody's to report.
        if not socket.is_open:
            metrics.increment(metrics.REQUESTS_CLOSED)
            await tell(socket, reply_to, dropped_message(request_id, socket.channel_name, Dropped.CLOSED))
            return False
        if event["deadline"] <= now:
            return False  # its requester has given up already: nobody to tell
        reason = None
        if frames.size(event["text"]) > send_limit:
            reason = Dropped.TOO_LARGE
        elif not self.add(
            request_id,
            Pending(event["channel"], reply_to, event["deadline"]),
            gateway_settings.MAX_PENDING_REQUESTS,
        ):
            metrics.increment(metrics.REQUESTS_BUSY)
            reason = Dropped.BUSY
        if reason is not None:
            if reason is Dropped.TOO_LARGE:
                metrics.increment(metrics.REQUESTS_TOO_LARGE)
            await tell(socket, reply_to, dropped_message(request_id, socket.channel_name, reason))
            return False
        await socket.send_text(event["text"])
        metrics.increment(metrics.REQUESTS_SENT)
        return True

    async def on_cancel(self, socket: Outlet, request_id: str) -> None:
        """Another socket answered (or the requester gave up): drop it, and tell the client."""
        entry = self.pop(request_id)
        if entry is not None:
            await socket.send_text(frames.cancel(entry.channel, request_id))

    async def on_reply(self, socket: Outlet, frame: frames.Frame) -> None:
        """The client's answer to a request: to its requester. One to a request this socket no longer
        holds (late, cancelled, unknown) is dropped: the normal end of a race, not an error."""
        assert frame.reply is not None
        entry = self.take(frame.reply, frame.channel)
        if entry is None:
            metrics.increment(metrics.REQUESTS_UNMATCHED_REPLY)
            logger.debug(
                "wsgateway: dropped a reply to request %r, which this socket does not hold", frame.reply
            )
            return
        metrics.increment(metrics.REQUESTS_ANSWERED)
        await tell(socket, entry.reply_to, answer_message(frame.reply, socket.channel_name, frame))

    async def expire_due(self, socket: Outlet, now: float) -> None:
        """Forget the requests past their deadline, whose requesters have given up, and tell the
        client; one comparison while none is due."""
        for request_id, entry in self.expire(now):
            metrics.increment(metrics.REQUESTS_EXPIRED)
            await socket.send_text(frames.cancel(entry.channel, request_id))

    async def drop_all(self, socket: Outlet) -> None:
        """The socket has ended: every requester still waiting on it learns so at once."""
        now = time.time()
        for request_id, entry in self.drain():
            if entry.deadline > now:
                metrics.increment(metrics.REQUESTS_CLOSED)
                await tell(
                    socket, entry.reply_to, dropped_message(request_id, socket.channel_name, Dropped.CLOSED)
                )


def answer_message(request_id: str, socket: str, frame: frames.Frame) -> dict[str, Any]:
    """What a socket sends the requester for its client's reply ``frame``."""
    message: dict[str, Any] = {"type": events.REPLY, "request": request_id, "socket": socket}
    if frame.error is not None:
        message["error"] = list(frame.error)
    else:
        message["payload"] = frame.payload
    return message


def dropped_message(request_id: str, socket: str, reason: Dropped) -> dict[str, Any]:
    """What a socket sends the requester when it cannot pass the request on, or closed with it."""
    return {"type": events.REPLY, "request": request_id, "socket": socket, "dropped": str(reason)}


async def tell(socket: Outlet, reply_to: str, message: dict[str, Any]) -> None:
    """Send a requester its answer; a layer that fails costs the socket nothing."""
    try:
        await socket.channel_layer.send(reply_to, message)
    except Exception as exc:
        # The layer is down, or the reply channel full: its requester times out instead.
        logger.info("wsgateway: could not answer request %s: %r", message["request"], exc)
