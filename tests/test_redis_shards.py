"""wsgateway's Redis layer on three Redis nodes (redis-servers of this module's own), two layers as two
processes: every kind of delivery reaches its members across them, each node carries only the names
that hash to it (seen with PUBSUB CHANNELS and with a spy subscribed to everything on each node), and
one node stopped and started again is an outage the watchdog sees, and recovers from, while the other
nodes' groups go on being delivered.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import redis
from redis import asyncio as aioredis

from tests.support.servers import RedisServer
from wsgateway import health
from wsgateway.health import LayerWatchdog
from wsgateway.layers.redis import BROADCAST_MIN, RedisChannelLayer
from wsgateway.layers.redis_nodes import node_of

pytestmark = [pytest.mark.redis, pytest.mark.timeout(90)]

NODES = 3


@pytest.fixture(scope="module")
def servers() -> Iterator[list[RedisServer]]:
    started = [RedisServer().start() for _ in range(NODES)]
    try:
        yield started
    finally:
        for server in started:
            server.stop()


@pytest.fixture
async def pair(servers: list[RedisServer]) -> AsyncIterator[Any]:
    """Two layers on the three nodes, as two processes would hold them; a fresh prefix per test."""
    prefix = f"shards{time.monotonic_ns()}"
    layers = [RedisChannelLayer(hosts=[s.url for s in servers], prefix=prefix) for _ in range(2)]
    try:
        yield layers
    finally:
        for layer in layers:
            await layer.close()


class Spy:
    """A PSUBSCRIBE to every channel of a prefix on one node: which channels were published there."""

    def __init__(self, url: str, prefix: str) -> None:
        self.client = aioredis.Redis.from_url(url)
        self.pubsub = self.client.pubsub()
        self.prefix = prefix
        self.seen: list[str] = []
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> Spy:
        await self.pubsub.psubscribe(f"{self.prefix}:*")
        self.task = asyncio.get_running_loop().create_task(self.read())
        return self

    async def read(self) -> None:
        while True:
            message = await self.pubsub.get_message(timeout=None)
            if message is not None and message["type"] == "pmessage":
                self.seen.append(message["channel"].decode())

    async def stop(self) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.pubsub.aclose()
        await self.client.aclose()


async def receive(layer: RedisChannelLayer, channel: str) -> dict[str, Any]:
    return await asyncio.wait_for(layer.receive(channel), 5)


def groups_on_each_node(count: int) -> list[list[str]]:
    """``count`` user groups carried by each node."""
    found: list[list[str]] = [[] for _ in range(NODES)]
    n = 0
    while min(len(groups) for groups in found) < count:
        n += 1
        group = f"wsgateway.user.{n}"
        if len(found[node_of(group, NODES)]) < count:
            found[node_of(group, NODES)].append(group)
    return found


async def test_every_delivery_reaches_its_members_across_two_processes_each_on_its_node(
    pair: list[RedisChannelLayer], servers: list[RedisServer]
) -> None:
    first, second = pair
    spies = [await Spy(server.url, first.prefix).start() for server in servers]
    try:
        by_node = groups_on_each_node(2)
        groups = [group for groups in by_node for group in groups]
        here = {group: await first.new_channel() for group in groups}
        there = {group: await second.new_channel() for group in groups}
        for group in groups:
            await first.group_add(group, here[group])
            await second.group_add(group, there[group])
        # group_send, from each process, to every group: both members of each get it.
        for sender in pair:
            for group in groups:
                await sender.group_send(group, {"type": "gateway.push", "g": group})
            for group in groups:
                assert (await receive(first, here[group]))["g"] == group
                assert (await receive(second, there[group]))["g"] == group
        # send to a channel of the other process: through the node of that process's inbox.
        await first.send(there[groups[0]], {"type": "gateway.push", "n": "direct"})
        assert (await receive(second, there[groups[0]]))["n"] == "direct"
        # group_send_many, a few (a PUBLISH per group) and many (the broadcasts of each group's node).
        await second.group_send_many([(group, {"type": "gateway.push", "few": group}) for group in groups])
        many = [(groups[i % len(groups)], {"type": "gateway.push", "i": i}) for i in range(BROADCAST_MIN * 4)]
        await second.group_send_many(many)
        second.group_send_many_sync([(group, {"type": "gateway.push", "sync": group}) for group in groups])
        for layer, channels in ((first, here), (second, there)):
            for group in groups:
                assert (await receive(layer, channels[group]))["few"] == group
                expected = [i for i, (g, _) in enumerate(many) if g == group]
                got = [(await receive(layer, channels[group]))["i"] for _ in expected]
                assert got == expected  # in order, per group
                assert (await receive(layer, channels[group]))["sync"] == group
        await asyncio.sleep(0.2)  # the spies' last reads
        # Each node carried its own groups' publishes, and no other group's.
        for node, spy in enumerate(spies):
            group_channels = {c for c in spy.seen if c.startswith(f"{first.prefix}:g:")}
            assert group_channels == {f"{first.prefix}:g:{g}" for g in by_node[node]}
            assert f"{first.prefix}:b" in spy.seen  # this node's share of the broadcast
        inbox = f"{first.prefix}:p:{second._state().id}"
        carried = [node for node, spy in enumerate(spies) if inbox in spy.seen]
        assert carried == [node_of(second._state().id, NODES)]
        # Each node holds the subscriptions of its own groups, the broadcasts and the inboxes it carries.
        for node, server in enumerate(servers):
            client = redis.Redis.from_url(server.url)
            try:
                channels = {c.decode() for c in client.pubsub_channels(f"{first.prefix}:*")}
            finally:
                client.close()
            ids = [layer._state().id for layer in pair]
            expected = {f"{first.prefix}:g:{g}" for g in by_node[node]} | {f"{first.prefix}:b"}
            expected |= {f"{first.prefix}:p:{i}" for i in ids if node_of(i, NODES) == node}
            assert channels == expected
    finally:
        for spy in spies:
            await spy.stop()


async def until(condition: Callable[[], bool], within: float) -> None:
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 (a state of the layer's own: no event to wait on)
            await asyncio.sleep(0.02)


class Socket:
    def __init__(self) -> None:
        self.resyncs = 0

    async def resync(self) -> None:
        self.resyncs += 1


async def test_one_node_down_is_an_outage_the_others_go_on_and_its_groups_come_back(
    servers: list[RedisServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(health, "PROBE_TIMEOUT", 0.5)
    monkeypatch.setattr(health, "PROBE_INTERVAL", 3600)  # its rounds are driven here
    layer = RedisChannelLayer(hosts=[s.url for s in servers], prefix=f"outage{time.monotonic_ns()}")
    watchdog = LayerWatchdog(layer)
    sockets = [Socket() for _ in range(5)]
    try:
        by_node = groups_on_each_node(1)
        channels = [await layer.new_channel() for _ in range(NODES)]
        for node in range(NODES):
            await layer.group_add(by_node[node][0], channels[node])
        for socket in sockets:
            watchdog.register(socket)
        assert await watchdog.check()
        assert len(watchdog.probe_groups) == NODES  # one probe group per node
        assert sorted(node_of(g, NODES) for g in watchdog.probe_groups) == list(range(NODES))
        down = 1
        servers[down].stop()
        with pytest.raises(Exception):  # noqa: B017 (any failure of the layer; redis-py's kinds vary)
            await layer.group_send(by_node[down][0], {"type": "gateway.push", "n": "lost"})
        with pytest.raises(Exception):  # noqa: B017
            await watchdog.check()  # the probe through the node that is down fails
        watchdog.report_failure(ConnectionError("the probe failed"))
        assert not watchdog.healthy
        # The other nodes' groups are delivered all along.
        for node in (0, 2):
            await layer.group_send(by_node[node][0], {"type": "gateway.push", "n": "during"})
            assert (await receive(layer, channels[node]))["n"] == "during"
        servers[down].start()
        async with asyncio.timeout(30):
            while True:
                try:
                    if await watchdog.check():
                        break
                except Exception:
                    await asyncio.sleep(0.05)
        watchdog.recovered()
        assert watchdog.healthy
        assert watchdog.resyncing is not None
        await watchdog.resyncing
        assert [socket.resyncs for socket in sockets] == [1] * len(sockets)  # the catch-up, once each
        # The node's group is live again for the member it had: redis-py re-subscribed it.
        await until(lambda: not layer._state().failing, 10)
        await layer.group_send(by_node[down][0], {"type": "gateway.push", "n": "back"})
        assert (await receive(layer, channels[down]))["n"] == "back"
    finally:
        for socket in sockets:
            watchdog.unregister(socket)
        if watchdog.task is not None:
            watchdog.task.cancel()
            await asyncio.gather(watchdog.task, return_exceptions=True)
        await layer.close()
        if servers[1].proc is None:
            servers[1].start()
