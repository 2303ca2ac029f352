"""The cap after Redis lost its data: every open socket's place is back before a new one is given.

On wsgateway's Redis layer, with a real redis-server of this module's own (the tests FLUSHALL it, which
must not touch another module's Redis). Each test uses a prefix of its own. The live version, with
daphne processes, is tests/test_live_cap_after_loss.py.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis

from tests.support.servers import RedisServer, flushall
from wsgateway import health, metrics
from wsgateway.health import refresher_for, watchdog_for
from wsgateway.layers.extensions import PlacesLost
from wsgateway.layers.redis import RedisChannelLayer
from wsgateway.membership import Membership

pytestmark = [pytest.mark.redis, pytest.mark.timeout(30)]

CAP = 3
#: Short, so that the tests wait it out; the layer's default is 3 s.
GRACE = 0.3


@pytest.fixture(scope="module")
def own_redis() -> Iterator[str]:
    server = RedisServer().start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


def make(url: str, prefix: str) -> RedisChannelLayer:
    return RedisChannelLayer(hosts=[url], prefix=prefix, restore_grace=GRACE)


@pytest.fixture
async def layer(own_redis: str, prefix: str) -> AsyncIterator[RedisChannelLayer]:
    made = make(own_redis, prefix)
    yield made
    await made.close()


async def placed(layer: RedisChannelLayer, user: str, count: int) -> list[Membership]:
    """``count`` sockets of ``user`` holding their places, known to the refresher as a consumer's are."""
    members = []
    for _ in range(count):
        member = Membership(layer, await layer.new_channel())
        assert await member.register(user, CAP)
        members.append(member)
    return members


async def test_a_fresh_layer_gives_places_without_waiting(layer: RedisChannelLayer) -> None:
    # Nothing was ever placed: an empty Redis is no loss.
    assert await layer.connections_intact()
    assert await layer.connection_add("u", "specific.a!1", CAP)
    assert await layer.connections_intact()


async def test_a_loop_that_gave_back_all_its_places_has_nothing_to_lose(
    layer: RedisChannelLayer, own_redis: str, prefix: str
) -> None:
    # Its marker may expire unrenewed once its sockets are gone (no refresher runs): that, or a
    # FLUSHALL, must not hold up every process's connects for the grace.
    assert await layer.connection_add("u", "specific.a!1", CAP)
    await layer.connection_discard("u", "specific.a!1")
    flushall(own_redis)
    assert await layer.connections_intact()
    assert await layer.connection_add("u", "specific.a!2", CAP)
    client = redis.Redis.from_url(own_redis)
    try:
        assert not client.exists(f"{prefix}:restoring")
    finally:
        client.close()


async def test_after_a_flushall_the_layer_gives_no_place_until_the_loops_are_restored(
    layer: RedisChannelLayer, own_redis: str
) -> None:
    assert await layer.connection_add("u", "specific.a!1", CAP)
    flushall(own_redis)
    with pytest.raises(PlacesLost) as lost:
        await layer.connection_add("u", "specific.a!2", CAP)
    assert lost.value.own and 0 < lost.value.settle <= GRACE
    assert await layer.connections("u") == []  # nothing added
    assert not await layer.connections_intact()
    await layer.connection_restore([("u", "specific.a!1")])
    assert await layer.connections_intact()
    # Restored, but the other processes may not be yet: no place during the grace.
    with pytest.raises(PlacesLost) as settling:
        await layer.connection_add("u", "specific.a!2", CAP)
    assert not settling.value.own
    await asyncio.sleep(settling.value.settle + 0.05)
    assert await layer.connection_add("u", "specific.a!2", CAP)
    assert await layer.connections("u") == ["specific.a!1", "specific.a!2"]


async def test_during_the_grace_a_process_that_held_no_place_gives_none_either(
    layer: RedisChannelLayer, own_redis: str, prefix: str
) -> None:
    other = make(own_redis, prefix)  # another process: a loop state, a marker, of its own
    try:
        assert await layer.connection_add("u", "specific.a!1", CAP)
        flushall(own_redis)
        assert not await layer.connections_intact()  # the first to notice: the grace starts
        with pytest.raises(PlacesLost) as settling:
            await other.connection_add("u", "specific.b!1", CAP)
        assert not settling.value.own
        await asyncio.sleep(GRACE + 0.05)
        assert await other.connection_add("u", "specific.b!1", CAP)
    finally:
        await other.close()


async def test_a_renewal_does_not_vouch_for_places_it_did_not_put_back(
    layer: RedisChannelLayer, own_redis: str
) -> None:
    # The refresher renews a batch at a time: a renewal after the loss adds its batch back, but the
    # loss must still be noticed, for the batches it did not renew.
    assert await layer.connection_add("u", "specific.a!1", CAP)
    flushall(own_redis)
    await layer.connection_renew([("u", "specific.a!1")])
    assert not await layer.connections_intact()


async def test_a_connect_after_a_flushall_waits_for_the_open_sockets_places_and_is_refused_over_the_cap(
    layer: RedisChannelLayer, own_redis: str
) -> None:
    members = await placed(layer, "u", CAP)
    restored = metrics.value(metrics.PLACES_RESTORED)
    flushall(own_redis)
    late = [Membership(layer, await layer.new_channel()) for _ in range(5)]
    outcomes = await asyncio.gather(*(member.register("u", CAP) for member in late))
    assert outcomes == [False] * 5
    assert sorted(await layer.connections("u")) == sorted(m.channel_name for m in members)
    # Once, for every connect that found the places lost: the restore is shared.
    assert metrics.value(metrics.PLACES_RESTORED) - restored == CAP
    await members.pop().leave()
    assert await Membership(layer, await layer.new_channel()).register("u", CAP)
    for member in members:
        await member.leave()


async def test_the_watchdog_puts_the_places_back_without_a_connect(
    layer: RedisChannelLayer, own_redis: str
) -> None:
    members = await placed(layer, "u", 2)
    flushall(own_redis)
    await watchdog_for(layer).check_places()
    assert sorted(await layer.connections("u")) == sorted(m.channel_name for m in members)
    assert await layer.connections_intact()
    await watchdog_for(layer).check_places()  # intact: nothing to do
    for member in members:
        await member.leave()


async def test_a_connect_not_placed_yet_is_not_put_back(layer: RedisChannelLayer, own_redis: str) -> None:
    # Registered with the refresher before its place is given: a restore must not give it one.
    members = await placed(layer, "u", 1)
    waiting = Membership(layer, await layer.new_channel())
    waiting.registration = ("u", waiting.channel_name)
    waiting.keep()
    flushall(own_redis)
    await refresher_for(layer).restore_places()
    assert await layer.connections("u") == [members[0].channel_name]
    await waiting.leave()
    await members[0].leave()


async def test_a_restore_past_its_timeout_refuses_the_connect(
    layer: RedisChannelLayer, own_redis: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    members = await placed(layer, "u", 1)
    flushall(own_redis)
    monkeypatch.setattr(health, "RESTORE_TIMEOUT", 0.05)
    original = layer.connection_restore

    async def slow_restore(items: list[tuple[str, str]]) -> None:
        await asyncio.sleep(0.3)
        await original(items)

    monkeypatch.setattr(layer, "connection_restore", slow_restore)
    late = Membership(layer, await layer.new_channel())
    assert not await late.register("u", CAP)
    assert late.registration is None and late.refresher is None
    await members[0].leave()


def test_the_grace_outlasts_a_watchdog_round() -> None:
    # Every process with sockets notices the loss at its next probe: the grace must outlast that.
    grace: Any = RedisChannelLayer().restore_grace
    assert grace >= health.PROBE_INTERVAL + health.PROBE_TIMEOUT
