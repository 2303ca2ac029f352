"""What an accepted socket leaves behind, however it ends: nothing.

Each service's ``on_disconnect``, the group discard and ``client_disconnected`` run exactly once,
whether the client closed the socket, a handler raised, a layer handler raised, the consumer was
cancelled (daphne's application_close_timeout, its shutdown) or the server refused a send because
the socket was closing; signal receivers that raise are logged and change none of it; and nothing
is sent once the socket is closed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from autobahn.exception import Disconnected
from channels.exceptions import StopConsumer
from channels.layers import get_channel_layer
from django.test import override_settings

from tests.support.communicators import TIMEOUT, Socket, communicator, error_frame
from tests.support.communicators import connected as connected_as
from wsgateway import snapshots
from wsgateway.consumers import GatewayConsumer
from wsgateway.groups import user_group
from wsgateway.runtime import SocketState
from wsgateway.services import Service
from wsgateway.signals import client_connected, client_disconnected
from wsgateway.sockets import local_sockets

pytestmark = pytest.mark.django_db(transaction=True)

#: The channel names of the sockets whose RecordingService.on_disconnect ran, one entry per call.
ON_DISCONNECT: list[str] = []


class RecordingService(Service):
    channel = "recording"

    async def on_connect(self, user: Any) -> Any:
        return {}

    async def on_disconnect(self, user: Any) -> None:
        ON_DISCONNECT.append(self.connection.channel_name)


class SlowDisconnectService(Service):
    """Its on_disconnect waits until the test sets ``release``."""

    channel = "slow"
    entered: ClassVar[asyncio.Event]
    release: ClassVar[asyncio.Event]

    async def on_connect(self, user: Any) -> Any:
        return {}

    async def on_disconnect(self, user: Any) -> None:
        self.entered.set()
        await self.release.wait()


SERVICES = [
    "wsgateway.services.notifier.NotifierService",
    "wsgateway.services.clipboard.ClipboardService",
    "tests.test_cleanup.RecordingService",
]


class SiteConsumer(GatewayConsumer):
    """A site's subclass with a bug in a client-frame handler and in a layer-event handler."""

    instances: ClassVar[list[SiteConsumer]] = []
    layer_events = GatewayConsumer.layer_events | {"site.explode"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        SiteConsumer.instances.append(self)

    async def receive_frame(self, frame: Any) -> None:
        if frame.channel == "crash":
            raise RuntimeError("a bug in a site's frame handler")
        await super().receive_frame(frame)

    async def site_explode(self, event: dict[str, Any]) -> None:
        raise RuntimeError("a bug in a site's layer handler")


@pytest.fixture(autouse=True)
def recording() -> Iterator[None]:
    ON_DISCONNECT.clear()
    SiteConsumer.instances.clear()
    with override_settings(WSGATEWAY={"SERVICES": SERVICES}):
        yield
    ON_DISCONNECT.clear()
    SiteConsumer.instances.clear()


@pytest.fixture
def signals() -> Iterator[list[tuple[str, str, Any]]]:
    """``(signal, channel_name, code)`` for every client_connected and client_disconnected, in order."""
    events: list[tuple[str, str, Any]] = []

    def on_connected(channel_name: str, **kwargs: Any) -> None:
        events.append(("connected", channel_name, None))

    def on_disconnected(channel_name: str, code: Any, **kwargs: Any) -> None:
        events.append(("disconnected", channel_name, code))

    client_connected.connect(on_connected)
    client_disconnected.connect(on_disconnected)
    try:
        yield events
    finally:
        client_connected.disconnect(on_connected)
        client_disconnected.disconnect(on_disconnected)


def in_group(user: Any, channel_name: str) -> bool:
    """Whether ``channel_name`` is in the user's group on the in-process layer, either way it is kept."""
    local = get_channel_layer().local
    return channel_name in local.groups.get(user_group(user.pk), {}) or bool(
        local.memberships.get(channel_name)
    )


async def open_socket(user: Any, application: Any = None) -> tuple[Socket, SiteConsumer]:
    """A SiteConsumer socket with its connect frames read, outside ``connected``: for tests whose
    consumer ends by an exception, which ``connected``'s disconnect would raise again."""
    socket = Socket(communicator(user, SiteConsumer, application=application))
    accepted, _ = await socket.communicator.connect(timeout=TIMEOUT)
    assert accepted
    hello = await socket.receive()
    services = hello["payload"]["services"]
    assert [(await socket.receive())["channel"] for _ in services] == services
    await socket.assert_open()  # the connect, client_connected included, is over
    return socket, SiteConsumer.instances[-1]


async def eventually(condition: Any) -> None:
    """Wait until ``condition()`` holds, for at most TIMEOUT seconds."""
    for _ in range(int(TIMEOUT / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"still not true after {TIMEOUT}s")


async def ended(socket: Socket) -> BaseException | None:
    """Wait for the consumer to end by itself, and return the exception it ended with."""
    application = socket.communicator.future
    await asyncio.wait([application], timeout=TIMEOUT)
    assert application.done(), "the consumer did not end"
    if application.cancelled():
        return asyncio.CancelledError()
    return application.exception()


def assert_cleaned_up_once(user: Any, consumer: GatewayConsumer, signals: list[Any], code: Any) -> None:
    name = consumer.channel_name
    assert ON_DISCONNECT == [name]
    assert signals == [("connected", name, None), ("disconnected", name, code)]
    assert not in_group(user, name)
    assert local_sockets(user) == []


# -- signal receivers that raise --------------------------------------------------------


async def test_a_client_connected_receiver_that_raises_is_logged_and_the_socket_works(
    ann: Any, signals: list[Any], caplog: Any
) -> None:
    def broken(**kwargs: Any) -> None:
        raise RuntimeError("a bug in a client_connected receiver")

    client_connected.connect(broken)
    try:
        with caplog.at_level(logging.ERROR, "django.dispatch"):
            async with connected_as(ann, SiteConsumer) as socket:
                consumer = SiteConsumer.instances[-1]
                await socket.assert_open()
                assert in_group(ann, consumer.channel_name)
                await socket.communicator.disconnect(code=4000)
    finally:
        client_connected.disconnect(broken)
    (record,) = [r for r in caplog.records if r.name == "django.dispatch"]
    assert record.exc_info is not None and "a bug in a client_connected receiver" in str(record.exc_info[1])
    assert_cleaned_up_once(ann, consumer, signals, 4000)


async def test_a_client_disconnected_receiver_that_raises_is_logged_and_the_others_still_run(
    ann: Any, caplog: Any
) -> None:
    calls: list[str] = []

    def broken(**kwargs: Any) -> None:
        calls.append("broken")
        raise RuntimeError("a bug in a client_disconnected receiver")

    async def after(**kwargs: Any) -> None:
        calls.append("async")

    def later(**kwargs: Any) -> None:
        calls.append("sync")

    for receiver in (broken, after, later):
        client_disconnected.connect(receiver)
    try:
        with caplog.at_level(logging.ERROR, "django.dispatch"):
            async with connected_as(ann, SiteConsumer) as socket:
                await socket.assert_open()
    finally:
        for receiver in (broken, after, later):
            client_disconnected.disconnect(receiver)
    assert sorted(calls) == ["async", "broken", "sync"]
    assert "a bug in a client_disconnected receiver" in caplog.text
    assert ON_DISCONNECT == [SiteConsumer.instances[-1].channel_name]


# -- a consumer that ends by an exception -----------------------------------------------


async def test_a_frame_handler_that_raises_still_cleans_up_once(ann: Any, signals: list[Any]) -> None:
    socket, consumer = await open_socket(ann)
    await socket.send("crash", {})
    failure = await ended(socket)
    assert isinstance(failure, RuntimeError) and "frame handler" in str(failure)
    assert_cleaned_up_once(ann, consumer, signals, None)
    # The server's disconnect, had it been read, would find nothing left to do.
    with pytest.raises(StopConsumer):
        await consumer.websocket_disconnect({"type": "websocket.disconnect", "code": 1006})
    assert_cleaned_up_once(ann, consumer, signals, None)
    assert socket.unread_output() == []


async def test_a_layer_handler_that_raises_still_cleans_up_once(ann: Any, signals: list[Any]) -> None:
    socket, consumer = await open_socket(ann)
    await get_channel_layer().group_send(user_group(ann.pk), {"type": "site.explode"})
    failure = await ended(socket)
    assert isinstance(failure, RuntimeError) and "layer handler" in str(failure)
    assert_cleaned_up_once(ann, consumer, signals, None)
    assert socket.unread_output() == []


async def test_a_cancelled_consumer_still_cleans_up_once(ann: Any, signals: list[Any]) -> None:
    # What daphne does to an application still running application_close_timeout seconds after
    # its socket closed, and to every application when it shuts down.
    socket, consumer = await open_socket(ann)
    socket.communicator.future.cancel()
    assert isinstance(await ended(socket), asyncio.CancelledError)
    assert_cleaned_up_once(ann, consumer, signals, None)


async def test_a_second_cancel_does_not_cut_the_cleanup_short(ann: Any, signals: list[Any]) -> None:
    # daphne cancels an application that is slow to end again every second.
    SlowDisconnectService.entered, SlowDisconnectService.release = asyncio.Event(), asyncio.Event()
    with override_settings(WSGATEWAY={"SERVICES": ["tests.test_cleanup.SlowDisconnectService", *SERVICES]}):
        socket, consumer = await open_socket(ann)
    socket.communicator.future.cancel()
    await asyncio.wait_for(SlowDisconnectService.entered.wait(), TIMEOUT)
    socket.communicator.future.cancel()
    assert isinstance(await ended(socket), asyncio.CancelledError)
    SlowDisconnectService.release.set()
    # The steps after the slow one still run: the next service's on_disconnect, then the signal.
    await eventually(lambda: len(signals) == 2)
    assert_cleaned_up_once(ann, consumer, signals, None)


async def test_a_connect_that_fails_after_joining_the_group_leaves_it(
    ann: Any, signals: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_reads(*args: Any) -> Any:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(snapshots, "connect_reads", failing_reads)
    socket = Socket(communicator(ann, SiteConsumer))
    await socket.communicator.send_input({"type": "websocket.connect"})
    failure = await ended(socket)
    assert isinstance(failure, RuntimeError) and "database" in str(failure)
    consumer = SiteConsumer.instances[-1]
    assert not in_group(ann, consumer.channel_name)
    assert local_sockets(ann) == []
    # Never accepted: no on_disconnect, no signals.
    assert (ON_DISCONNECT, signals) == ([], [])
    assert socket.unread_output() == []


# -- sending on a closed socket ---------------------------------------------------------


async def test_nothing_is_sent_after_the_server_closed_the_socket(ann: Any, signals: list[Any]) -> None:
    with override_settings(WSGATEWAY={"SERVICES": SERVICES, "MAX_MESSAGE_SIZE": 200}):
        async with connected_as(ann, SiteConsumer) as socket:
            consumer = SiteConsumer.instances[-1]
            await socket.send("gateway", {"action": "ping", "pad": "x" * 200}, "big")
            assert await socket.close_code() == 1009
            # The client had sent this before it read the close: it gets no answer.
            await socket.send("gateway", {"action": "ping"}, "late")
            assert await socket.receive_nothing()
            await consumer.send_frame("gateway", {"late": True})
            assert await socket.receive_nothing()
            assert consumer.transport.state is SocketState.CLOSED
    # The code the socket was closed with, by this side: not the client's answer to it.
    assert_cleaned_up_once(ann, consumer, signals, 1009)


async def test_a_send_after_the_client_disconnected_does_not_raise_and_sends_nothing(
    ann: Any, signals: list[Any]
) -> None:
    async with connected_as(ann, SiteConsumer) as socket:
        consumer = SiteConsumer.instances[-1]
    await consumer.send_frame("gateway", {"late": True})
    await consumer.send_error("gateway", "internal_error", "Late.")
    await consumer.close(4401)
    assert socket.unread_output() == []
    assert_cleaned_up_once(ann, consumer, signals, 1000)


def refusing_once_closing(closing: asyncio.Event, attempts: list[str]) -> Any:
    """The consumer's ASGI application behind daphne's send as it is while autobahn closes the
    connection (after a client's protocol error): every send raises autobahn's Disconnected."""
    application = SiteConsumer.as_asgi()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        async def server_send(message: dict[str, Any]) -> None:
            if closing.is_set():
                attempts.append(message["type"])
                raise Disconnected("Attempt to send on a closed protocol")
            await send(message)

        await application(scope, receive, server_send)

    return app


async def test_a_send_the_server_refuses_as_closed_ends_the_socket_cleanly(
    ann: Any, signals: list[Any]
) -> None:
    closing = asyncio.Event()
    attempts: list[str] = []
    socket, consumer = await open_socket(ann, refusing_once_closing(closing, attempts))
    closing.set()
    await socket.send("gateway", {"action": "ping"}, "refused")
    await socket.send("gateway", {"action": "ping"}, "dropped")
    await asyncio.sleep(0.05)
    # The first reply was refused; the second was not even tried; the consumer still runs.
    assert attempts == ["websocket.send"]
    assert not socket.communicator.future.done()
    assert consumer.transport.state is SocketState.CLOSED
    # Then the server's disconnect ends it, cleanly.
    await socket.communicator.disconnect(code=1002)
    assert await ended(socket) is None
    assert_cleaned_up_once(ann, consumer, signals, 1002)
    assert socket.unread_output() == []


async def test_a_refused_socket_sends_nothing_after_its_close(signals: list[Any]) -> None:
    socket = Socket(communicator(None, SiteConsumer))
    accepted, _ = await socket.communicator.connect(timeout=TIMEOUT)
    assert accepted
    assert await socket.receive() == error_frame("gateway", "unauthorized")
    assert await socket.close_code() == 4401
    await SiteConsumer.instances[-1].send_frame("gateway", {"late": True})
    assert await socket.receive_nothing()
    await socket.communicator.disconnect(code=4401)
    assert (await ended(socket), ON_DISCONNECT, signals) == (None, [], [])
