"""One Redis node of three stopped and started under real sockets (GatewayConsumer, through the
communicator, on wsgateway's Redis layer over three redis-servers of this module's own): the watchdog
resyncs the sockets whose user group is on that node, and no other, and nothing is lost.

A ``notify()`` to each user during the outage reaches the sockets whose group is on a node that stayed
up at once, and those on the node that was down in their resync's ``missed``. Its failed pushes are
taken from the process's repairs first, as if a worker had made them: what is tested is the watchdog's
resync, not the repair that would follow it here (a second catch-up, wsgateway.repairs).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack
from typing import Any

import pytest
import redis
from channels.db import database_sync_to_async
from channels.layers import channel_layers, get_channel_layer
from django import db
from django.test import override_settings

from tests.support.communicators import Socket, connected, create_user, frame
from tests.support.servers import RedisServer
from wsgateway import health, repairs
from wsgateway.consumers import GatewayConsumer
from wsgateway.groups import user_group
from wsgateway.health import watchdog_for
from wsgateway.layers.redis import RedisChannelLayer
from wsgateway.layers.redis_nodes import node_of
from wsgateway.notifications import notify

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

NODES = 3
#: Users (one socket each) whose group is on each node.
PER_NODE = 3
EVERY = "wsgateway.all"
#: The node stopped: neither the first (which keeps the registries: places, presence, status) nor the
#: one of every socket's group (its outage would take every socket, as a missed broadcast must).
DOWN = next(node for node in range(NODES) if node not in (0, node_of(EVERY, NODES)))


@pytest.fixture(scope="module")
def servers() -> Iterator[list[RedisServer]]:
    started = [RedisServer().start() for _ in range(NODES)]
    try:
        yield started
    finally:
        for server in started:
            server.stop()


async def until(condition: Callable[[], bool], within: float) -> None:
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 (a state of the watchdog's own: no event to wait on)
            await asyncio.sleep(0.02)


async def users_on_each_node() -> list[list[Any]]:
    """PER_NODE users whose group is carried by each node (users are made until each node has them)."""
    found: list[list[Any]] = [[] for _ in range(NODES)]
    n = 0
    while min(len(users) for users in found) < PER_NODE:
        n += 1
        user = await create_user(f"user{n}")
        node = node_of(user_group(user.pk), NODES)
        if len(found[node]) < PER_NODE:
            found[node].append(user)
    return found


async def caught_up(socket: Socket, within: float) -> list[str]:
    """The resync frame, then the connect frames again; the labels of the notifications it missed."""
    assert await socket.receive(within) == frame("gateway", {"resync": True})
    notifications = await socket.receive()
    assert notifications["channel"] == "notifications"
    assert (await socket.receive())["channel"] == "clipboard"
    return [item["label"] for item in notifications["payload"]["missed"]]


async def pushed(socket: Socket) -> str:
    label: str = (await socket.receive())["payload"]["last"]["label"]
    return label


async def test_a_node_back_resyncs_the_sockets_with_a_group_on_it_and_no_other_and_nothing_is_lost(
    servers: list[RedisServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(health, "PROBE_INTERVAL", 0.1)
    monkeypatch.setattr(health, "PROBE_TIMEOUT", 0.5)
    resynced: list[Any] = []
    real_resync = GatewayConsumer.resync

    async def resync(self: GatewayConsumer) -> None:  # what the watchdog calls, and only it
        resynced.append(self.user.pk)
        await real_resync(self)

    monkeypatch.setattr(GatewayConsumer, "resync", resync)
    layer_config = {
        "BACKEND": "wsgateway.layers.redis.RedisChannelLayer",
        "CONFIG": {"hosts": [server.url for server in servers], "prefix": f"nodes{time.monotonic_ns()}"},
    }
    with override_settings(CHANNEL_LAYERS={"default": layer_config}):
        try:
            by_node = await users_on_each_node()
            users = [user for users in by_node for user in users]
            up = [user for node, users in enumerate(by_node) if node != DOWN for user in users]
            async with AsyncExitStack() as stack:
                sockets = {user.pk: await stack.enter_async_context(connected(user)) for user in users}
                watchdog = watchdog_for(get_channel_layer())
                await until(lambda: watchdog.probe_channel is not None, 10)  # a probe went through
                servers[DOWN].stop()
                await until(lambda: not watchdog.healthy, 10)
                assert watchdog.down == {DOWN}  # the probe named the node it could not go through
                for user in users:
                    await database_sync_to_async(notify)(user, f"during, for {user.username}")
                for user in up:  # their groups' node is up: pushed at once
                    assert await pushed(sockets[user.pk]) == f"during, for {user.username}"
                assert sorted(repairs.PENDING.take()) == sorted(user.pk for user in by_node[DOWN])
                servers[DOWN].start()
                for user in by_node[DOWN]:
                    assert await caught_up(sockets[user.pk], within=30) == [f"during, for {user.username}"]
                await until(lambda: watchdog.resyncing is not None and watchdog.resyncing.done(), 10)
                for user in up:
                    assert await sockets[user.pk].receive_nothing(0.5)  # missed nothing: not resynced
                assert sorted(resynced) == sorted(user.pk for user in by_node[DOWN])  # once each
                # Every group live again, on its own node.
                for user in users:
                    await database_sync_to_async(notify)(user, f"after, for {user.username}")
                for user in users:
                    assert await pushed(sockets[user.pk]) == f"after, for {user.username}"
        finally:
            channel_layers.backends.clear()
            if servers[DOWN].proc is None:
                servers[DOWN].start()


async def test_a_batch_from_sync_code_reaches_the_nodes_that_are_up_when_one_is_down(
    servers: list[RedisServer],
) -> None:
    """``notify()`` to many users from a view or a worker is one ``group_send_many_sync``: its share for the
    node that is down fails (and is repaired), and the shares of the others are delivered all the same."""
    layer = RedisChannelLayer(hosts=[server.url for server in servers], prefix=f"sync{time.monotonic_ns()}")
    try:
        groups = [f"wsgateway.user.{n}" for n in range(1, 40)]
        assert {node_of(group, NODES) for group in groups} == set(range(NODES))
        channels = {group: await layer.new_channel() for group in groups}
        for group, channel in channels.items():
            await layer.group_add(group, channel)
        servers[DOWN].stop()
        for count in (NODES, len(groups)):  # a PUBLISH per group, then the broadcasts of each node
            items = [(group, {"type": "gateway.push", "n": count}) for group in groups[:count]]
            with pytest.raises(redis.exceptions.ConnectionError):
                await asyncio.to_thread(layer.group_send_many_sync, items)
            for group, _ in items:
                if node_of(group, NODES) != DOWN:
                    message = await asyncio.wait_for(layer.receive(channels[group]), 5)
                    assert message["n"] == count
    finally:
        servers[DOWN].start()
        await layer.close()


async def test_a_subscription_that_dropped_and_came_back_unseen_resyncs_the_sockets_of_its_node(
    servers: list[RedisServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis closes the loop's pub/sub connection to one node (CLIENT KILL), and redis-py has it back
    within a second, before any probe fails twice: a push published in between reached nobody, and its
    publish did not fail (nothing for the repairs). The subscriber counted the drop (the layer's
    ``node_drops``), and the watchdog resyncs the sockets with a group on that node."""
    monkeypatch.setattr(health, "PROBE_INTERVAL", 0.1)
    monkeypatch.setattr(health, "PROBE_TIMEOUT", 0.5)
    resynced: list[Any] = []
    real_resync = GatewayConsumer.resync

    async def resync(self: GatewayConsumer) -> None:
        resynced.append(self.user.pk)
        await real_resync(self)

    monkeypatch.setattr(GatewayConsumer, "resync", resync)
    layer_config = {
        "BACKEND": "wsgateway.layers.redis.RedisChannelLayer",
        "CONFIG": {"hosts": [server.url for server in servers], "prefix": f"drop{time.monotonic_ns()}"},
    }
    with override_settings(CHANNEL_LAYERS={"default": layer_config}):
        try:
            by_node = await users_on_each_node()
            users = [user for users in by_node for user in users]
            async with AsyncExitStack() as stack:
                sockets = {user.pk: await stack.enter_async_context(connected(user)) for user in users}
                watchdog = watchdog_for(get_channel_layer())
                await until(lambda: watchdog.drops_seen is not None, 10)  # a probe passed and looked
                killed: list[int] = []

                def drop_then_notify() -> None:
                    client = redis.Redis.from_url(servers[DOWN].url)
                    try:
                        killed.append(client.client_kill_filter(_type="pubsub"))  # this loop's, on that node
                        for user in by_node[DOWN]:
                            notify(user, f"in the gap, for {user.username}")
                    finally:
                        client.close()
                        db.connection.close()
                        if db.connection.connection is not None:
                            # Django keeps an in-memory SQLite database's connection open (closing it
                            # would drop a database of its own); this thread's would then be left to the
                            # collector, which Python 3.13 warns of. The test's others keep it alive.
                            db.connection.connection.close()

                # In a thread, with this loop held still until it is done: the subscriber cannot reconnect
                # before the pushes are published (redis-py reconnects at once, faster than a notify()).
                worker = threading.Thread(target=drop_then_notify)
                worker.start()
                worker.join(30)
                assert killed == [1]
                assert not repairs.PENDING  # published without an error, to nobody
                for user in by_node[DOWN]:
                    missed = await caught_up(sockets[user.pk], within=15)
                    assert missed == [f"in the gap, for {user.username}"]
                await until(lambda: watchdog.resyncing is not None and watchdog.resyncing.done(), 10)
                for user in users:
                    if user not in by_node[DOWN]:
                        assert await sockets[user.pk].receive_nothing(0.3)
                assert sorted(resynced) == sorted(user.pk for user in by_node[DOWN])
        finally:
            channel_layers.backends.clear()
