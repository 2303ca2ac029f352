"""The channel layer contract, as Channels documents it, run against every layer wsgateway offers
and the stock layers they replace.

Each test is one clause of the contract. Where a stock layer does not honour a
clause (RedisPubSubChannelLayer has no capacity and no expiry), the test says so
with a skip rather than passing quietly.
"""

from __future__ import annotations

import asyncio
import gc
import uuid
from typing import Any

import pytest
from channels.exceptions import ChannelFull
from channels.layers import BaseChannelLayer

from tests.support.clock import Clock
from wsgateway.layers import InProcessChannelLayer
from wsgateway.layers.extensions import (
    CONNECTIONS,
    COOLDOWN,
    GROUP_SEND_MANY,
    GROUP_SEND_MANY_SYNC,
    OVERFLOW,
    PROCESS_LOCAL,
    QUEUED,
    RECEIVE_NOWAIT,
    URGENT,
    CoolingDown,
    is_process_local,
    supports,
)

#: "redis-3": wsgateway's Redis layer spread over three Redis nodes (layers.redis_nodes).
LAYERS = ["stock-inmemory", "inprocess", "stock-redis-core", "stock-redis-pubsub", "redis", "redis-3"]
OURS_ON_REDIS = ("redis", "redis-3")
NO_CAPACITY_OR_EXPIRY = {"stock-redis-pubsub"}


@pytest.fixture(
    params=[pytest.param(kind, marks=pytest.mark.redis) if "redis" in kind else kind for kind in LAYERS]
)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def layer(layer_factory: Any) -> BaseChannelLayer:
    return layer_factory()  # type: ignore[no-any-return]


async def receive(layer: BaseChannelLayer, channel: str, timeout: float = 2) -> dict[str, Any]:
    return await asyncio.wait_for(layer.receive(channel), timeout)  # type: ignore[no-any-return]


async def receives_nothing(layer: BaseChannelLayer, channel: str, wait: float = 0.3) -> bool:
    try:
        await asyncio.wait_for(layer.receive(channel), wait)
    except TimeoutError:
        return True
    return False


def stock_gap(request: pytest.FixtureRequest, kind: str, kinds: set[str], reason: str) -> None:
    """Mark a clause a stock layer is seen to break; strict, so a fix upstream shows up here."""
    if kind in kinds:
        request.applymarker(pytest.mark.xfail(reason=reason, strict=True))


def needs_capacity_and_expiry(kind: str) -> None:
    if kind in NO_CAPACITY_OR_EXPIRY:
        pytest.skip(f"{kind} does not implement capacity or expiry (a documented gap of the stock layer)")


async def test_send_then_receive_returns_the_message(layer: BaseChannelLayer) -> None:
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "test.message", "text": "hello"})
    assert await receive(layer, channel) == {"type": "test.message", "text": "hello"}


async def test_messages_on_one_channel_arrive_in_order(layer: BaseChannelLayer) -> None:
    channel = await layer.new_channel()
    for n in range(10):
        await layer.send(channel, {"type": "test.message", "n": n})
    assert [(await receive(layer, channel))["n"] for _ in range(10)] == list(range(10))


async def test_new_channel_names_are_unique_and_carry_the_prefix(layer: BaseChannelLayer) -> None:
    names = {await layer.new_channel("test.prefix.") for _ in range(50)}
    assert len(names) == 50
    # The spec: a unique random string added to the prefix (the pub/sub layer also puts its own prefix first).
    assert all("test.prefix." in name for name in names)


async def test_receive_waits_for_a_message_sent_later(layer: BaseChannelLayer) -> None:
    channel = await layer.new_channel()
    waiting = asyncio.ensure_future(receive(layer, channel))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await layer.send(channel, {"type": "test.late"})
    assert await waiting == {"type": "test.late"}


async def test_receiver_gets_a_copy_not_the_senders_object(layer: BaseChannelLayer) -> None:
    channel = await layer.new_channel()
    message = {"type": "test.message", "nested": {"list": [1, 2]}}
    await layer.send(channel, message)
    message["nested"]["list"].append(3)
    assert await receive(layer, channel) == {"type": "test.message", "nested": {"list": [1, 2]}}


async def test_invalid_channel_and_group_names_are_rejected(
    layer: BaseChannelLayer, kind: str, request: pytest.FixtureRequest
) -> None:
    stock_gap(request, kind, {"stock-redis-pubsub"}, "RedisPubSubChannelLayer does not validate names")
    with pytest.raises(TypeError):
        await layer.send("bad name with spaces", {"type": "test"})
    with pytest.raises(TypeError):
        await layer.group_add("bad group!", await layer.new_channel())


async def test_group_send_reaches_every_member(layer: BaseChannelLayer) -> None:
    channels = [await layer.new_channel() for _ in range(3)]
    for channel in channels:
        await layer.group_add("test-group", channel)
    await layer.group_send("test-group", {"type": "test.broadcast", "n": 1})
    for channel in channels:
        assert await receive(layer, channel) == {"type": "test.broadcast", "n": 1}


async def test_group_discard_stops_delivery_to_that_member_only(layer: BaseChannelLayer) -> None:
    kept, dropped = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("test-group", kept)
    await layer.group_add("test-group", dropped)
    await layer.group_discard("test-group", dropped)
    await layer.group_send("test-group", {"type": "test.broadcast"})
    assert await receive(layer, kept) == {"type": "test.broadcast"}
    assert await receives_nothing(layer, dropped)


async def test_group_add_twice_delivers_once(layer: BaseChannelLayer) -> None:
    channel = await layer.new_channel()
    await layer.group_add("test-group", channel)
    await layer.group_add("test-group", channel)
    await layer.group_send("test-group", {"type": "test.once"})
    assert await receive(layer, channel) == {"type": "test.once"}
    assert await receives_nothing(layer, channel)


async def test_group_send_to_an_empty_group_and_discard_of_a_stranger_are_harmless(
    layer: BaseChannelLayer,
) -> None:
    await layer.group_send("nobody-here", {"type": "test.void"})
    await layer.group_discard("nobody-here", await layer.new_channel())


async def test_groups_are_independent(layer: BaseChannelLayer) -> None:
    first, second = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("group-a", first)
    await layer.group_add("group-b", second)
    await layer.group_send("group-a", {"type": "test.a"})
    assert await receive(layer, first) == {"type": "test.a"}
    assert await receives_nothing(layer, second)


async def test_send_to_a_full_channel_raises_channel_full(layer_factory: Any, kind: str) -> None:
    needs_capacity_and_expiry(kind)
    layer = layer_factory(capacity=3)
    channel = await layer.new_channel()
    for n in range(3):
        await layer.send(channel, {"type": "test.fill", "n": n})
    with pytest.raises(ChannelFull):
        await layer.send(channel, {"type": "test.fill", "n": 3})
    assert (await receive(layer, channel))["n"] == 0


async def test_group_send_skips_a_full_member_without_raising(
    layer_factory: Any, kind: str, request: pytest.FixtureRequest
) -> None:
    needs_capacity_and_expiry(kind)
    stock_gap(
        request,
        kind,
        {"stock-redis-core"},
        "RedisChannelLayer keeps all process-specific channels of a process in one Redis key, "
        "so capacity is counted per process: one full channel blocks its neighbours",
    )
    layer = layer_factory(capacity=1)
    full, free = await layer.new_channel(), await layer.new_channel()
    await layer.send(full, {"type": "test.fill"})
    await layer.group_add("test-group", full)
    await layer.group_add("test-group", free)
    await layer.group_send("test-group", {"type": "test.broadcast"})
    assert await receive(layer, free) == {"type": "test.broadcast"}
    assert await receive(layer, full) == {"type": "test.fill"}
    assert await receives_nothing(layer, full)


async def test_channel_capacity_patterns_override_the_default(
    layer_factory: Any, kind: str, request: pytest.FixtureRequest
) -> None:
    needs_capacity_and_expiry(kind)
    stock_gap(
        request,
        kind,
        {"stock-inmemory"},
        "InMemoryChannelLayer never compiles channel_capacity, so any pattern raises ValueError",
    )
    layer = layer_factory(capacity=100, channel_capacity={"tight.*": 1})
    tight = await layer.new_channel("tight.")
    await layer.send(tight, {"type": "test.fill"})
    with pytest.raises(ChannelFull):
        await layer.send(tight, {"type": "test.fill"})


async def test_messages_older_than_expiry_are_not_delivered(
    layer_factory: Any, kind: str, clock: Clock
) -> None:
    needs_capacity_and_expiry(kind)
    layer = layer_factory(expiry=1)
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "test.stale"})
    await clock.sleep(1.5)
    await layer.send(channel, {"type": "test.fresh"})
    assert await receive(layer, channel) == {"type": "test.fresh"}


async def test_memberships_older_than_group_expiry_end(layer_factory: Any, kind: str, clock: Clock) -> None:
    needs_capacity_and_expiry(kind)
    layer = layer_factory(group_expiry=1)
    channel = await layer.new_channel()
    await layer.group_add("test-group", channel)
    await clock.sleep(2.1)
    await layer.group_send("test-group", {"type": "test.after-expiry"})
    assert await receives_nothing(layer, channel)


async def test_each_message_goes_to_exactly_one_of_several_receivers(layer: BaseChannelLayer) -> None:
    channel = await layer.new_channel()
    receivers = [asyncio.ensure_future(layer.receive(channel)) for _ in range(3)]
    await asyncio.sleep(0.05)
    for n in range(3):
        await layer.send(channel, {"type": "test.message", "n": n})
    done = await asyncio.wait_for(asyncio.gather(*receivers), 3)
    assert sorted(message["n"] for message in done) == [0, 1, 2]


async def test_a_cancelled_receive_loses_no_message(layer: BaseChannelLayer) -> None:
    channel = await layer.new_channel()
    await layer.group_add("test-group", channel)
    pending = asyncio.ensure_future(layer.receive(channel))
    await asyncio.sleep(0.05)
    pending.cancel()
    await layer.send(channel, {"type": "test.after-cancel"})
    assert await receive(layer, channel) == {"type": "test.after-cancel"}


async def test_flush_empties_channels_and_groups(layer: BaseChannelLayer, kind: str) -> None:
    channel = await layer.new_channel()
    await layer.group_add("test-group", channel)
    await layer.send(channel, {"type": "test.before-flush"})
    await layer.flush()
    await layer.group_send("test-group", {"type": "test.after-flush"})
    assert await receives_nothing(layer, channel)


async def test_group_send_and_send_cross_processes(layer_factory: Any, kind: str) -> None:
    if "redis" not in kind:
        pytest.skip(f"{kind} is one process's layer by design")
    here, there = layer_factory(), layer_factory()  # two instances: two processes as far as Redis can tell
    member = await there.new_channel()
    await there.group_add("test-group", member)
    await here.group_send("test-group", {"type": "test.across"})
    assert await receive(there, member) == {"type": "test.across"}
    await here.send(member, {"type": "test.direct"})
    assert await receive(there, member) == {"type": "test.direct"}


async def test_each_declared_extension_is_there(layer: BaseChannelLayer, kind: str) -> None:
    # Callers trust the list and never probe for the method: a name listed must be a method.
    methods = [
        *(RECEIVE_NOWAIT, GROUP_SEND_MANY, GROUP_SEND_MANY_SYNC, OVERFLOW, CONNECTIONS, URGENT, QUEUED),
        COOLDOWN,
    ]
    declared = [name for name in methods if supports(layer, name)]
    method_names = {
        OVERFLOW: ["take_overflow"],
        URGENT: ["watch_urgent"],
        QUEUED: ["watch_queued"],
        CONNECTIONS: ["connection_add", "connection_discard", "connection_renew", "connections"],
        COOLDOWN: ["cooldown_start", "cooldown_left"],
    }
    assert all(
        callable(getattr(type(layer), method, None))
        for name in declared
        for method in method_names.get(name, [name])
    )
    # RedisPubSubChannelLayer lists its extensions on its per-loop layer only, not on its own class.
    assert supports(layer, "groups") == (kind != "stock-redis-pubsub")
    # Only wsgateway's own layers declare its extensions; a stock layer declares none of them.
    assert declared == (methods if kind in ("inprocess", *OURS_ON_REDIS) else [])
    assert supports(layer, PROCESS_LOCAL) == (kind == "inprocess")
    assert is_process_local(layer) == (kind in ("inprocess", "stock-inmemory"))


async def test_receive_nowait_hands_over_queued_messages_without_waiting(
    layer: BaseChannelLayer, kind: str
) -> None:
    if not supports(layer, RECEIVE_NOWAIT):
        pytest.skip(f"{kind} has no receive_nowait (a wsgateway extension)")
    channel = await layer.new_channel()
    assert layer.receive_nowait(channel) is None
    await layer.send(channel, {"type": "test.one"})
    await layer.send(channel, {"type": "test.two"})
    assert await receive(layer, channel) == {"type": "test.one"}
    assert layer.receive_nowait(channel) == {"type": "test.two"}
    assert layer.receive_nowait(channel) is None


@pytest.mark.parametrize("groups", [3, 50], ids=["a few groups", "a broadcast batch"])
async def test_group_send_many_reaches_each_groups_members_on_every_process_in_order(
    layer_factory: Any, kind: str, groups: int
) -> None:
    probe = layer_factory()
    if not supports(probe, GROUP_SEND_MANY):
        pytest.skip(f"{kind} has no group_send_many (a wsgateway extension)")
    processes = [probe, layer_factory()] if "redis" in kind else [probe]
    members: dict[str, tuple[BaseChannelLayer, str]] = {}
    for n in range(groups):
        process = processes[n % len(processes)]
        channel = await process.new_channel()
        await process.group_add(f"group-{n}", channel)
        members[f"group-{n}"] = (process, channel)
    stranger_process = processes[-1]
    stranger = await stranger_process.new_channel()
    await probe.group_send("group-0", {"type": "test.first"})
    await probe.group_send_many([(f"group-{n}", {"type": "test.batch", "n": n}) for n in range(groups)])
    await probe.group_send_many([("group-0", {"type": "test.last"})])
    for n, (process, channel) in enumerate(members.values()):
        if n == 0:
            assert await receive(process, channel) == {"type": "test.first"}
        assert await receive(process, channel) == {"type": "test.batch", "n": n}
    assert await receive(*members["group-0"]) == {"type": "test.last"}
    assert await receives_nothing(stranger_process, stranger)


async def test_group_send_many_with_an_invalid_group_name_raises_and_sends_none_of_the_batch(
    layer_factory: Any, kind: str
) -> None:
    layer = layer_factory()
    if not supports(layer, GROUP_SEND_MANY):
        pytest.skip(f"{kind} has no group_send_many (a wsgateway extension)")
    channel = await layer.new_channel()
    await layer.group_add("group-ok", channel)
    with pytest.raises(TypeError):
        await layer.group_send_many(
            [("group-ok", {"type": "test.first"}), ("bad name!", {"type": "test.bad"})]
        )
    assert await receives_nothing(layer, channel)


@pytest.mark.parametrize("groups", [1, 50], ids=["one group", "a broadcast batch"])
async def test_group_send_many_sync_from_a_thread_reaches_members_in_order(
    layer_factory: Any, kind: str, groups: int
) -> None:
    sender = layer_factory()
    # A process-local layer's other "process" is another thread of the same process.
    receiver = sender if is_process_local(sender) else layer_factory()
    if not supports(sender, GROUP_SEND_MANY_SYNC):
        pytest.skip(f"{kind} has no group_send_many_sync (a wsgateway extension)")
    channels = []
    for n in range(groups):
        channel = await receiver.new_channel()
        await receiver.group_add(f"group-{n}", channel)
        channels.append(channel)
    batch = [(f"group-{n}", {"type": "test.sync", "n": n}) for n in range(groups)]
    await asyncio.to_thread(sender.group_send_many_sync, batch)
    await asyncio.to_thread(sender.group_send_many_sync, [("group-0", {"type": "test.after"})])
    for n, channel in enumerate(channels):
        assert await receive(receiver, channel) == {"type": "test.sync", "n": n}
    assert await receive(receiver, channels[0]) == {"type": "test.after"}


async def test_group_send_many_sync_from_a_thread_wakes_a_waiting_receiver(
    layer_factory: Any, kind: str
) -> None:
    sender = layer_factory()
    receiver = sender if is_process_local(sender) else layer_factory()
    if not supports(sender, GROUP_SEND_MANY_SYNC):
        pytest.skip(f"{kind} has no group_send_many_sync (a wsgateway extension)")
    channel = await receiver.new_channel()
    await receiver.group_add("test-group", channel)
    waiting = asyncio.ensure_future(receive(receiver, channel))
    await asyncio.sleep(0.05)  # the receiver is parked on its inbox
    assert not waiting.done()
    await asyncio.to_thread(sender.group_send_many_sync, [("test-group", {"type": "test.wake"})])
    assert await waiting == {"type": "test.wake"}


# -- the connections extension: each user's sockets, on every process, under a cap ----------------


def needs_connections(layer: BaseChannelLayer, kind: str) -> None:
    if not supports(layer, CONNECTIONS):
        pytest.skip(f"{kind} has no connections extension (wsgateway counts per process on it)")


def fresh_user() -> str:
    # Registrations in Redis outlive a test's layers (until they expire): each test has its own user.
    return f"user-{uuid.uuid4().hex}"


async def test_connection_add_admits_up_to_the_limit_and_discard_frees_a_place(
    layer: BaseChannelLayer, kind: str
) -> None:
    needs_connections(layer, kind)
    user = fresh_user()
    channels = [await layer.new_channel() for _ in range(4)]
    assert [await layer.connection_add(user, channel, 3) for channel in channels] == [True, True, True, False]
    assert await layer.connections(user) == sorted(channels[:3])
    assert await layer.connection_add(user, channels[0], 3)  # already registered: still fits
    await layer.connection_discard(user, channels[1])
    await layer.connection_discard(user, "specific.never!registered")  # harmless
    assert await layer.connection_add(user, channels[3], 3)
    assert await layer.connections(user) == sorted([channels[0], channels[2], channels[3]])
    assert await layer.connections(fresh_user()) == []


async def test_connection_add_racing_for_the_last_places_admits_exactly_the_limit(
    layer_factory: Any, kind: str
) -> None:
    layer = layer_factory()
    needs_connections(layer, kind)
    # Two processes as far as Redis can tell, where the layer reaches other processes.
    processes = [layer, layer_factory()] if "redis" in kind else [layer]
    user = fresh_user()
    attempts = [(processes[n % len(processes)], f"specific.race!{n}") for n in range(60)]
    admitted = await asyncio.gather(*(process.connection_add(user, ch, 20) for process, ch in attempts))
    assert admitted.count(True) == 20
    assert await processes[-1].connections(user) == sorted(
        ch for (_, ch), ok in zip(attempts, admitted, strict=True) if ok
    )


async def test_registrations_are_shared_by_every_process_of_the_layer(layer_factory: Any, kind: str) -> None:
    if "redis" not in kind:
        pytest.skip(f"{kind} is one process's layer by design")
    here, there = layer_factory(), layer_factory()
    needs_connections(here, kind)
    user = fresh_user()
    assert await here.connection_add(user, "specific.here!1", 2)
    assert await there.connection_add(user, "specific.there!1", 2)
    assert not await here.connection_add(user, "specific.here!2", 2)
    assert (
        await here.connections(user)
        == await there.connections(user)
        == ["specific.here!1", "specific.there!1"]
    )


async def test_a_registration_not_renewed_expires_and_a_renewed_one_does_not(
    layer_factory: Any, kind: str
) -> None:
    layer = layer_factory(connection_expiry=1) if kind in OURS_ON_REDIS else layer_factory()
    needs_connections(layer, kind)
    if kind not in OURS_ON_REDIS:
        pytest.skip(f"{kind} keeps registrations in its process: they end with it, and never expire")
    user = fresh_user()
    assert await layer.connection_add(user, "specific.kept!1", 2)
    assert await layer.connection_add(user, "specific.dead!1", 2)  # its process dies: never renewed
    await asyncio.sleep(0.6)
    await layer.connection_renew([(user, "specific.kept!1")])
    await asyncio.sleep(0.6)
    assert await layer.connections(user) == ["specific.kept!1"]
    assert await layer.connection_add(user, "specific.new!1", 2)  # the dead one's place is free again
    assert not await layer.connection_add(user, "specific.new!2", 2)


# -- the cooldown extension: a user refused new places for a while, on every process -------------------


def needs_cooldown(layer: BaseChannelLayer, kind: str) -> None:
    if not supports(layer, COOLDOWN):
        pytest.skip(f"{kind} has no cooldown extension (wsgateway remembers cool-downs per process on it)")


async def test_a_user_cooling_down_gets_no_place_and_others_are_not_concerned(
    layer: BaseChannelLayer, kind: str
) -> None:
    needs_cooldown(layer, kind)
    user, other = fresh_user(), fresh_user()
    assert await layer.cooldown_left(user) == 0.0
    assert await layer.connection_add(user, "specific.before!1", 5)
    await layer.cooldown_start(user, 30)
    assert 29 < await layer.cooldown_left(user) <= 30
    with pytest.raises(CoolingDown) as refused:
        await layer.connection_add(user, "specific.during!1", 5)
    assert 29 < refused.value.retry_after <= 30
    assert await layer.connections(user) == ["specific.before!1"]  # nothing added; the open one stays
    assert await layer.connection_add(other, "specific.other!1", 5)
    assert await layer.cooldown_left(other) == 0.0


async def test_a_cooldown_ends_by_itself(layer_factory: Any, kind: str, clock: Clock) -> None:
    layer = layer_factory()
    needs_cooldown(layer, kind)
    user = fresh_user()
    await layer.cooldown_start(user, 0.3)
    with pytest.raises(CoolingDown):
        await layer.connection_add(user, "specific.during!1", 5)
    await clock.sleep(0.4)  # Redis expires its key by Redis' own clock: a real wait there
    assert await layer.cooldown_left(user) == 0.0
    assert await layer.connection_add(user, "specific.after!1", 5)


async def test_a_cooldown_is_shared_by_every_process_of_the_layer(layer_factory: Any, kind: str) -> None:
    if "redis" not in kind:
        pytest.skip(f"{kind} is one process's layer by design")
    here, there = layer_factory(), layer_factory()
    needs_cooldown(here, kind)
    user = fresh_user()
    await here.cooldown_start(user, 30)
    assert await there.cooldown_left(user) > 29
    with pytest.raises(CoolingDown):
        await there.connection_add(user, "specific.there!1", 5)


async def test_queued_pushes_give_the_cyclic_collector_nothing_to_track() -> None:
    # Not a contract clause, so run once: wsgateway's local delivery (shared by its two layers)
    # keeps a burst of queued pushes (dicts of strings, which CPython leaves untracked) out of
    # the collector's way, so a broadcast does not set off collections over a busy server's heap.
    layer = InProcessChannelLayer(capacity=5000)
    channels = [await layer.new_channel() for _ in range(100)]
    for n, channel in enumerate(channels):
        await layer.group_add(f"user-{n}", channel)
    for n, channel in enumerate(channels):  # each inbox made once, on its first message
        await layer.group_send(f"user-{n}", {"type": "gateway.push", "text": "hello"})
        assert await receive(layer, channel) == {"type": "gateway.push", "text": "hello"}
    gc.collect()
    before = len(gc.get_objects())
    await layer.group_send_many(
        [(f"user-{n}", {"type": "gateway.push", "text": f"frame {m}"}) for m in range(20) for n in range(100)]
    )
    assert len(gc.get_objects()) - before < 20  # 2000 messages queued
    assert await receive(layer, channels[0]) == {"type": "gateway.push", "text": "frame 0"}


# -- urgent events (a revocation): the ``urgent`` extension ---------------------------------------


def needs_urgent(layer: BaseChannelLayer, kind: str) -> None:
    if not supports(layer, URGENT):
        pytest.skip(f"{kind} queues a revocation like any message (a documented gap of the stock layer)")


REVOKE = {"type": "gateway.revoke", "error": "revoked", "reason": "", "code": 4401}


async def test_an_urgent_event_is_outside_the_capacity_and_received_before_the_queue(
    layer_factory: Any, kind: str
) -> None:
    layer = layer_factory(capacity=3)
    needs_urgent(layer, kind)
    channel = await layer.new_channel()
    await layer.group_add("urgent", channel)
    probe = await layer.new_channel()
    await layer.group_add("probe", probe)
    for n in range(5):  # two past the capacity: dropped
        await layer.group_send("urgent", {"type": "test.push", "n": n})
    await layer.group_send("urgent", REVOKE)
    # The Redis layer delivers in its reader task, in the order sent: once a later message has come,
    # all six have (a receive before then could take a push that came ahead of the revocation).
    await layer.group_send("probe", {"type": "test.probe"})
    assert await receive(layer, probe) == {"type": "test.probe"}
    assert await receive(layer, channel) == REVOKE
    assert [(await receive(layer, channel))["n"] for _ in range(3)] == [0, 1, 2]
    assert await receives_nothing(layer, channel)


async def test_an_urgent_event_outlives_the_expiry_of_the_messages_queued_with_it(
    layer_factory: Any, kind: str, clock: Clock
) -> None:
    layer = layer_factory(expiry=1)
    needs_urgent(layer, kind)
    channel = await layer.new_channel()
    await layer.group_add("urgent", channel)
    await layer.group_send("urgent", {"type": "test.push"})
    await layer.group_send("urgent", REVOKE)
    await asyncio.sleep(0.2)  # the Redis layer delivers in its reader task
    await clock.sleep(1.5)  # past the expiry
    assert await receive(layer, channel) == REVOKE
    assert await receives_nothing(layer, channel)  # the push expired
    assert layer.take_overflow(channel)


async def test_a_watched_channel_is_handed_urgent_events_as_they_come_and_nothing_else(
    layer_factory: Any, kind: str
) -> None:
    layer = layer_factory(capacity=2)
    needs_urgent(layer, kind)
    channel = await layer.new_channel()
    await layer.group_add("urgent", channel)
    await layer.group_send("urgent", {**REVOKE, "n": 0})  # before the watch: queued, handed over by it
    handed: list[dict[str, Any]] = []
    all_four = asyncio.Event()

    def watcher(event: dict[str, Any]) -> None:
        handed.append(event)
        if len(handed) == 4:
            all_four.set()

    layer.watch_urgent(channel, watcher)
    for n in range(1, 4):
        await layer.group_send("urgent", {"type": "test.push", "n": n})
        await layer.group_send("urgent", {**REVOKE, "n": n})
    await asyncio.wait_for(all_four.wait(), 2)
    assert [event["n"] for event in handed] == [0, 1, 2, 3]
    assert [(await receive(layer, channel))["n"] for _ in range(2)] == [1, 2]  # the queue, as ever
    layer.watch_urgent(channel, None)
    await layer.group_send("urgent", REVOKE)  # unwatched: queued again
    assert await receive(layer, channel) == REVOKE
    assert len(handed) == 4


async def test_urgent_events_queued_for_an_unwatched_channel_are_bounded_and_deduplicated(
    layer_factory: Any, kind: str
) -> None:
    from wsgateway.layers.base import MAX_URGENT

    layer = layer_factory()
    needs_urgent(layer, kind)
    channel = await layer.new_channel()
    await layer.group_add("urgent", channel)
    for n in range(MAX_URGENT + 5):
        await layer.group_send("urgent", {**REVOKE, "n": n})
        await layer.group_send("urgent", {**REVOKE, "n": n})  # the same again: queued once
    await asyncio.sleep(0.2)
    received = [(await receive(layer, channel))["n"] for _ in range(MAX_URGENT)]
    assert received == list(range(MAX_URGENT))
    assert await receives_nothing(layer, channel)
    assert layer.take_overflow(channel)  # what was dropped is reported: the socket re-checks its login


async def test_a_receive_that_comes_when_a_sweep_is_due_still_gets_what_is_sent_next(
    layer_factory: Any, kind: str, clock: Clock
) -> None:
    """The sweep forgets idle inboxes: a receive must wait on the inbox a later message goes to (a
    requester's reply channel, read after an idle minute, waited for ever once)."""
    needs_capacity_and_expiry(kind)
    layer = layer_factory(expiry=1)
    channel = await layer.new_channel()
    await clock.sleep(1.5)  # a sweep is due, and this channel's inbox is idle
    waiting = asyncio.ensure_future(layer.receive(channel))
    await asyncio.sleep(0.05)
    await layer.send(channel, {"type": "test.after"})
    assert await asyncio.wait_for(waiting, 2) == {"type": "test.after"}


# -- a listener told of what is queued: the ``queued`` extension -----------------------------------


async def test_a_listened_channel_is_told_of_each_message_queued_and_no_longer_once_let_go(
    layer_factory: Any, kind: str
) -> None:
    layer = layer_factory()
    if not supports(layer, QUEUED):
        pytest.skip(f"{kind} has no listener: a consumer waits in its receive")
    channel = await layer.new_channel()
    await layer.group_add("told", channel)
    await layer.send(channel, {"type": "test.push", "n": 0})  # before the listener: told at once
    told: list[int] = []
    heard = asyncio.Event()

    def listener() -> None:
        told.append(len(told))
        heard.set()

    async def told_of(count: int) -> None:
        # The Redis layer delivers a group's messages in its reader task, a send to its own directly.
        async with asyncio.timeout(2):
            while len(told) < count:
                heard.clear()
                await heard.wait()

    layer.watch_queued(channel, listener)
    assert told == [0]
    await layer.group_send("told", {"type": "test.push", "n": 1})
    await told_of(2)
    await layer.send(channel, {"type": "test.push", "n": 2})
    assert told == [0, 1, 2]
    await layer.group_send("told", REVOKE)  # urgent, and nobody watches for it: queued, and told
    await told_of(4)
    assert [layer.receive_nowait(channel) for _ in range(4)] == [
        REVOKE,
        *({"type": "test.push", "n": n} for n in range(3)),
    ]
    assert layer.receive_nowait(channel) is None
    layer.watch_queued(channel, None)
    await layer.send(channel, {"type": "test.push", "n": 3})
    assert await receive(layer, channel) == {"type": "test.push", "n": 3}
    assert len(told) == 4


async def test_a_listened_channel_is_not_forgotten_by_a_sweep(
    layer_factory: Any, kind: str, clock: Clock
) -> None:
    layer = layer_factory(expiry=1)
    if not supports(layer, QUEUED):
        pytest.skip(f"{kind} has no listener: a consumer waits in its receive")
    channel = await layer.new_channel()
    told: list[None] = []
    layer.watch_queued(channel, lambda: told.append(None))
    await clock.sleep(1.5)
    await layer.group_send("nobody", {"type": "test.push"})  # a sweep is due: it runs
    await layer.send(channel, {"type": "test.push"})
    assert told == [None]
    assert layer.receive_nowait(channel) == {"type": "test.push"}
