"""Noticing a channel-layer outage and bringing this process's sockets back in sync.

While the layer (Redis) is down, pushes are lost: ``notify()`` stores the row but
cannot publish. Sockets may well stay open, and on RedisChannelLayer their group
memberships die with the Redis data. So one watchdog per process probes the
layer; when a probe succeeds after a failure, every local socket re-joins its
group and is sent its on-connect frames again (a "resync"), which carry
whatever was missed.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
import weakref
from typing import Any, Protocol

logger = logging.getLogger("wsgateway")

PROBE_INTERVAL = 1.0
PROBE_TIMEOUT = 2.0
RESYNC_CONCURRENCY = 32
PROBE_GROUP = "wsgateway.health"  # for probes that only publish (manage.py notify)


class Resyncable(Protocol):
    async def resync(self) -> None: ...


class LayerWatchdog:
    """Probes one channel layer from one event loop while any socket is registered."""

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.sockets: weakref.WeakSet[Any] = weakref.WeakSet()
        self.healthy = True
        self.task: asyncio.Task[None] | None = None
        self.probe_channel: str | None = None
        #: Sockets resyncing at once after an outage (each re-joins its group and reads the database).
        self.resync_slots = asyncio.Semaphore(RESYNC_CONCURRENCY)
        self.probe_group = PROBE_GROUP

    def register(self, socket: Resyncable) -> None:
        self.sockets.add(socket)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self.run(), name="wsgateway-layer-watchdog")

    def unregister(self, socket: Resyncable) -> None:
        self.sockets.discard(socket)

    def report_failure(self, exc: BaseException) -> None:
        """Called by anything in this process that saw the layer fail."""
        logger.debug("wsgateway: channel layer failure: %r", exc)
        if self.healthy:
            logger.warning(
                "wsgateway: channel layer unavailable (%s); will resync sockets when it returns", exc
            )
        self.healthy = False

    async def probe(self) -> None:
        """A round trip through the layer's backend, by way of a group of this process.

        A publish alone is not enough: on a pub/sub layer it succeeds before this
        process's subscriber connection is back, and a resync then would race it.
        A group, not a plain send: a layer may deliver a send to its own process
        without touching the backend.
        """
        try:
            if self.probe_channel is None:
                # The default prefix, like the consumers': RedisChannelLayer reads all of a process's
                # channels of one prefix through one blocking pop, which an idle socket's receive
                # holds; a channel of another prefix would not be read until that socket got a message.
                self.probe_channel = await self.layer.new_channel()
                self.probe_group = f"{PROBE_GROUP}.{uuid.uuid4().hex}"
                await asyncio.wait_for(
                    self.layer.group_add(self.probe_group, self.probe_channel), PROBE_TIMEOUT
                )
            token = uuid.uuid4().hex
            await asyncio.wait_for(
                self.layer.group_send(self.probe_group, {"type": "gateway.probe", "token": token}),
                PROBE_TIMEOUT,
            )
            async with asyncio.timeout(PROBE_TIMEOUT):
                while (await self.layer.receive(self.probe_channel)).get("token") != token:
                    pass
        except BaseException:
            self.probe_channel = None  # a cancelled receive may have dropped the channel: start afresh
            raise

    async def run(self) -> None:
        while self.sockets:
            await asyncio.sleep(PROBE_INTERVAL)
            try:
                await self.probe()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.report_failure(exc)
                continue
            if not self.healthy:
                self.healthy = True
                logger.warning("wsgateway: channel layer is back; resyncing %d socket(s)", len(self.sockets))
                await asyncio.gather(
                    *(socket.resync() for socket in list(self.sockets)), return_exceptions=True
                )


_watchdogs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, LayerWatchdog]] = (
    weakref.WeakKeyDictionary()
)


def watchdog_for(layer: Any) -> LayerWatchdog:
    """The watchdog of ``layer`` in the running event loop (one per loop and layer)."""
    per_loop = _watchdogs.setdefault(asyncio.get_running_loop(), {})
    watchdog = per_loop.get(id(layer))
    if watchdog is None or watchdog.layer is not layer:
        watchdog = per_loop[id(layer)] = LayerWatchdog(layer)
    return watchdog
