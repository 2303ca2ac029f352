"""Memberships live as long as their sockets: the refresher renews a registered socket's groups
before ``group_expiry`` ends them, on every layer wsgateway supports.

``group_expiry`` is 2 s here; the tests wait 2.5 times that. A member that was unregistered
is the control: it must have expired, or the test proves nothing.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from channels.layers import BaseChannelLayer

from tests.support.layers import make_layer
from tests.test_layer_contract import LAYERS, receive, receives_nothing
from wsgateway import health, metrics
from wsgateway.health import MembershipRefresher, refresher_for

GROUP_EXPIRY = 2


class Member:
    """What a consumer gives the refresher: the groups it belongs to."""

    def __init__(self, group: str, channel: str, user: str | None = None) -> None:
        self.group, self.channel, self.user = group, channel, user

    def memberships(self) -> list[tuple[str, str]]:
        return [(self.group, self.channel)]

    def registrations(self) -> list[tuple[str, str]]:
        """Its place among its user's sockets (the connections extension), if it took one."""
        return [(self.user, self.channel)] if self.user is not None else []


@pytest.fixture(
    params=[pytest.param(kind, marks=pytest.mark.redis) if "redis" in kind else kind for kind in LAYERS]
)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def layer(kind: str, request: pytest.FixtureRequest) -> AsyncIterator[BaseChannelLayer]:
    redis_url = str(request.getfixturevalue("redis_url")) if "redis" in kind else None
    made = make_layer(kind, redis_url, group_expiry=GROUP_EXPIRY)
    yield made
    await made.flush()
    if hasattr(made, "close_pools"):
        await made.close_pools()
    elif hasattr(made, "close"):
        await made.close()


@pytest.mark.slow  # 5 s: the refresher's rounds run on the event loop's clock
async def test_a_registered_member_outlives_group_expiry_and_an_unregistered_one_does_not(
    layer: BaseChannelLayer, kind: str
) -> None:
    refresher = refresher_for(layer)
    assert refresher.interval == (health.DEFAULT_GROUP_EXPIRY if kind == "stock-redis-pubsub" else 2) / 2
    kept = Member("members", await layer.new_channel())
    left = Member("members", await layer.new_channel())
    for member in (kept, left):
        await layer.group_add(member.group, member.channel)
        refresher.register(member)
    # Halfway between two rounds (at 1 s and 2 s): "left" was last renewed at 1 s.
    await asyncio.sleep(1.5 * GROUP_EXPIRY / 2)
    refresher.unregister(left)
    await asyncio.sleep(2.5 * GROUP_EXPIRY - 1.5 * GROUP_EXPIRY / 2)
    await layer.group_send("members", {"type": "test.late", "n": 1})
    assert await receive(layer, kept.channel) == {"type": "test.late", "n": 1}
    if kind == "stock-redis-pubsub":
        # This layer never ends a membership (no group_expiry): the control cannot expire on it.
        assert await receive(layer, left.channel) == {"type": "test.late", "n": 1}
    else:
        assert await receives_nothing(layer, left.channel)
    refresher.unregister(kept)
    assert refresher.task is not None
    await asyncio.wait_for(refresher.task, 1)  # no socket left: the refresher stops


@pytest.mark.redis
async def test_a_registered_sockets_place_outlives_connection_expiry_and_an_unregistered_ones_does_not(
    redis_url: str,
) -> None:
    layer: Any = make_layer("redis", redis_url, connection_expiry=1)
    try:
        refresher = refresher_for(layer)
        assert refresher.interval == 0.5  # connection_expiry / 2, sooner than group_expiry / 2
        user = f"user-{uuid.uuid4().hex}"
        kept = Member("members", await layer.new_channel(), user)
        left = Member("members", await layer.new_channel(), user)  # as if its process had died
        for member in (kept, left):
            assert await layer.connection_add(user, member.channel, 5)
            refresher.register(member)
        refresher.unregister(left)
        await asyncio.sleep(2.5)
        assert await layer.connections(user) == [kept.channel]
        refresher.unregister(kept)
        assert refresher.task is not None
        await asyncio.wait_for(refresher.task, 1)
    finally:
        await layer.close()


async def test_the_refresher_is_one_per_loop_and_layer(layer: BaseChannelLayer) -> None:
    assert refresher_for(layer) is refresher_for(layer)
    assert refresher_for(layer).layer is layer


class CountingLayer:
    """A layer that records each renewal and how many were in flight with it."""

    group_expiry = 0.4

    def __init__(self) -> None:
        self.in_flight = 0
        self.most_in_flight = 0
        self.adds: list[tuple[float, str, str]] = []

    async def group_add(self, group: str, channel: str) -> None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.001)
            self.adds.append((asyncio.get_running_loop().time(), group, channel))
        finally:
            self.in_flight -= 1


async def until(condition: Any, timeout: float = 2) -> None:
    """Poll ``condition`` until it holds: the refresher runs on its own clock, with no event to wait on."""
    async with asyncio.timeout(timeout):
        while True:
            if condition():
                return
            await asyncio.sleep(0.01)


class PauseRecordingRefresher(MembershipRefresher):
    """Records the pauses a round takes between its batches: its schedule, which a loaded machine's
    clock would blur."""

    def __init__(self, layer: Any) -> None:
        super().__init__(layer)
        self.pauses: list[float] = []

    async def between_batches(self, seconds: float) -> None:
        self.pauses.append(seconds)
        await super().between_batches(seconds)


async def test_a_thousand_sockets_are_renewed_in_batches_within_a_quarter_of_the_interval() -> None:
    layer = CountingLayer()
    refresher = PauseRecordingRefresher(layer)
    members = [Member(f"user-{n}", f"specific.x!{n}") for n in range(1000)]
    for member in members:
        refresher.register(member)
    await until(lambda: len(layer.adds) >= len(members))  # the first round, at 0.2 s
    for member in members:
        refresher.unregister(member)
    assert refresher.task is not None
    await asyncio.wait_for(refresher.task, 1)
    assert sorted(channel for _, _, channel in layer.adds) == sorted(m.channel for m in members)
    assert layer.most_in_flight == health.REFRESH_BATCH
    # Ten batches, nine pauses between them, which together stay within a quarter of the interval.
    assert len(refresher.pauses) == len(members) // health.REFRESH_BATCH - 1
    assert all(pause > 0 for pause in refresher.pauses)
    assert sum(refresher.pauses) <= refresher.interval * health.REFRESH_SPREAD


async def test_a_layer_failure_is_counted_and_the_round_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="wsgateway")

    class FailingLayer(CountingLayer):
        async def group_add(self, group: str, channel: str) -> None:
            if group == "user-0":
                raise ConnectionError("the layer is down")
            await super().group_add(group, channel)

    layer = FailingLayer()
    refresher = MembershipRefresher(layer)
    members = [Member(f"user-{n}", f"specific.x!{n}") for n in range(3)]
    before = metrics.value(metrics.MEMBERSHIP_REFRESH_FAILED)
    for member in members:
        refresher.register(member)
    await until(lambda: metrics.value(metrics.MEMBERSHIP_REFRESH_FAILED) > before)
    for member in members:
        refresher.unregister(member)
    assert refresher.task is not None
    await asyncio.wait_for(refresher.task, 1)
    assert metrics.value(metrics.MEMBERSHIP_REFRESH_FAILED) - before == 1
    assert sorted(group for _, group, _ in layer.adds) == ["user-1", "user-2"]
    assert any("could not renew" in record.getMessage() for record in caplog.records)


def test_a_layer_without_group_expiry_is_renewed_on_channels_default() -> None:
    assert health.group_expiry_of(object()) == health.DEFAULT_GROUP_EXPIRY
    assert health.group_expiry_of(CountingLayer()) == 0.4


@pytest.mark.slow  # 5 s, as above
@pytest.mark.django_db(transaction=True)
async def test_a_socket_open_longer_than_group_expiry_keeps_receiving_pushes_and_broadcasts() -> None:
    from channels.layers import channel_layers
    from django.test import override_settings

    from tests.support.communicators import connected, create_user, frame
    from wsgateway.broadcasts import abroadcast
    from wsgateway.groups import apush

    config = {"BACKEND": "wsgateway.layers.InProcessChannelLayer", "CONFIG": {"group_expiry": GROUP_EXPIRY}}
    with override_settings(CHANNEL_LAYERS={"default": config}):
        ann = await create_user("ann")
        async with connected(ann) as socket:
            await asyncio.sleep(GROUP_EXPIRY * 2.5)
            await apush([ann.pk], "notifications", {"unread": 9})
            assert await socket.receive() == frame("notifications", {"unread": 9})
            # The group of every socket is renewed too.
            await abroadcast("notifications", {"announcement": "still here"})
            assert await socket.receive() == frame("notifications", {"announcement": "still here"})
        channel_layers.backends.clear()


@pytest.mark.redis
async def test_a_socket_whose_registrations_fail_costs_the_others_nothing(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(Member):
        def registrations(self) -> list[tuple[str, str]]:
            raise RuntimeError("a bug in a site's consumer")

    layer: Any = make_layer("redis", redis_url, connection_expiry=1)
    try:
        refresher = refresher_for(layer)
        user = f"user-{uuid.uuid4().hex}"
        kept = Member("members", await layer.new_channel(), user)
        broken = Broken("members", await layer.new_channel(), user)
        assert await layer.connection_add(user, kept.channel, 5)
        for member in (kept, broken):
            refresher.register(member)
        await asyncio.sleep(1.5)
        assert await layer.connections(user) == [kept.channel]
        assert any("registrations() of" in record.getMessage() for record in caplog.records)
        for member in (kept, broken):
            refresher.unregister(member)
    finally:
        await layer.close()
