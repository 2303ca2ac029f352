"""Connect test users to the real consumers through ``WebsocketCommunicator``, and read the protocol back.

``connected(user)`` opens a socket as Channels' ``AuthMiddlewareStack`` would leave it (the user in the
scope), reads the connect frames (the gateway frame, then one per service: every service in these tests
sends one), and always disconnects; on a clean exit it also checks that the test
read every frame the server sent, so no frame goes unasserted.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from wsgateway.consumers import GatewayConsumer

#: Seconds to wait for a frame: in-process frames arrive in milliseconds.
TIMEOUT = 2
DEFAULT_SERVICES = ["notifications", "clipboard"]
PASSWORD = "correct horse battery staple"

Headers = Sequence[tuple[bytes, bytes]]
_ping_ids = itertools.count(1)


class AnyText:
    """Equal to any non-empty string: the ``message`` of an error is for people; ``code`` is the contract."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and bool(other.strip())

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "<any message text>"


def error_frame(channel: str | None, code: str, id: str | int | None = None) -> dict[str, Any]:
    """The exact shape of an error reply: ``{"channel", "id"?, "error": {"code", "message"}}``."""
    frame: dict[str, Any] = {"channel": channel}
    if id is not None:
        frame["id"] = id
    frame["error"] = {"code": code, "message": AnyText()}
    return frame


def frame(channel: str, payload: Any, id: str | int | None = None) -> dict[str, Any]:
    """The exact shape of a data frame: ``{"channel", "payload", "id"?}``."""
    result: dict[str, Any] = {"channel": channel, "payload": payload}
    if id is not None:
        result["id"] = id
    return result


#: How every mark the server writes begins (frames.mark): a cheap test, as a client would make.
MARK_PREFIX = '{"channel":"gateway","payload":{"action":"mark"'


def mark_of(message: dict[str, Any]) -> str | None:
    """The mark in a server message, when it is one (see "Flow control" in docs/protocol.md)."""
    text = message.get("text")
    if message.get("type") != "websocket.send" or not text or not text.startswith(MARK_PREFIX):
        return None
    return json.loads(text)["payload"]["data"]  # type: ignore[no-any-return]


class Socket:
    """One client connection, with the verbs of the protocol.

    The window's marks are flow control, not content: :meth:`receive` reads past them, keeping them
    in ``marks`` for :meth:`ack`, as a client library does. A test that is sent more than a window
    acknowledges with :meth:`ack`, or sets ``acking`` (each mark acknowledged as it is read), or is
    closed 4408 as a client that does not read.
    """

    def __init__(self, communicator: WebsocketCommunicator) -> None:
        self.communicator = communicator
        #: The frames the server sent right after accepting, in order.
        self.connect_frames: list[dict[str, Any]] = []
        #: The marks read, in order.
        self.marks: list[str] = []
        #: The last mark acknowledged.
        self.acked: str | None = None
        #: Acknowledge each mark as it is read, as wsgateway.js does (else only by :meth:`ack`).
        self.acking = False
        #: A message :meth:`receive_nothing` took from the communicator, for the next receive.
        self.held: list[dict[str, Any]] = []

    @property
    def scope(self) -> dict[str, Any]:
        return self.communicator.scope  # type: ignore[no-any-return]

    async def send(self, channel: Any, payload: Any = None, id: Any = None) -> None:
        message: dict[str, Any] = {"channel": channel, "payload": payload}
        if id is not None:
            message["id"] = id
        await self.communicator.send_json_to(message)

    async def send_json(self, content: Any) -> None:
        await self.communicator.send_json_to(content)

    async def send_text(self, text: str) -> None:
        # Not send_to(): it refuses an empty string, which a client may well send.
        await self.communicator.send_input({"type": "websocket.receive", "text": text})

    async def send_bytes(self, data: bytes) -> None:
        await self.communicator.send_input({"type": "websocket.receive", "bytes": data})

    async def receive(self, within: float = TIMEOUT) -> Any:
        """The next frame that is not a mark, decoded."""
        return json.loads(await self.receive_text(within))

    async def receive_output(self, within: float = TIMEOUT) -> dict[str, Any]:
        """The next ASGI message that is not a mark (a close, too); the marks go to ``marks``."""
        if self.held:
            return self.held.pop(0)
        while True:
            message: dict[str, Any] = await self.communicator.receive_output(within)
            if (mark := mark_of(message)) is None:
                return message
            self.marks.append(mark)
            if self.acking:
                await self.ack()

    async def receive_text(self, within: float = TIMEOUT) -> str:
        message = await self.receive_output(within)
        assert message["type"] == "websocket.send" and "text" in message, f"not a text frame: {message!r}"
        return message["text"]  # type: ignore[no-any-return]

    async def ack(self, id: str | None = None) -> str | None:
        """Acknowledge everything read, with the last mark read; nothing when that one was acknowledged
        already. Returns the mark."""
        if not self.marks or self.marks[-1] == self.acked:
            return None
        self.acked = self.marks[-1]
        await self.send("gateway", {"action": "ack", "data": self.acked}, id)
        return self.acked

    async def request(self, channel: str, payload: Any, id: str | int) -> Any:
        """Send a frame with an id and return the next frame, which should be its reply."""
        await self.send(channel, payload, id)
        return await self.receive()

    async def action(self, channel: str, action: str, data: Any = None, id: str | int = "req") -> Any:
        return await self.request(channel, {"action": action, "data": data}, id)

    async def receive_nothing(self, within: float = 0.1) -> bool:
        """Nothing but marks comes within ``within`` seconds."""
        while not self.held:
            if await self.communicator.receive_nothing(timeout=within):
                return True
            message = self.communicator.output_queue.get_nowait()
            if (mark := mark_of(message)) is None:
                self.held.append(message)  # the next receive's
            else:
                self.marks.append(mark)
                if self.acking:
                    await self.ack()
        return False

    async def assert_open(self) -> None:
        """The socket still answers: a ping gets its pong, and nothing else comes first."""
        ping_id = f"ping-{next(_ping_ids)}"
        reply = await self.request("gateway", {"action": "ping"}, ping_id)
        assert reply == frame("gateway", {"action": "pong"}, ping_id), f"expected the pong, got {reply!r}"

    async def close_code(self, within: float = TIMEOUT) -> int | None:
        """Wait for the server to close the socket and return the close code it used."""
        message = await self.receive_output(within)
        assert message["type"] == "websocket.close", f"expected a close, got {message!r}"
        return message.get("code")

    def unread_output(self) -> list[Any]:
        """What the server sent that the test did not read, but marks (kept in ``marks``)."""
        queue = self.communicator.output_queue
        left = self.held + [queue.get_nowait() for _ in range(queue.qsize())]
        self.held = []
        self.marks += [mark for message in left if (mark := mark_of(message)) is not None]
        return [message for message in left if mark_of(message) is None]


def communicator(
    user: Any = None,
    consumer: Any = GatewayConsumer,
    *,
    path: str = "/ws/",
    headers: Headers = (),
    application: Any = None,
) -> WebsocketCommunicator:
    """A communicator for ``consumer``; with ``user``, authenticated as AuthMiddlewareStack would have it."""
    result = WebsocketCommunicator(application or consumer.as_asgi(), path, headers=list(headers))
    if user is not None:
        result.scope["user"] = user
    return result


@asynccontextmanager
async def connected(
    user: Any = None,
    consumer: Any = GatewayConsumer,
    *,
    headers: Headers = (),
    application: Any = None,
    read_connect_frames: bool = True,
) -> AsyncIterator[Socket]:
    """An accepted socket; its connect frames are read into ``socket.connect_frames``."""
    socket = Socket(communicator(user, consumer, headers=headers, application=application))
    try:
        accepted, _ = await socket.communicator.connect(timeout=TIMEOUT)
        assert accepted, "the consumer refused the handshake"
        if read_connect_frames:
            hello = await socket.receive()
            assert hello["channel"] == "gateway" and "payload" in hello, f"not a gateway frame: {hello!r}"
            socket.connect_frames = [hello] + [await socket.receive() for _ in hello["payload"]["services"]]
        yield socket
        left = socket.unread_output()
        assert not left, f"frames the test did not read: {left!r}"
    finally:
        await socket.communicator.disconnect(timeout=TIMEOUT)


@asynccontextmanager
async def refused(
    user: Any = None, consumer: Any = GatewayConsumer, *, headers: Headers = (), application: Any = None
) -> AsyncIterator[Socket]:
    """A socket the server accepts only to send an error and close; yields it before reading anything."""
    socket = Socket(communicator(user, consumer, headers=headers, application=application))
    try:
        accepted, _ = await socket.communicator.connect(timeout=TIMEOUT)
        assert accepted, "expected an accept, then an error frame and a close"
        yield socket
    finally:
        await socket.communicator.disconnect(timeout=TIMEOUT)


async def create_user(username: str, *, perms: Iterable[str] = (), **fields: Any) -> Any:
    """A user with a known password and the given ``app_label.codename`` permissions."""
    return await database_sync_to_async(_create_user)(username, list(perms), fields)


def _create_user(username: str, perms: list[str], fields: dict[str, Any]) -> Any:
    user = get_user_model().objects.create_user(username=username, password=PASSWORD, **fields)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return user


def bearer(token: str) -> tuple[bytes, bytes]:
    return (b"authorization", f"Bearer {token}".encode())


def cookie(**values: str) -> tuple[bytes, bytes]:
    return (b"cookie", "; ".join(f"{name}={value}" for name, value in values.items()).encode())


def origin(value: str) -> tuple[bytes, bytes]:
    return (b"origin", value.encode())
