"""Nothing lost silently: a message a layer drops is counted, logged once per episode, and reported
to the consumer of its channel, which brings its client back in step.

On both of wsgateway's layers (the ``overflow`` extension), and through the consumer's runtime.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import pytest
from channels.exceptions import ChannelFull, StopConsumer
from channels.layers import BaseChannelLayer, get_channel_layer
from channels.testing import WebsocketCommunicator
from django.test import override_settings

from tests.support.clock import Clock
from tests.test_layer_contract import receive, receives_nothing
from wsgateway import metrics
from wsgateway.layers.extensions import OVERFLOW, supports
from wsgateway.runtime import TurnTakingConsumer

KINDS = [pytest.param("inprocess"), pytest.param("redis", marks=pytest.mark.redis)]
BACKENDS = {
    "inprocess": "wsgateway.layers.InProcessChannelLayer",
    "redis": "wsgateway.layers.redis.RedisChannelLayer",
}
TIMEOUT = 2


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def counted(name: str, before: dict[str, int], expected: int) -> None:
    """Wait until counter ``name`` grew by ``expected`` since ``before``: the Redis layer delivers
    (and drops) in its reader task, after group_send has returned."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            if metrics.value(name) - before.get(name, 0) >= expected:
                break
            await asyncio.sleep(0.01)
    assert metrics.value(name) - before.get(name, 0) == expected


def grown(name: str, before: dict[str, int]) -> int:
    return metrics.value(name) - before.get(name, 0)


def warnings_about(caplog: pytest.LogCaptureFixture, channel: str) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelno == logging.WARNING and channel in record.getMessage()
    ]


# -- the layers ---------------------------------------------------------------------------------


async def test_both_layers_declare_the_overflow_extension(layer_factory: Any) -> None:
    assert supports(layer_factory(), OVERFLOW)


async def test_a_burst_past_capacity_is_counted_logged_once_and_reported_once_the_queue_is_read(
    layer_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="wsgateway")
    layer = layer_factory(capacity=5)
    channel = await layer.new_channel()
    await layer.group_add("burst", channel)
    before = metrics.snapshot()
    for n in range(12):
        await layer.group_send("burst", {"type": "test.burst", "n": n})
    await counted(metrics.LAYER_DROPPED, before, 7)
    assert grown(metrics.LAYER_OVERFLOWED_CHANNELS, before) == 1
    assert len(warnings_about(caplog, channel)) == 1  # one per episode, not one per message
    # Not while the five older messages wait: what the consumer sends to recover must come after them.
    assert not layer.take_overflow(channel)
    assert [(await receive(layer, channel))["n"] for _ in range(5)] == [0, 1, 2, 3, 4]
    assert layer.take_overflow(channel)
    assert not layer.take_overflow(channel)  # asking resets it

    # The next overflow is a new episode: counted, logged and reported again.
    before = metrics.snapshot()
    for n in range(7):
        await layer.group_send("burst", {"type": "test.burst", "n": n})
    await counted(metrics.LAYER_DROPPED, before, 2)
    assert grown(metrics.LAYER_OVERFLOWED_CHANNELS, before) == 1
    assert len(warnings_about(caplog, channel)) == 2
    assert [(await receive(layer, channel))["n"] for _ in range(5)] == [0, 1, 2, 3, 4]
    assert layer.take_overflow(channel)
    assert await receives_nothing(layer, channel)


async def test_a_burst_to_one_member_leaves_the_others_unmarked(layer_factory: Any) -> None:
    layer = layer_factory(capacity=2)
    full, free = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("burst", full)
    await layer.group_add("other", free)
    before = metrics.snapshot()
    for n in range(3):
        await layer.group_send("burst", {"type": "test.burst", "n": n})
    await layer.group_send("other", {"type": "test.other"})
    await counted(metrics.LAYER_DROPPED, before, 1)
    assert await receive(layer, free) == {"type": "test.other"}
    assert not layer.take_overflow(free)
    assert [(await receive(layer, full))["n"] for _ in range(2)] == [0, 1]
    assert layer.take_overflow(full)


async def test_a_message_that_expires_unread_is_counted_and_reported(
    layer_factory: Any, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="wsgateway")
    layer = layer_factory(expiry=1)
    member, closed = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("members", member)  # a live socket's; a closed one left its groups
    before = metrics.snapshot()
    await layer.group_send("members", {"type": "test.stale"})
    await layer.send(closed, {"type": "test.stale"})
    await clock.sleep(1.2)
    assert layer.receive_nowait(member) is None
    assert layer.receive_nowait(closed) is None
    assert grown(metrics.LAYER_EXPIRED, before) == 2
    assert len(warnings_about(caplog, member)) == 1
    # What reached a channel in no group (a closed socket's, most likely) is counted, and only noted.
    assert warnings_about(caplog, closed) == []
    assert any(closed in record.getMessage() for record in caplog.records if record.levelno == logging.INFO)
    assert layer.take_overflow(member)
    assert not layer.take_overflow(member)


async def test_a_send_refused_to_its_sender_is_not_an_overflow(layer_factory: Any) -> None:
    # The sender was told (ChannelFull) and decides; nothing was lost behind anyone's back.
    layer = layer_factory(capacity=1)
    channel = await layer.new_channel()
    before = metrics.snapshot()
    await layer.send(channel, {"type": "test.fill"})
    with pytest.raises(ChannelFull):
        await layer.send(channel, {"type": "test.refused"})
    assert await receive(layer, channel) == {"type": "test.fill"}
    assert not layer.take_overflow(channel)
    assert grown(metrics.LAYER_DROPPED, before) == 0


async def test_the_default_capacity_holds_a_burst_of_a_thousand_pushes(layer_factory: Any) -> None:
    layer = layer_factory()
    assert layer.capacity == 1000
    channel = await layer.new_channel()
    await layer.group_add("user", channel)
    before = metrics.snapshot()
    await layer.group_send_many([("user", {"type": "test.push", "n": n}) for n in range(1000)])
    assert [(await receive(layer, channel))["n"] for _ in range(1000)] == list(range(1000))
    assert grown(metrics.LAYER_DROPPED, before) == 0
    assert not layer.take_overflow(channel)


# -- the runtime --------------------------------------------------------------------------------


class Reader(TurnTakingConsumer):
    """Joins one group and writes each event's ``n`` to its client; an event with ``hold`` waits
    for the test, so the layer queues what comes meanwhile."""

    layer_events = frozenset({"gateway.item"})
    instances: ClassVar[list[Reader]] = []
    holding: ClassVar[asyncio.Event]
    release: ClassVar[asyncio.Event]

    overflows = 0

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        await self.channel_layer.group_add("readers", self.channel_name)
        Reader.instances.append(self)
        await self.send({"type": "websocket.accept"})

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        await self.channel_layer.group_discard("readers", self.channel_name)
        raise StopConsumer()

    async def gateway_item(self, event: dict[str, Any]) -> None:
        if event.get("hold"):
            Reader.holding.set()
            await Reader.release.wait()
        await self.send({"type": "websocket.send", "text": str(event["n"])})

    async def layer_overflowed(self) -> None:
        self.overflows += 1
        await super().layer_overflowed()
        await self.send({"type": "websocket.send", "text": "overflowed"})


@pytest.fixture
async def reader_layer(kind: str, redis_for: str | None) -> AsyncIterator[BaseChannelLayer]:
    config: dict[str, Any] = {"capacity": 5}
    if redis_for is not None:
        config["hosts"] = [redis_for]
    Reader.instances = []
    with override_settings(CHANNEL_LAYERS={"default": {"BACKEND": BACKENDS[kind], "CONFIG": config}}):
        layer = get_channel_layer()
        yield layer
        await layer.flush()
        await layer.close()


async def overflow_once(layer: BaseChannelLayer, communicator: WebsocketCommunicator, first: int) -> None:
    """Hold the reader on one event, send twelve more to its five places, release it: it gets
    the held one, the five queued, then its hook, once."""
    Reader.holding, Reader.release = asyncio.Event(), asyncio.Event()
    before = metrics.snapshot()
    await layer.group_send("readers", {"type": "gateway.item", "n": first, "hold": True})
    await asyncio.wait_for(Reader.holding.wait(), TIMEOUT)
    for n in range(first + 1, first + 13):
        await layer.group_send("readers", {"type": "gateway.item", "n": n})
    await counted(metrics.LAYER_DROPPED, before, 7)
    Reader.release.set()
    received = [await communicator.receive_from(TIMEOUT) for _ in range(7)]
    assert received == [str(n) for n in range(first, first + 6)] + ["overflowed"]
    assert await communicator.receive_nothing(0.2)


async def test_the_runtime_calls_layer_overflowed_once_per_overflow_episode(
    reader_layer: BaseChannelLayer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="wsgateway")
    communicator = WebsocketCommunicator(Reader.as_asgi(), "/ws/")
    accepted, _ = await communicator.connect(TIMEOUT)
    assert accepted
    try:
        reader = Reader.instances[-1]
        await overflow_once(reader_layer, communicator, 0)
        assert reader.overflows == 1

        # Events that fit in the queue: no hook.
        for n in range(100, 103):
            await reader_layer.group_send("readers", {"type": "gateway.item", "n": n})
        assert [await communicator.receive_from(TIMEOUT) for _ in range(3)] == ["100", "101", "102"]
        assert await communicator.receive_nothing(0.2)
        assert reader.overflows == 1

        await overflow_once(reader_layer, communicator, 200)
        assert reader.overflows == 2

        # Nobody can call the hook through the layer: it is no event type.
        for event_type in ("layer.overflowed", "layer_overflowed", "gateway.overflowed"):
            await reader_layer.group_send("readers", {"type": event_type})
        await reader_layer.group_send("readers", {"type": "gateway.item", "n": 300})
        assert await communicator.receive_from(TIMEOUT) == "300"
        assert await communicator.receive_nothing(0.2)
        assert reader.overflows == 2
        # The default hook's warning, once per episode, beside the layer's own.
        hook_warnings = [r for r in caplog.records if "does not resync its client" in r.getMessage()]
        assert len(hook_warnings) == 2
    finally:
        await communicator.disconnect(TIMEOUT)


class HeldReporter(Reader):
    """A :class:`Reader` whose overflow report waits for the test, so that a message comes while
    the report is being sent."""

    reporting: ClassVar[asyncio.Event]
    report_release: ClassVar[asyncio.Event]

    async def layer_overflowed(self) -> None:
        HeldReporter.reporting.set()
        await HeldReporter.report_release.wait()
        await super().layer_overflowed()


async def test_a_message_queued_while_an_overflow_is_reported_is_dispatched_without_another() -> None:
    """A loss reported with nothing left to dispatch (the lost ones expired unread): a message queued
    during that report found the dispatch task still running, so the layer's call started none; the
    task must look again after the report, not leave the message until the next one comes."""
    layer_config = {"BACKEND": BACKENDS["inprocess"], "CONFIG": {"capacity": 5}}
    HeldReporter.reporting, HeldReporter.report_release = asyncio.Event(), asyncio.Event()
    Reader.instances = []
    with override_settings(CHANNEL_LAYERS={"default": layer_config}):
        layer = get_channel_layer()
        communicator = WebsocketCommunicator(HeldReporter.as_asgi(), "/ws/")
        accepted, _ = await communicator.connect(TIMEOUT)
        assert accepted
        try:
            reader = Reader.instances[-1]
            assert supports(layer, OVERFLOW)
            # Lost with nothing queued, as when what overflowed expired unread; the layer's call.
            layer.local.mark_overflowed(reader.channel_name, layer.local.clock())
            reader.layer_queued()
            await asyncio.wait_for(HeldReporter.reporting.wait(), TIMEOUT)
            await layer.group_send("readers", {"type": "gateway.item", "n": 1})
            HeldReporter.report_release.set()
            assert await communicator.receive_from(TIMEOUT) == "overflowed"
            assert await communicator.receive_from(TIMEOUT) == "1"
            assert await communicator.receive_nothing(0.2)
            assert reader.overflows == 1
        finally:
            await communicator.disconnect(TIMEOUT)
            await layer.flush()
            await layer.close()


@pytest.mark.django_db(transaction=True)
async def test_a_gateway_socket_whose_queue_overflowed_is_sent_what_it_missed() -> None:
    from channels.db import database_sync_to_async
    from channels.layers import channel_layers

    from tests.support.communicators import connected, create_user, frame
    from wsgateway.notifications import notify

    config = {"BACKEND": BACKENDS["inprocess"], "CONFIG": {"capacity": 10}}
    with override_settings(CHANNEL_LAYERS={"default": config}):
        ann = await create_user("ann")
        pages = metrics.value(metrics.CATCHUP_RESYNC)
        async with connected(ann) as socket:
            # From a worker thread: the 30 pushes reach the layer in one callback of the loop, so 20
            # find the socket's queue full.
            await database_sync_to_async(notify)([ann] * 30, "burst")
            live = [await socket.receive() for _ in range(10)]
            assert [f["payload"]["last"]["seq"] for f in live] == list(range(1, 11))
            assert await socket.receive() == frame("gateway", {"resync": True})
            caught_up = await socket.receive()
            assert caught_up["channel"] == "notifications"
            assert [n["seq"] for n in caught_up["payload"]["missed"]] == list(range(11, 31))
            assert (caught_up["payload"]["seq"], caught_up["payload"]["has_more"]) == (30, False)
            assert metrics.value(metrics.CATCHUP_RESYNC) == pages + 1  # one page of catch-up
            assert (await socket.receive())["channel"] == "clipboard"
        channel_layers.backends.clear()
