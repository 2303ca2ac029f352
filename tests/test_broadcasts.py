"""To every socket at once: broadcast() and close_sockets(); which sockets a user has (presence's base).

Real consumers through the communicator, on wsgateway's in-process layer and Channels' in-memory one;
across daphne processes on Redis in tests/test_scale_out.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import channel_layers
from django.test import override_settings

import wsgateway
from tests.support.communicators import connected, create_user, error_frame, frame, refused
from wsgateway.codes import CloseCode, ErrorCode
from wsgateway.consumers import ClipboardConsumer, NotifierConsumer
from wsgateway.exceptions import FrameTooLarge
from wsgateway.signals import client_connected, client_disconnected

pytestmark = pytest.mark.django_db(transaction=True)

IN_MEMORY = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
NEWS = {"kind": "announcement", "text": "Maintenance at 22:00."}


@pytest.fixture(params=["inprocess", "stock-inmemory"])
def layer(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each test on wsgateway's in-process layer and on Channels' InMemoryChannelLayer."""
    if request.param == "inprocess":
        yield request.param
        return
    with override_settings(CHANNEL_LAYERS=IN_MEMORY):
        try:
            yield request.param
        finally:
            channel_layers.backends.clear()


async def read_connect_frames(socket: Any) -> None:
    hello = await socket.receive()
    for _ in hello["payload"]["services"]:
        await socket.receive()


# -- broadcast ----------------------------------------------------------------------------


async def test_a_broadcast_reaches_every_socket_of_every_user_once_as_a_push_without_seq(
    alice: Any, bob: Any, layer: str
) -> None:
    async with connected(alice) as laptop, connected(alice) as phone, connected(bob) as other:
        await wsgateway.abroadcast("notifications", NEWS)
        for socket in (laptop, phone, other):
            assert await socket.receive() == frame("notifications", NEWS)
            assert await socket.receive_nothing()


async def test_a_socket_that_does_not_serve_the_channel_drops_the_broadcast(alice: Any, layer: str) -> None:
    async with (
        connected(alice, NotifierConsumer) as notifier,
        connected(alice, ClipboardConsumer) as clipboard,
    ):
        await wsgateway.abroadcast("notifications", NEWS)
        assert await notifier.receive() == frame("notifications", NEWS)
        assert await clipboard.receive_nothing()
        await clipboard.assert_open()


async def test_broadcast_from_sync_code_reaches_every_socket(alice: Any, bob: Any, layer: str) -> None:
    async with connected(alice) as first, connected(bob) as second:
        await sync_to_async(wsgateway.broadcast)("clipboard", {"notice": "read only for an hour"})
        for socket in (first, second):
            assert await socket.receive() == frame("clipboard", {"notice": "read only for an hour"})


async def test_broadcast_in_async_code_is_refused_with_the_async_name(alice: Any) -> None:
    with pytest.raises(RuntimeError, match="abroadcast"):
        wsgateway.broadcast("notifications", NEWS)


async def test_a_broadcast_leaves_out_the_excluded_socket(alice: Any, bob: Any) -> None:
    async with connected(alice) as sender, connected(bob) as other:
        [mine] = wsgateway.local_sockets(alice)
        await wsgateway.abroadcast("notifications", NEWS, exclude=mine.channel_name)
        assert await other.receive() == frame("notifications", NEWS)
        assert await sender.receive_nothing()


@override_settings(WSGATEWAY={"MAX_SEND_SIZE": 1024})
async def test_a_broadcast_over_max_send_size_raises_and_sends_nothing(alice: Any) -> None:
    async with connected(alice) as socket:
        with pytest.raises(FrameTooLarge):
            await wsgateway.abroadcast("notifications", {"text": "x" * 1024})
        assert await socket.receive_nothing()


async def test_sockets_that_ended_get_no_broadcast_and_new_ones_do(alice: Any, bob: Any) -> None:
    async with connected(alice):
        pass
    async with connected(bob) as socket:
        await wsgateway.abroadcast("notifications", NEWS)
        assert await socket.receive() == frame("notifications", NEWS)


# -- close_sockets ------------------------------------------------------------------------


async def assert_closed(socket: Any, code: int, error: str = ErrorCode.CLOSING) -> None:
    assert await socket.receive() == error_frame("gateway", error)
    assert await socket.close_code() == code


async def test_close_sockets_closes_every_socket_with_4001_closing(alice: Any, bob: Any, layer: str) -> None:
    async with refused(alice) as first, refused(alice) as second, refused(bob) as third:
        for socket in (first, second, third):
            await read_connect_frames(socket)
        await wsgateway.aclose_sockets()
        for socket in (first, second, third):
            await assert_closed(socket, CloseCode.RECONNECT)
    assert CloseCode.RECONNECT == 4001


async def test_close_sockets_of_a_user_closes_only_theirs(alice: Any, bob: Any, layer: str) -> None:
    async with refused(alice) as alices, connected(bob) as bobs:
        await read_connect_frames(alices)
        await sync_to_async(wsgateway.close_sockets)(alice)
        await assert_closed(alices, CloseCode.RECONNECT)
        assert await bobs.receive_nothing()
        await bobs.assert_open()


async def test_close_sockets_takes_any_valid_code_reason_and_error(alice: Any) -> None:
    async with refused(alice) as socket:
        await read_connect_frames(socket)
        await wsgateway.aclose_sockets(code=4503, reason="Down for maintenance.", error="maintenance")
        assert await socket.receive() == {
            "channel": "gateway",
            "error": {"code": "maintenance", "message": "Down for maintenance."},
        }
        message = await socket.communicator.receive_output()
        assert message == {"type": "websocket.close", "code": 4503, "reason": "Down for maintenance."}


async def test_close_sockets_with_retry_after_says_when_to_come_back(alice: Any) -> None:
    async with refused(alice) as socket:
        await read_connect_frames(socket)
        await wsgateway.aclose_sockets(reason="Back in a minute.", retry_after=60)
        assert await socket.receive() == {
            "channel": "gateway",
            "error": {"code": "closing", "message": "Back in a minute.", "retry_after": 60},
        }
        assert await socket.close_code() == CloseCode.RECONNECT


@pytest.mark.parametrize("retry_after", [0, -1, 3601, 1.5, "60", True])
async def test_close_sockets_refuses_a_retry_after_out_of_bounds(retry_after: Any) -> None:
    with pytest.raises(ValueError, match="retry_after"):
        await wsgateway.aclose_sockets(retry_after=retry_after)


async def test_close_sockets_refuses_a_code_an_application_may_not_send(alice: Any) -> None:
    for code in (1001, 1009, 2999, 5000):
        with pytest.raises(ValueError, match="1000 or 3000-4999"):
            await wsgateway.aclose_sockets(code=code)


async def test_close_sockets_reason_is_the_close_frames_too_cut_to_123_bytes(alice: Any) -> None:
    async with refused(alice) as socket:
        await read_connect_frames(socket)
        await wsgateway.aclose_sockets(reason="é" * 100)
        assert (await socket.receive())["error"]["message"] == "é" * 100
        message = await socket.communicator.receive_output()
        assert message["code"] == 4001 and message["reason"] == "é" * 61  # 122 bytes of 2-byte characters


async def test_close_user_sockets_is_unchanged_4401_revoked_without_a_close_reason(alice: Any) -> None:
    async with refused(alice) as socket:
        await read_connect_frames(socket)
        await wsgateway.aclose_user_sockets(alice)
        assert await socket.receive() == error_frame("gateway", "revoked")
        message = await socket.communicator.receive_output()
        assert message["code"] == 4401 and not message.get("reason")


# -- which sockets a user has --------------------------------------------------------------


async def test_local_sockets_lists_a_users_open_sockets_with_their_path_and_services(
    alice: Any, bob: Any, layer: str
) -> None:
    assert wsgateway.local_sockets(alice) == []
    async with connected(alice) as first, connected(alice, NotifierConsumer), connected(bob):
        mine = wsgateway.local_sockets(alice)
        assert [(s.user_id, s.path, s.services) for s in mine] == [
            (alice.pk, "/ws/", ("notifications", "clipboard")),
            (alice.pk, "/ws/", ("notifications",)),
        ]
        assert mine[0].connected_at <= mine[1].connected_at
        assert wsgateway.local_sockets(str(alice.pk)) == mine  # a user, or a primary key of either type
        assert {s.user_id for s in wsgateway.local_sockets()} == {alice.pk, bob.pk}
        assert sorted(await wsgateway.auser_sockets(alice)) == sorted(s.channel_name for s in mine)
        await first.assert_open()
    assert wsgateway.local_sockets(alice) == wsgateway.local_sockets() == []
    assert await wsgateway.auser_sockets(alice) == []


async def test_a_refused_socket_is_never_listed(alice: Any) -> None:
    async with refused(None) as anonymous:
        assert await anonymous.receive() == error_frame("gateway", "unauthorized")
        assert await anonymous.close_code() == 4401
    with override_settings(WSGATEWAY={"MAX_CONNECTIONS_PER_USER": 1}):
        async with connected(alice), refused(alice) as over_the_cap:
            assert await over_the_cap.receive() == error_frame("gateway", "too_many_connections")
            assert await over_the_cap.close_code() == 4409
            assert len(wsgateway.local_sockets(alice)) == 1
    assert wsgateway.local_sockets() == []


async def test_a_socket_closed_by_the_server_leaves_the_list(alice: Any) -> None:
    async with refused(alice) as socket:
        await read_connect_frames(socket)
        assert len(wsgateway.local_sockets(alice)) == 1
        await wsgateway.aclose_sockets(alice)
        await assert_closed(socket, 4001)
    assert wsgateway.local_sockets(alice) == []


async def test_user_sockets_from_sync_code(alice: Any) -> None:
    async with connected(alice):
        names = await sync_to_async(wsgateway.user_sockets)(alice)
        assert names == [s.channel_name for s in wsgateway.local_sockets(alice)]


# -- presence, as docs/notifications.md shows it ---------------------------------------------


class Presence:
    """The docs' example: a user is online from their first socket to their last, on this process."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def connected(self, user: Any, **kwargs: Any) -> None:
        if len(wsgateway.local_sockets(user)) == 1:
            self.events.append(("online", user.pk))

    def disconnected(self, user: Any, **kwargs: Any) -> None:
        if not wsgateway.local_sockets(user):
            self.events.append(("offline", user.pk))


@pytest.fixture
def presence() -> Iterator[Presence]:
    tracker = Presence()
    client_connected.connect(tracker.connected)
    client_disconnected.connect(tracker.disconnected)
    try:
        yield tracker
    finally:
        client_connected.disconnect(tracker.connected)
        client_disconnected.disconnect(tracker.disconnected)


async def test_presence_sees_the_first_socket_and_the_last_and_none_between(
    alice: Any, bob: Any, presence: Presence
) -> None:
    async with connected(alice) as first:
        await first.assert_open()  # its connect, client_connected included, is over
        assert presence.events == [("online", alice.pk)]
        async with connected(alice) as second, connected(bob) as other:
            await second.assert_open()
            await other.assert_open()
            assert presence.events == [("online", alice.pk), ("online", bob.pk)]
        # Alice's second socket ended, bob's only one: alice has one left.
        assert presence.events == [("online", alice.pk), ("online", bob.pk), ("offline", bob.pk)]
    assert presence.events[-1] == ("offline", alice.pk)


class LayerPresence:
    """The docs' example across processes: an async receiver stores what the layer's count says."""

    def __init__(self) -> None:
        self.online: dict[Any, bool] = {}

    async def changed(self, user: Any, **kwargs: Any) -> None:
        self.online[user.pk] = bool(await wsgateway.auser_sockets(user))


async def test_presence_from_the_layers_count_is_online_while_any_socket_is_open(alice: Any) -> None:
    tracker = LayerPresence()
    client_connected.connect(tracker.changed)
    client_disconnected.connect(tracker.changed)
    try:
        async with connected(alice) as first:
            await first.assert_open()
            assert tracker.online == {alice.pk: True}
            async with connected(alice) as second:
                await second.assert_open()
            assert tracker.online == {alice.pk: True}  # one socket is left
        assert tracker.online == {alice.pk: False}
    finally:
        client_connected.disconnect(tracker.changed)
        client_disconnected.disconnect(tracker.changed)


async def test_a_catch_up_re_joins_the_group_of_every_socket() -> None:
    """A socket whose queue overflowed may have been dropped from its groups: its catch-up re-joins both."""
    from channels.db import database_sync_to_async
    from channels.layers import get_channel_layer

    from wsgateway.groups import all_group
    from wsgateway.notifications import notify

    config = {"BACKEND": "wsgateway.layers.InProcessChannelLayer", "CONFIG": {"capacity": 10}}
    with override_settings(CHANNEL_LAYERS={"default": config}):
        try:
            ann = await create_user("ann")
            async with connected(ann) as socket:
                [mine] = wsgateway.local_sockets(ann)
                await get_channel_layer().group_discard(all_group(), mine.channel_name)
                await wsgateway.abroadcast("notifications", NEWS)
                assert await socket.receive_nothing()  # out of the group: the broadcast missed it
                # 30 pushes at once into a queue of 10: an overflow, and the catch-up.
                await database_sync_to_async(notify)([ann] * 30, "burst")
                frames = [await socket.receive() for _ in range(10 + 3)]  # live, resync, 2 connect frames
                assert frame("gateway", {"resync": True}) in frames
                await wsgateway.abroadcast("notifications", NEWS)
                assert await socket.receive() == frame("notifications", NEWS)
        finally:
            channel_layers.backends.clear()
