"""What a socket takes from the channel layer: pushes and logouts, and nothing else.

Anyone who can ``group_send`` to a user's group (any code of the site, any process sharing
the Redis) can put any ``type`` in an event. A type that names one of the consumer's internal
steps, a client message, or nothing the consumer knows is logged and dropped, on every layer:
the socket stays open and the next push still arrives.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from channels.layers import channel_layers, get_channel_layer
from django.test import override_settings

from tests.support.communicators import connected, create_user, frame
from wsgateway.groups import apush, user_group
from wsgateway.models import ClipboardEntry

pytestmark = pytest.mark.django_db(transaction=True)

BACKENDS = {
    "inprocess": "wsgateway.layers.InProcessChannelLayer",
    "stock-inmemory": "channels.layers.InMemoryChannelLayer",
    "redis": "wsgateway.layers.redis.RedisChannelLayer",
    "stock-redis-core": "channels_redis.core.RedisChannelLayer",
    "stock-redis-pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
}

#: An injected client frame: were it dispatched, it would store a clipboard entry and answer "x".
INJECTED_FRAME = json.dumps(
    {"channel": "clipboard", "payload": {"action": "clipboard_add", "data": 1}, "id": "x"}
)

NOT_LAYER_EVENTS = [
    {"type": "gateway.catch.up"},
    {"type": "gateway.noop"},
    {"type": "gateway.probe", "token": "t"},
    {"type": "websocket.receive", "text": INJECTED_FRAME},
    {"type": "websocket.disconnect", "code": 1000},
    {"type": "websocket.connect"},
    {"type": "no.such.event"},
    {"type": "gateway_push"},
]


@pytest.fixture(
    params=[pytest.param(kind, marks=pytest.mark.redis) if "redis" in kind else kind for kind in BACKENDS]
)
async def layer_kind(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    kind = str(request.param)
    config: dict[str, Any] = {"BACKEND": BACKENDS[kind]}
    if "redis" in kind:
        config["CONFIG"] = {"hosts": [request.getfixturevalue("redis_url")]}
    with override_settings(CHANNEL_LAYERS={"default": config}):
        yield kind
        layer = channel_layers.backends.get("default")
        if layer is not None:
            await layer.flush()
            if hasattr(layer, "close_pools"):
                await layer.close_pools()
            elif hasattr(layer, "close"):
                await layer.close()


async def test_events_of_internal_or_unknown_types_leave_the_socket_open_and_working(
    layer_kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    ann = await create_user("ann")
    caplog.set_level(logging.WARNING, logger="wsgateway")
    async with connected(ann) as socket:
        layer = get_channel_layer()
        for event in NOT_LAYER_EVENTS:
            await layer.group_send(user_group(ann.pk), event)
        await apush([ann.pk], "notifications", {"unread": 5})
        # Events of one group arrive in order: the push comes after every ignored event was handled.
        assert await socket.receive() == frame("notifications", {"unread": 5})
        await socket.assert_open()
    assert await ClipboardEntry.objects.acount() == 0  # the injected frame was not run
    ignored = [
        record.getMessage()
        for record in caplog.records
        if "ignored a channel-layer event" in record.getMessage()
    ]
    assert len(ignored) == len(NOT_LAYER_EVENTS)
    for event, message in zip(NOT_LAYER_EVENTS, ignored, strict=True):
        assert repr(event["type"]) in message


async def test_a_socket_keeps_a_task_waiting_on_the_layer_only_on_a_layer_that_cannot_call_it_back(
    layer_kind: str,
) -> None:
    import asyncio

    from wsgateway.layers.extensions import QUEUED, supports

    ann = await create_user("ann")
    async with connected(ann) as socket:
        readers = [
            task
            for task in asyncio.all_tasks()
            if getattr(task.get_coro(), "__qualname__", "") == "TurnTakingConsumer.serve_layer"
        ]
        # wsgateway's layers call the socket back as a message is queued (the ``queued`` extension):
        # an idle socket holds no task for the layer. On the stock layers, one waits in receive().
        assert len(readers) == (0 if supports(get_channel_layer(), QUEUED) else 1)
        await apush([ann.pk], "notifications", {"unread": 1})
        assert await socket.receive() == frame("notifications", {"unread": 1})
