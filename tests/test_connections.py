"""A user's sockets are capped (``MAX_CONNECTIONS_PER_USER``): the next one is refused with 4409.

Each socket takes a place as it connects, after authentication and before its group or snapshots, and
gives it back once it has ended, however it ended. These run on the in-process layer (its
``connections`` extension) and on Channels' in-memory layer, which has none (each process counts).
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack
from typing import Any

import pytest
from channels.layers import channel_layers, get_channel_layer
from django.test import override_settings

from tests.support.communicators import AnyText, communicator, connected, create_user, error_frame, refused
from wsgateway import connections, metrics
from wsgateway.codes import CloseCode
from wsgateway.revocation import aclose_user_sockets

pytestmark = pytest.mark.django_db(transaction=True)

IN_MEMORY = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


async def places_taken(user: Any) -> int:
    return len(await connections.user_sockets(get_channel_layer(), str(user.pk)))


async def assert_too_many(user: Any) -> None:
    """The next socket of ``user`` is accepted, told why on channel "gateway", and closed with 4409."""
    async with refused(user) as socket:
        assert await socket.receive() == error_frame("gateway", "too_many_connections")
        assert await socket.close_code() == CloseCode.TOO_MANY_CONNECTIONS == 4409


async def test_the_21st_socket_is_refused_with_4409_and_closing_one_lets_the_next_in(
    alice: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="wsgateway")
    bob = await create_user("bob")
    async with AsyncExitStack() as sockets:
        for _ in range(19):
            await sockets.enter_async_context(connected(alice))
        async with connected(alice):
            assert await places_taken(alice) == 20
            refused_before = metrics.value(metrics.CONNECTIONS_REFUSED)
            await assert_too_many(alice)
            assert metrics.value(metrics.CONNECTIONS_REFUSED) - refused_before == 1
            assert any("4409" in record.getMessage() for record in caplog.records)
            async with connected(bob) as other:  # a cap per user, not per server
                await other.assert_open()
        assert await places_taken(alice) == 19
        async with connected(alice) as again:
            await again.assert_open()
            await assert_too_many(alice)
    assert await places_taken(alice) == 0


@override_settings(WSGATEWAY={"MAX_CONNECTIONS_PER_USER": 2})
async def test_the_cap_follows_the_setting(alice: Any) -> None:
    async with connected(alice), connected(alice):
        await assert_too_many(alice)


@override_settings(WSGATEWAY={"MAX_CONNECTIONS_PER_USER": 5})
async def test_sockets_connecting_at_once_get_exactly_the_cap(alice: Any) -> None:
    sockets = [communicator(alice) for _ in range(12)]
    try:
        await asyncio.gather(*(socket.connect(timeout=2) for socket in sockets))
        firsts = await asyncio.gather(*(socket.receive_json_from(timeout=2) for socket in sockets))
        codes = [frame.get("error", {}).get("code") for frame in firsts]
        assert codes.count(None) == 5  # the gateway frame of an accepted socket
        assert codes.count("too_many_connections") == 7
        assert await places_taken(alice) == 5
    finally:
        for socket in sockets:
            await socket.disconnect(timeout=2)
    assert await places_taken(alice) == 0


@override_settings(WSGATEWAY={"MAX_CONNECTIONS_PER_USER": 1})
async def test_a_revoked_socket_gives_its_place_back_once_it_has_ended(alice: Any) -> None:
    async with refused(alice) as socket:  # accepted, then closed by the server: read by hand
        hello = await socket.receive()
        assert hello["channel"] == "gateway"
        for _ in hello["payload"]["services"]:
            await socket.receive()
        await aclose_user_sockets(alice)
        assert await socket.receive() == error_frame("gateway", "revoked")
        assert await socket.close_code() == CloseCode.UNAUTHORIZED
    async with connected(alice) as again:
        await again.assert_open()


@override_settings(WSGATEWAY={"MAX_CONNECTIONS_PER_USER": 1})
async def test_a_connect_that_fails_after_taking_its_place_gives_it_back(
    alice: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    layer = get_channel_layer()

    async def layer_down(group: str, channel: str) -> None:
        raise ConnectionError("the layer is down")

    monkeypatch.setattr(layer, "group_add", layer_down)
    async with refused(alice) as socket:  # refused "unavailable", not raised (wsgateway.refusals)
        unavailable = {"code": "unavailable", "message": AnyText(), "retry_after": 5}
        assert await socket.receive() == {"channel": "gateway", "error": unavailable}
        assert await socket.close_code() == CloseCode.SERVICE_UNAVAILABLE
    monkeypatch.undo()
    assert await places_taken(alice) == 0
    async with connected(alice) as again:
        await again.assert_open()


@pytest.mark.slow  # 5 s: the cancelled connect waits out its timeout
@override_settings(WSGATEWAY={"MAX_CONNECTIONS_PER_USER": 1})
async def test_a_socket_cancelled_while_connecting_gives_its_place_back(
    alice: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    layer = get_channel_layer()
    joining = asyncio.Event()

    async def slow_group_add(group: str, channel: str) -> None:
        joining.set()
        await asyncio.sleep(10)

    monkeypatch.setattr(layer, "group_add", slow_group_add)
    socket = communicator(alice)
    connecting = asyncio.ensure_future(socket.connect(timeout=5))
    await asyncio.wait_for(joining.wait(), 2)
    assert await places_taken(alice) == 1
    socket.future.cancel()  # what daphne does to an application at shutdown
    with pytest.raises(asyncio.CancelledError):
        await connecting
    monkeypatch.undo()
    assert await places_taken(alice) == 0


async def test_on_a_layer_without_the_extension_each_process_counts_its_own(alice: Any) -> None:
    with override_settings(CHANNEL_LAYERS=IN_MEMORY, WSGATEWAY={"MAX_CONNECTIONS_PER_USER": 2}):
        try:
            assert not connections.counted_by_layer(get_channel_layer())
            async with connected(alice), connected(alice):
                assert await places_taken(alice) == 2
                await assert_too_many(alice)
            assert await places_taken(alice) == 0
        finally:
            channel_layers.backends.clear()
