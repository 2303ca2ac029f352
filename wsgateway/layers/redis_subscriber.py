"""One pub/sub connection of wsgateway's Redis layer to one Redis, and the task that reads it.

A loop of the layer holds one per Redis node (wsgateway.layers.redis_loop); each hands what it reads to
the loop's one :class:`~wsgateway.layers.base.LocalDelivery`, which queues it for the loop's channels and
fans a group's message out to its local members.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgpack
from redis import asyncio as aioredis

from .base import LocalDelivery

logger = logging.getLogger("wsgateway")

SUBSCRIBE_TIMEOUT = 5.0


class Subscriber:
    """The subscriptions of one event loop on one Redis, read by one task into the loop's deliveries."""

    def __init__(
        self,
        url: str,
        connection_kwargs: dict[str, Any],
        local: LocalDelivery,
        prefix: str,
        inbox_channel: str,
        broadcast_channel: str,
    ) -> None:
        self.url = url
        self.connection_kwargs = connection_kwargs
        self.local = local
        self.prefix = prefix
        self.inbox_channel = inbox_channel
        self.broadcast_channel = broadcast_channel
        self.pubsub: Any = None
        self.reader: asyncio.Task[None] | None = None
        self.subscribed: set[str] = set()
        self.confirmations: dict[str, asyncio.Future[None]] = {}
        self.starting = asyncio.Lock()
        #: The connection failed and is not back yet: a group_add now would look done while nothing
        #: reaches its channel (extensions.JOIN_CONFIRMED), so it raises instead.
        self.failing = False
        #: Times the connection failed: what was published meanwhile never reached this loop, even when
        #: it was back before a probe could notice (the layer's ``node_drops``, the watchdog's).
        self.drops = 0

    async def start(self, channels: list[str]) -> None:
        """Connect and subscribe to ``channels`` (the loop's own: its inbox, the broadcasts), once."""
        if self.reader is not None:
            return
        # Many sockets connect at once: one of them starts the subscriber, the others wait for it.
        async with self.starting:
            if self.reader is not None:
                return
            if self.pubsub is None:
                # No socket timeout: the reader waits for messages as long as the process lives.
                options = {**self.connection_kwargs, "socket_timeout": None}
                subscriber = aioredis.Redis.from_url(self.url, **options)
                self.pubsub = subscriber.pubsub()
            first, *others = channels
            await self.subscribe(first, start_reader=True)
            for channel in others:
                await self.subscribe(channel)

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
        prefix_group = f"{self.prefix}:g:"
        broadcast = self.broadcast_channel
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
                if not self.failing:
                    self.drops += 1
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
                self.local.deliver(channel[len(self.prefix) + 3 :], payload, self.local.clock())

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
