"""A Redis channel layer built for fan-out to sockets: one subscription per process, local fan-out.

Each event loop (a daphne process has one) holds, per Redis node, a pool of connections
for publishing and one pub/sub connection. A group is one Redis pub/sub channel on the
node its name hashes to (layers.redis_nodes),
subscribed to while the loop has a member; ``group_send`` is one PUBLISH
whatever the number of members or processes; each process decodes a message
once and hands a copy to each local member. Publishes issued together (one
``group_send_many``, or many sockets' ``group_send`` in one loop turn) go out as
one pipeline; a ``group_send_many`` to many groups goes to every process in a
few large publishes instead of one per group (see there). The registries (places,
presence, status: layers.redis_registries) live on the first node alone.

Capacity and expiry are enforced where a message is queued: a send to a
channel of the same loop raises ChannelFull; a message for a full channel of
another process is dropped there, as group_send drops it in every layer, and
counted, logged and reported to the channel's consumer (the ``overflow`` extension).

Delivery is at most once, as with any pub/sub: a publish while Redis is down
fails loudly, and wsgateway's resync covers the gap. Channels without "!" (worker
queues) are delivered to every process receiving on them: use
channels_redis.core.RedisChannelLayer under another alias for work queues.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import types
import weakref
import zlib
from typing import Any

import msgpack
import redis

from .base import Inbox, LocalDelivery, LocalDeliveryLayer, QueuedListener, UrgentWatcher
from .extensions import (
    JOIN_CONFIRMED,
    NODES,
    PLACE_PRESENCE,
    POOL_BUSY,
    PRESENCE,
    STATUS,
    WSGATEWAY_LAYER_EXTENSIONS,
    CoolingDown,
    PlacesLost,
)
from .redis_loop import LoopState, Node
from .redis_nodes import names_per_node, node_of, parse_hosts
from .redis_pool import DEFAULT_POOL_SIZE, DEFAULT_POOL_TIMEOUT, pool_options
from .redis_registries import SharedRegistries

logger = logging.getLogger("wsgateway")

#: group_send_many of this many groups or more is broadcast (see there), in publishes of BROADCAST_CHUNK.
BROADCAST_MIN = 16
BROADCAST_CHUNK = 200

#: What goes to one node: ``[(redis channel, data)]``.
Publishes = list[tuple[str, bytes]]


class RedisChannelLayer(LocalDeliveryLayer, SharedRegistries):
    """Channel layer on Redis pub/sub with per-process fan-out and batched publishes.

    CONFIG: ``hosts`` (one or more Redis nodes, each a URL or a dict with "address" and redis-py
    connection options; the first keeps the registries), ``prefix``, ``expiry``, ``group_expiry``,
    ``capacity``, ``channel_capacity``, ``connection_expiry``, ``restore_grace``, ``pool_size`` and
    ``pool_timeout`` (each event loop's connections to Redis, and how long a command waits for one of
    a full pool: see layers.redis_pool); capacity and expiry apply to each process's inboxes.
    """

    extensions = [
        *WSGATEWAY_LAYER_EXTENSIONS,
        *(PRESENCE, PLACE_PRESENCE, STATUS, POOL_BUSY, JOIN_CONFIRMED, NODES),
    ]

    def __init__(
        self,
        hosts: list[Any] | None = None,
        prefix: str = "wsgateway",
        connection_expiry: float = 60,
        restore_grace: float = 3,
        pool_size: int = DEFAULT_POOL_SIZE,
        pool_timeout: float = DEFAULT_POOL_TIMEOUT,
        **config: Any,
    ) -> None:
        super().__init__(**config)
        #: The options of each loop's pool of connections (the subscriber has its own connection).
        self.pool_options = pool_options(pool_size, pool_timeout)
        self.prefix = prefix
        #: Seconds a socket's registration (the connections extension) lasts unless renewed: how long
        #: the places of a process that died without unregistering stay taken.
        self.connection_expiry = connection_expiry
        #: Seconds no new place is given, on any process, after one noticed that Redis lost them: at
        #: least the watchdog's PROBE_INTERVAL and a probe, so that every process with sockets has
        #: noticed too and put back its own.
        self.restore_grace = restore_grace
        #: The Redis nodes, ``(url, options)``, in the order given: every process must list the same.
        self.hosts = parse_hosts(hosts)
        self.url, self.connection_kwargs = self.hosts[0]
        self._states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopState] = (
            weakref.WeakKeyDictionary()
        )
        self._sync: list[redis.Redis | None] = [None] * len(self.hosts)
        self._sync_lock = threading.Lock()

    def _state(self) -> LoopState:
        loop = asyncio.get_running_loop()
        state = self._states.get(loop)
        if state is None:
            local = LocalDelivery(self.expiry, self.group_expiry, self.get_capacity, self.clock)
            state = LoopState(self.hosts, self.pool_options, self.prefix, self.broadcast_channel, local)
            self._states[loop] = state
            self._close_with(loop)
        return state

    def pool_busy(self, within: float) -> bool:
        """Extension: whether this loop's pool is full and moving: every connection in use (or
        commands waiting for one), and one given back within ``within`` seconds (extensions.POOL_BUSY)."""
        state = self._states.get(asyncio.get_running_loop())
        return state is not None and any(node.pool.busy(within) for node in state.nodes)

    def node_groups(self, base: str) -> list[str]:
        """Extension: group names made from ``base``, one carried by each Redis node, in the order of
        ``hosts``: a probe through all of them reaches every node (extensions.NODES)."""
        return names_per_node(base, len(self.hosts))

    def node_drops(self) -> list[int]:
        """Extension: how many times the calling loop's subscription to each node dropped, in the order
        of ``hosts`` (extensions.NODES); empty before the loop has any."""
        state = self._states.get(asyncio.get_running_loop())
        return [node.subscriber.drops for node in state.nodes] if state is not None else []

    def node_index(self, name: str) -> int:
        """Extension: the index in ``hosts`` of the node that carries the group (or channel) ``name``
        (extensions.NODES): whose outage a socket in that group can have missed messages in."""
        return node_of(name, len(self.hosts))

    def _node(self, state: LoopState, name: str) -> Node:
        return state.nodes[node_of(name, len(state.nodes))]

    def _close_with(self, loop: asyncio.AbstractEventLoop) -> None:
        # async_to_sync runs each call in a new loop and closes it: close our
        # connections in that loop first, or they leak (as channels_redis does it).
        original_close = loop.close
        layer = self

        def close(self_loop: asyncio.AbstractEventLoop) -> None:
            state = layer._states.pop(self_loop, None)
            if state is not None and not self_loop.is_closed():
                try:
                    self_loop.run_until_complete(state.close())
                except Exception:  # closing a connection Redis already dropped
                    pass
            self_loop.close = original_close  # type: ignore[method-assign]
            original_close()

        loop.close = types.MethodType(close, loop)  # type: ignore[method-assign]

    # -- channels ------------------------------------------------------------------------

    async def new_channel(self, prefix: str = "specific.") -> str:
        state = self._state()
        await state.ensure_subscriber()
        channel = f"{prefix}{state.id}!{secrets.token_hex(8)}"
        state.local.inboxes.setdefault(channel, Inbox())
        return channel

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_channel_name(channel)
        assert "__asgi_channel__" not in message
        state = self._state()
        if "!" in channel:
            owner = channel[: channel.index("!")].rsplit(".", 1)[-1]
            if owner == state.id:
                # Ours: straight into the inbox, where capacity can be enforced for the sender.
                state.local.put(channel, message, state.local.clock())
                return
            # The owner's inbox is on the node its id hashes to: found from the channel's name alone.
            node = self._node(state, owner)
            target = f"{self.prefix}:p:{owner}"
            data = msgpack.packb({"c": channel, "m": message}, use_bin_type=True)
        else:
            node = self._node(state, channel)
            target = f"{self.prefix}:c:{channel}"
            data = msgpack.packb(message, use_bin_type=True)
        await node.publisher.publish([(target, data)])

    async def receive(self, channel: str) -> dict[str, Any]:
        self.require_valid_channel_name(channel)
        state = self._state()
        await state.ensure_subscriber()
        if "!" not in channel:
            await self._node(state, channel).subscriber.subscribe(f"{self.prefix}:c:{channel}")
        return await state.local.get(channel)

    def receive_nowait(self, channel: str) -> dict[str, Any] | None:
        """Extension: the next message already in this process for ``channel``, or None; never waits."""
        state = self._states.get(asyncio.get_running_loop())
        return state.local.get_nowait(channel) if state is not None else None

    def watch_urgent(self, channel: str, callback: UrgentWatcher | None) -> None:
        """Extension: hand the urgent events of ``channel`` (a channel of this loop) to ``callback``
        as they reach this process, from pub/sub or a send (extensions.URGENT)."""
        state = self._state() if callback is not None else self._states.get(asyncio.get_running_loop())
        if state is not None:
            state.local.watch(channel, callback)

    def watch_queued(self, channel: str, callback: QueuedListener | None) -> None:
        """Extension: call ``callback()`` as a message is queued in this process for ``channel`` (a
        channel of this loop), from pub/sub or a send (extensions.QUEUED)."""
        state = self._state() if callback is not None else self._states.get(asyncio.get_running_loop())
        if state is not None:
            state.local.listen(channel, callback)

    def forget_channel(self, channel: str) -> None:
        """Extension: drop the inbox of a channel of this loop that nobody will receive on again
        (extensions.FORGET_CHANNEL)."""
        state = self._states.get(asyncio.get_running_loop())
        if state is not None:
            state.local.forget(channel)

    def take_overflow(self, channel: str) -> bool:
        """Extension: whether messages for ``channel`` (a channel of this loop) were dropped in
        this process (see extensions.OVERFLOW); resets it."""
        state = self._states.get(asyncio.get_running_loop())
        return state.local.take_overflow(channel) if state is not None else False

    # -- groups --------------------------------------------------------------------------

    @property
    def broadcast_channel(self) -> str:
        """Every receiving process subscribes here, for the batches of group_send_many."""
        return f"{self.prefix}:b"

    def _group_channel(self, group: str) -> str:
        return f"{self.prefix}:g:{group}"

    async def group_add(self, group: str, channel: str) -> None:
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        state = self._state()
        await state.ensure_subscriber()
        subscriber = self._node(state, group).subscriber
        if subscriber.failing:
            raise redis.exceptions.ConnectionError("the Redis subscriber is reconnecting")
        state.local.add(group, channel)
        await subscriber.subscribe(self._group_channel(group))

    async def group_discard(self, group: str, channel: str) -> None:
        self.require_valid_channel_name(channel)
        self.require_valid_group_name(group)
        state = self._state()
        state.local.discard(group, channel)
        subscriber = self._node(state, group).subscriber
        if group not in state.local.groups and subscriber.pubsub is not None:
            await subscriber.unsubscribe(self._group_channel(group))

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_group_name(group)
        data = msgpack.packb(message, use_bin_type=True)
        await self._node(self._state(), group).publisher.publish([(self._group_channel(group), data)])

    async def group_send_many(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        """Extension: many group_sends in one round trip per node, in order for each group.

        A few go out as one PUBLISH per group, to the processes with members. More
        than that go to every process, BROADCAST_CHUNK to a PUBLISH, and each process
        hands out what its members should have: Redis and redis-py spend per message,
        not per byte, and a site-wide announcement reaches most processes anyway.
        Either way each group's messages go through its own node (every loop subscribes to
        the broadcasts on every node), so a group's messages keep their order, and the
        broadcast's work is spread over the nodes.
        """
        state = self._state()
        sends = [state.nodes[node].publisher.publish(publishes) for node, publishes in self._publishes(items)]
        if len(sends) == 1:
            await sends[0]
            return
        failed = [result for result in await asyncio.gather(*sends, return_exceptions=True) if result]
        if failed:
            raise failed[0]

    def group_send_many_sync(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        """Extension: :meth:`group_send_many` for sync code (a worker, a view's thread), on a
        connection of its own per node: no event loop, and no thread hop to one, on the way.

        Every node is sent its share before a failure is raised, as :meth:`group_send_many` does: one
        node down must not keep the groups of the nodes after it from their messages."""
        failed: Exception | None = None
        for node, publishes in self._publishes(items):
            try:
                self._publish_sync(node, publishes)
            except Exception as exc:
                failed = failed or exc
        if failed is not None:
            raise failed

    def _publish_sync(self, node: int, publishes: Publishes) -> None:
        client = self._sync_client(node)
        if len(publishes) == 1:
            client.publish(*publishes[0])
            return
        pipe = client.pipeline(transaction=False)
        for channel, data in publishes:
            pipe.publish(channel, data)
        pipe.execute()

    def _publishes(self, items: list[tuple[str, dict[str, Any]]]) -> list[tuple[int, Publishes]]:
        """The publishes of a group_send_many, per node: ``[(node index, [(channel, data)])]``."""
        packb = msgpack.packb
        for group, _ in items:
            self.require_valid_group_name(group)
        count = len(self.hosts)
        by_node: dict[int, list[tuple[str, dict[str, Any]]]]
        if count == 1:
            by_node = {0: items}  # one node: no hash per item
        else:
            # node_of, inlined: a batch of 1,000 groups spends here what its hashing costs, no more.
            crc32 = zlib.crc32
            parts: list[list[tuple[str, dict[str, Any]]]] = [[] for _ in range(count)]
            for item in items:
                parts[crc32(item[0].encode()) % count].append(item)
            by_node = {node: part for node, part in enumerate(parts) if part}
        if len(items) < BROADCAST_MIN:
            return [
                (node, [(self._group_channel(g), packb(message, use_bin_type=True)) for g, message in part])
                for node, part in by_node.items()
            ]
        return [
            (
                node,
                [
                    (self.broadcast_channel, packb(part[start : start + BROADCAST_CHUNK], use_bin_type=True))
                    for start in range(0, len(part), BROADCAST_CHUNK)
                ],
            )
            for node, part in by_node.items()
        ]

    def _sync_client(self, node: int) -> redis.Redis:
        # redis-py's sync pool is thread-safe and notices a fork.
        client = self._sync[node]
        if client is None:
            with self._sync_lock:
                client = self._sync[node]
                if client is None:
                    # As large as a loop's pool: redis-py's default (100) fails the 101st thread at once.
                    options = {"max_connections": self.pool_options["max_connections"]}
                    url, connection_kwargs = self.hosts[node]
                    client = self._sync[node] = redis.Redis.from_url(url, **{**options, **connection_kwargs})
        return client

    # -- connections ---------------------------------------------------------------------

    def _user_key(self, user: str) -> str:
        return f"{self.prefix}:u:{user}"

    async def connection_add(self, user: str, channel: str, limit: int, presence: bool = False) -> int:
        """Extension: register a socket of ``user`` if it fits under ``limit`` on every process
        (see extensions.CONNECTIONS); one script, one round trip. Raises PlacesLost, and adds
        nothing, when Redis lost this loop's places since it took its first, or while the places
        of some process are being put back (``restore_grace``); CoolingDown while the user is
        cooling down (extensions.COOLDOWN), asked in the same script. ``presence``: the user joins
        presence with the place, in the same script (extensions.PLACE_PRESENCE): 2 when that
        brought them online. 0: no place."""
        state = self._state()
        keys = [state.marker, self.restoring_key, self._user_key(user), self._cooldown_key(user)]
        args: list[str | int | float] = [self._expect(state), self._grace_ms(), channel, limit]
        args += [self.connection_expiry, "1" if presence else "0", user]
        status, wait_ms = await state.connection_add(keys=[*keys, self.online_key, self.since_key], args=args)
        if status == -3:
            raise CoolingDown(max(int(wait_ms), 1) / 1000)
        if status < 0:
            raise PlacesLost(own=status == -1, settle=max(int(wait_ms), 0) / 1000)
        if status:
            state.places.add((user, channel))
        return int(status)

    async def connection_discard(self, user: str, channel: str) -> None:
        """Extension: unregister a socket of ``user``."""
        state = self._state()
        state.places.discard((user, channel))  # first: gone from here even if Redis is down
        await state.client.zrem(self._user_key(user), channel)

    async def connection_renew(self, items: list[tuple[str, str]]) -> None:
        """Extension: push back the expiry of these registrations, in one round trip."""
        if items:
            await self._renew(items, restore=False)

    async def connection_restore(self, items: list[tuple[str, str]]) -> None:
        """Extension: put back every registration of this loop's open sockets, after PlacesLost or
        :meth:`connections_intact` said False; from then on new places are given again."""
        await self._renew(items, restore=True)
        self._state().places = set(items)

    async def connections_intact(self) -> bool:
        """Extension: False when Redis lost this loop's registrations since it took its first place
        (and then no process gives a new place for ``restore_grace`` seconds)."""
        state = self._state()
        status, _ = await state.connection_check(
            keys=[state.marker, self.restoring_key], args=[self._expect(state), self._grace_ms()]
        )
        return bool(status == 1)

    @property
    def restoring_key(self) -> str:
        return f"{self.prefix}:restoring"

    def _grace_ms(self) -> int:
        return max(int(self.restore_grace * 1000), 1)

    @staticmethod
    def _expect(state: LoopState) -> str:
        return "1" if state.places else "0"

    async def _renew(self, items: list[tuple[str, str]], restore: bool) -> None:
        state = self._state()
        await state.connection_renew(
            keys=[state.marker, *(self._user_key(user) for user, _ in items)],
            args=[self.connection_expiry, "1" if restore else "0", *(channel for _, channel in items)],
        )

    async def connections(self, user: str) -> list[str]:
        """Extension: the sockets registered for ``user`` on every process, expired ones left out."""
        channels = await self._state().connections(keys=[self._user_key(user)])
        return sorted(c.decode() if isinstance(c, bytes) else c for c in channels)

    # -- flush ---------------------------------------------------------------------------

    async def flush(self) -> None:
        """Forget this loop's channels and groups and close its connections (reopened on use)."""
        loop = asyncio.get_running_loop()
        state = self._states.pop(loop, None)
        if state is not None:
            await state.close()

    async def close(self) -> None:
        await self.flush()
        for node, client in enumerate(self._sync):
            if client is not None:
                client.close()
                self._sync[node] = None
