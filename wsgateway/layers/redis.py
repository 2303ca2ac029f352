"""A Redis channel layer built for fan-out to sockets: one subscription per process, local fan-out.

Each event loop (a daphne process has one) holds one Redis connection for
publishing and one pub/sub connection. A group is one Redis pub/sub channel,
subscribed to while the loop has a member; ``group_send`` is one PUBLISH
whatever the number of members or processes; each process decodes a message
once and hands a copy to each local member. Publishes issued together (one
``group_send_many``, or many sockets' ``group_send`` in one loop turn) go out as
one pipeline; a ``group_send_many`` to many groups goes to every process in a
few large publishes instead of one per group (see there).

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
from typing import Any

import msgpack
import redis
from redis import asyncio as aioredis

from .base import Inbox, LocalDelivery, LocalDeliveryLayer, QueuedListener, UrgentWatcher
from .extensions import (
    JOIN_CONFIRMED,
    PLACE_PRESENCE,
    POOL_BUSY,
    PRESENCE,
    STATUS,
    WSGATEWAY_LAYER_EXTENSIONS,
    CoolingDown,
    PlacesLost,
)
from .redis_pool import DEFAULT_POOL_SIZE, DEFAULT_POOL_TIMEOUT, GatewayPool, pool_options
from .redis_publisher import Publisher
from .redis_registries import SharedRegistries
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

logger = logging.getLogger("wsgateway")

SUBSCRIBE_TIMEOUT = 5.0
#: group_send_many of this many groups or more is broadcast (see there), in publishes of BROADCAST_CHUNK.
BROADCAST_MIN = 16
BROADCAST_CHUNK = 200


class _LoopState:
    """Everything of the layer that belongs to one event loop."""

    def __init__(self, layer: RedisChannelLayer) -> None:
        self.layer = layer
        self.id = secrets.token_hex(6)
        self.local = LocalDelivery(layer.expiry, layer.group_expiry, layer.get_capacity, layer.clock)
        self.pool = GatewayPool.from_url(layer.url, **{**layer.pool_options, **layer.connection_kwargs})
        self.client = aioredis.Redis.from_pool(self.pool)
        self.publisher = Publisher(self.client)
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
        self.pubsub: Any = None
        self.reader: asyncio.Task[None] | None = None
        self.subscribed: set[str] = set()
        self.confirmations: dict[str, asyncio.Future[None]] = {}
        self.starting = asyncio.Lock()
        #: The subscriber's connection failed and is not back yet: a group_add now would look done
        #: while nothing reaches its channel (extensions.JOIN_CONFIRMED), so it raises instead.
        self.failing = False

    @property
    def marker(self) -> str:
        return f"{self.layer.prefix}:e:{self.id}"

    @property
    def inbox_channel(self) -> str:
        return f"{self.layer.prefix}:p:{self.id}"

    async def ensure_subscriber(self) -> None:
        if self.reader is not None:
            return
        # Many sockets connect at once: one of them starts the subscriber, the others wait for it.
        async with self.starting:
            if self.reader is not None:
                return
            if self.pubsub is None:
                # No socket timeout: the reader waits for messages as long as the process lives.
                subscriber = aioredis.Redis.from_url(
                    self.layer.url, **{**self.layer.connection_kwargs, "socket_timeout": None}
                )
                self.pubsub = subscriber.pubsub()
            await self.subscribe(self.inbox_channel, start_reader=True)
            await self.subscribe(self.layer.broadcast_channel)

    async def subscribe(self, redis_channel: str, start_reader: bool = False) -> None:
        """Subscribe, and return only once Redis has confirmed: a publish after group_add must arrive.

        Concurrent calls for one channel share one SUBSCRIBE and one confirmation.
        """
        if redis_channel in self.subscribed:
            return
        confirmed = self.confirmations.get(redis_channel)
        if confirmed is None:
            confirmed = self.confirmations[redis_channel] = asyncio.get_running_loop().create_future()
            try:
                await self.pubsub.subscribe(redis_channel)
            except BaseException:
                del self.confirmations[redis_channel]
                raise
            if start_reader:
                self.reader = asyncio.get_running_loop().create_task(
                    self.read(), name="wsgateway-redis-reader"
                )
        try:
            await asyncio.wait_for(asyncio.shield(confirmed), SUBSCRIBE_TIMEOUT)
        finally:
            # Gone either way: after a timeout, the next caller sends SUBSCRIBE afresh.
            if self.confirmations.get(redis_channel) is confirmed:
                del self.confirmations[redis_channel]
        self.subscribed.add(redis_channel)

    async def unsubscribe(self, redis_channel: str) -> None:
        if redis_channel in self.subscribed:
            self.subscribed.discard(redis_channel)
            await self.pubsub.unsubscribe(redis_channel)

    async def read(self) -> None:
        prefix_group = f"{self.layer.prefix}:g:"
        broadcast = self.layer.broadcast_channel
        unpackb = msgpack.unpackb
        while True:
            try:
                # Blocking read: no per-message timer, which costs more than the read itself.
                message = await self.pubsub.get_message(timeout=None)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # redis-py reconnects and re-subscribes on the next call; the gap is
                # what wsgateway's watchdog notices and resyncs.
                logger.log(
                    logging.DEBUG if self.failing else logging.WARNING,
                    "wsgateway: Redis subscriber connection failed: %s",
                    exc,
                )
                self.failing = True
                await asyncio.sleep(0.5)
                continue
            if self.failing:
                # Its first message is a confirmation of the SUBSCRIBE redis-py sent on reconnecting,
                # with every channel in one command: all of them are live again.
                logger.warning("wsgateway: Redis subscriber connection is back")
                self.failing = False
            if message is None:
                continue
            kind = message["type"]
            channel = message["channel"]
            if isinstance(channel, bytes):
                channel = channel.decode()
            if kind == "subscribe":
                confirmed = self.confirmations.get(channel)
                if confirmed is not None and not confirmed.done():
                    confirmed.set_result(None)
                continue
            if kind != "message":
                continue
            try:
                payload = unpackb(message["data"], raw=False)
            except Exception:
                logger.exception("wsgateway: undecodable message on %s", channel)
                continue
            if channel.startswith(prefix_group):
                self.local.fan_out(channel[len(prefix_group) :], payload)
            elif channel == broadcast:
                for group, event in payload:
                    self.local.fan_out(group, event)
            elif channel == self.inbox_channel:
                self.local.deliver(payload["c"], payload["m"], self.local.clock())
            else:  # a normal channel this loop receives on
                self.local.deliver(channel[len(self.layer.prefix) + 3 :], payload, self.local.clock())

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
            try:
                await self.reader
            except asyncio.CancelledError:
                pass
            self.reader = None
        if self.pubsub is not None:
            await self.pubsub.aclose()
            # The subscriber's pool was made for this pub/sub alone.
            await self.pubsub.connection_pool.disconnect()
            self.pubsub = None
        self.local.flush()
        await self.client.aclose()


class RedisChannelLayer(LocalDeliveryLayer, SharedRegistries):
    """Channel layer on Redis pub/sub with per-process fan-out and batched publishes.

    CONFIG: ``hosts`` (one Redis: a URL, or a dict with "address" and redis-py
    connection options), ``prefix``, ``expiry``, ``group_expiry``, ``capacity``,
    ``channel_capacity``, ``connection_expiry``, ``restore_grace``, ``pool_size`` and
    ``pool_timeout`` (each event loop's connections to Redis, and how long a command waits for one of
    a full pool: see layers.redis_pool); capacity and expiry apply to each process's inboxes.
    """

    extensions = [*WSGATEWAY_LAYER_EXTENSIONS, PRESENCE, PLACE_PRESENCE, STATUS, POOL_BUSY, JOIN_CONFIRMED]

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
        host = (hosts or ["redis://127.0.0.1:6379/0"])[0]
        if isinstance(host, dict):
            host = dict(host)
            self.url = host.pop("address")
            self.connection_kwargs = host
        else:
            self.url = host
            self.connection_kwargs = {}
        if len(hosts or []) > 1:
            raise ValueError(
                "wsgateway's RedisChannelLayer uses one Redis; shard with several aliases instead"
            )
        self._states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = (
            weakref.WeakKeyDictionary()
        )
        self._sync: redis.Redis | None = None
        self._sync_lock = threading.Lock()

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        state = self._states.get(loop)
        if state is None:
            state = self._states[loop] = _LoopState(self)
            self._close_with(loop)
        return state

    def pool_busy(self, within: float) -> bool:
        """Extension: whether this loop's pool is full and moving: every connection in use (or
        commands waiting for one), and one given back within ``within`` seconds (extensions.POOL_BUSY)."""
        state = self._states.get(asyncio.get_running_loop())
        return state is not None and state.pool.busy(within)

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
            target = f"{self.prefix}:p:{owner}"
            data = msgpack.packb({"c": channel, "m": message}, use_bin_type=True)
        else:
            target = f"{self.prefix}:c:{channel}"
            data = msgpack.packb(message, use_bin_type=True)
        await state.publisher.publish([(target, data)])

    async def receive(self, channel: str) -> dict[str, Any]:
        self.require_valid_channel_name(channel)
        state = self._state()
        await state.ensure_subscriber()
        if "!" not in channel:
            await state.subscribe(f"{self.prefix}:c:{channel}")
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
        if state.failing:
            raise redis.exceptions.ConnectionError("the Redis subscriber is reconnecting")
        state.local.add(group, channel)
        await state.subscribe(self._group_channel(group))

    async def group_discard(self, group: str, channel: str) -> None:
        self.require_valid_channel_name(channel)
        self.require_valid_group_name(group)
        state = self._state()
        state.local.discard(group, channel)
        if group not in state.local.groups and state.pubsub is not None:
            await state.unsubscribe(self._group_channel(group))

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_group_name(group)
        await self._state().publisher.publish(
            [(self._group_channel(group), msgpack.packb(message, use_bin_type=True))]
        )

    async def group_send_many(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        """Extension: many group_sends in one round trip, in order.

        A few go out as one PUBLISH per group, to the processes with members. More
        than that go to every process, BROADCAST_CHUNK to a PUBLISH, and each process
        hands out what its members should have: Redis and redis-py spend per message,
        not per byte, and a site-wide announcement reaches most processes anyway.
        """
        await self._state().publisher.publish(self._publishes(items))

    def group_send_many_sync(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        """Extension: :meth:`group_send_many` for sync code (a worker, a view's thread), on a
        connection of its own: no event loop, and no thread hop to one, on the way."""
        publishes = self._publishes(items)
        client = self._sync_client()
        if len(publishes) == 1:
            client.publish(*publishes[0])
            return
        pipe = client.pipeline(transaction=False)
        for channel, data in publishes:
            pipe.publish(channel, data)
        pipe.execute()

    def _publishes(self, items: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, bytes]]:
        packb = msgpack.packb
        for group, _ in items:
            self.require_valid_group_name(group)
        if len(items) < BROADCAST_MIN:
            return [
                (self._group_channel(group), packb(message, use_bin_type=True)) for group, message in items
            ]
        return [
            (self.broadcast_channel, packb(items[start : start + BROADCAST_CHUNK], use_bin_type=True))
            for start in range(0, len(items), BROADCAST_CHUNK)
        ]

    def _sync_client(self) -> redis.Redis:
        # redis-py's sync pool is thread-safe and notices a fork.
        if self._sync is None:
            with self._sync_lock:
                if self._sync is None:
                    # As large as a loop's pool: redis-py's default (100) fails the 101st thread at once.
                    options = {"max_connections": self.pool_options["max_connections"]}
                    self._sync = redis.Redis.from_url(self.url, **{**options, **self.connection_kwargs})
        return self._sync

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
    def _expect(state: _LoopState) -> str:
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
        if self._sync is not None:
            self._sync.close()
            self._sync = None
