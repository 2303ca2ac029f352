"""What wsgateway's Redis layer holds for one event loop: per Redis node a pool of connections, its
publisher and its subscriber; the loop's one :class:`~wsgateway.layers.base.LocalDelivery`, which every
subscriber feeds; and the registries' scripts, on the first node (wsgateway.layers.redis_registries).
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from redis import asyncio as aioredis

from .base import LocalDelivery
from .redis_nodes import Host, node_of
from .redis_pool import GatewayPool
from .redis_publisher import Publisher
from .redis_scripts import (
    CONNECTION_ADD,
    CONNECTION_CHECK,
    CONNECTION_RENEW,
    CONNECTIONS,
    PRESENCE_JOIN,
    PRESENCE_LEAVE,
    PRESENCE_RENEW,
    PRESENCE_SOCKETS,
    PRESENCE_SWEEP,
    STATUS_LIVE,
    STATUS_PUBLISH,
)
from .redis_subscriber import Subscriber


class Node:
    """One Redis node as one event loop uses it: a pool of connections, its publishes coalesced, and one
    pub/sub connection with its reader."""

    def __init__(self, host: Host, pool_options: dict[str, Any], subscriber: Subscriber) -> None:
        url, connection_kwargs = host
        self.pool = GatewayPool.from_url(url, **{**pool_options, **connection_kwargs})
        self.client = aioredis.Redis.from_pool(self.pool)
        self.publisher = Publisher(self.client)
        self.subscriber = subscriber

    async def close(self) -> None:
        await self.subscriber.close()
        await self.client.aclose()


class LoopState:
    """Everything of the layer that belongs to one event loop."""

    def __init__(
        self,
        hosts: list[Host],
        pool_options: dict[str, Any],
        prefix: str,
        broadcast_channel: str,
        local: LocalDelivery,
    ) -> None:
        self.id = secrets.token_hex(6)
        self.prefix = prefix
        self.broadcast_channel = broadcast_channel
        self.local = local
        self.nodes = [
            Node(host, pool_options, Subscriber(*host, local, prefix, self.inbox_channel, broadcast_channel))
            for host in hosts
        ]
        #: The registries live on the first node: its pool and client are the loop's ``pool`` and ``client``.
        self.pool = self.nodes[0].pool
        self.client = self.nodes[0].client
        self.connection_add = self.client.register_script(CONNECTION_ADD)
        self.connection_renew = self.client.register_script(CONNECTION_RENEW)
        self.connection_check = self.client.register_script(CONNECTION_CHECK)
        self.connections = self.client.register_script(CONNECTIONS)
        self.presence_join = self.client.register_script(PRESENCE_JOIN)
        self.presence_leave = self.client.register_script(PRESENCE_LEAVE)
        self.presence_renew = self.client.register_script(PRESENCE_RENEW)
        self.presence_sweep = self.client.register_script(PRESENCE_SWEEP)
        self.presence_sockets = self.client.register_script(PRESENCE_SOCKETS)
        self.status_publish = self.client.register_script(STATUS_PUBLISH)
        self.status_live = self.client.register_script(STATUS_LIVE)
        #: The places this loop holds, ``(user, channel)``: while there are any, its marker is kept with
        #: them, and a marker gone is data lost. Without any, there is nothing to lose (and its marker
        #: may expire unrenewed).
        self.places: set[tuple[str, str]] = set()
        #: Every node's subscriber runs (they run until the loop's state is closed).
        self.started = False

    @property
    def marker(self) -> str:
        return f"{self.prefix}:e:{self.id}"

    @property
    def inbox_channel(self) -> str:
        return f"{self.prefix}:p:{self.id}"

    @property
    def failing(self) -> bool:
        """A subscriber's connection failed and is not back yet."""
        return any(node.subscriber.failing for node in self.nodes)

    async def ensure_subscriber(self) -> None:
        """Start every node's subscriber: the broadcasts on each, the loop's inbox on its own node."""
        if self.started:
            return  # asked by every receive, connect and join
        inbox_node = node_of(self.id, len(self.nodes))
        own = [self.inbox_channel, self.broadcast_channel]
        starts = [
            node.subscriber.start(own if index == inbox_node else [self.broadcast_channel])
            for index, node in enumerate(self.nodes)
        ]
        if len(starts) == 1:
            await starts[0]
        else:
            # All of them, even when one fails: those that started stay so; the next call retries the rest.
            failed = [result for result in await asyncio.gather(*starts, return_exceptions=True) if result]
            if failed:
                raise failed[0]
        self.started = all(node.subscriber.reader is not None for node in self.nodes)

    async def close(self) -> None:
        failed: list[Exception] = []
        for node in self.nodes:
            try:
                await node.close()
            except Exception as exc:  # one node's connection already dropped: close the others all the same
                failed.append(exc)
        self.local.flush()
        if failed:
            raise failed[0]
