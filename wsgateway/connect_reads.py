"""The connects that arrive together read the database together: one trip to the database thread for
all the connects of an event loop that wait for it, not one each.

Every connect's reads (the token's user, the credentials, the snapshots: :func:`snapshots.connect_reads`)
run in Channels' database thread, one thread per process. A trip there and back costs the event loop
and that thread a hand-off each way, and under a burst of connects (a deploy, a network's return: many
clients at once) the connects queued for the thread one behind the other, each paying its own. Here the
first connect starts a trip at once (no timer: a lone connect waits for nothing but its own reads);
the connects that ask while it runs wait, and go together in the next trip, at most
:data:`MAX_PER_TRIP` to a trip. Each gets its own outcome: a connect refused, or whose reads raised,
costs only itself.
"""

from __future__ import annotations

import asyncio
import contextvars
import weakref

from channels.db import database_sync_to_async
from django.utils import translation

from . import snapshots
from .auth import Identity
from .services.base import Service
from .snapshots import Outcome

#: Most connects read in one trip. A trip holds the database thread for its whole length, and the
#: connects in it wait for the last one's reads: past a hundred (a burst's worth at once, as the bench
#: opens them) a larger trip saves little more hand-offs and makes the first connects wait longer.
MAX_PER_TRIP = 100


class _Asked:
    """One connect's request, and the future its connect waits on."""

    __slots__ = ("future", "request")

    def __init__(self, request: snapshots.Asked, future: asyncio.Future[Outcome]) -> None:
        self.request = request
        self.future = future


class ConnectReads:
    """The connects of one event loop waiting for the database thread, and the task that takes them
    there, a trip at a time. The task lives while connects wait, and ends with the last trip."""

    __slots__ = ("__weakref__", "task", "waiting")

    def __init__(self) -> None:
        self.waiting: list[_Asked] = []
        self.task: asyncio.Task[None] | None = None

    async def read(self, identity: Identity, services: dict[str, Service]) -> Outcome:
        """This connect's outcome, read in the next trip (raising what its reads raised)."""
        loop = asyncio.get_running_loop()
        # Its own context and language, which the trip's task (the first connect's) does not have.
        request = snapshots.Asked(identity, services, contextvars.copy_context(), translation.get_language())
        asked = _Asked(request, loop.create_future())
        self.waiting.append(asked)
        if self.task is None:
            # A task, not this connect's own coroutine: a connect cancelled while its trip runs (the
            # client gone) must not take the other connects' trip with it. It starts at the loop's
            # next turn; the connects of the same turn go with it.
            self.task = loop.create_task(self._trips())
        # A cancelled connect cancels its future: the task skips it, or drops its outcome.
        return await asked.future

    async def _trips(self) -> None:
        try:
            while self.waiting:
                batch = [asked for asked in self.waiting[:MAX_PER_TRIP] if not asked.future.done()]
                del self.waiting[:MAX_PER_TRIP]
                if batch:
                    await self._trip(batch)
        finally:
            self.task = None
            # Cancelled itself (its loop closing): the connects still waiting are cancelled too,
            # rather than left waiting for a trip that will not come.
            for asked in self.waiting:
                asked.future.cancel()
            self.waiting.clear()

    @staticmethod
    async def _trip(batch: list[_Asked]) -> None:
        try:
            requests = [asked.request for asked in batch]
            outcomes = await database_sync_to_async(snapshots.connect_reads)(requests)
        except asyncio.CancelledError:
            for asked in batch:
                asked.future.cancel()
            raise
        except Exception as exc:
            # The trip itself failed (no database, say): every connect in it fails with it, as its
            # own trip would have.
            for asked in batch:
                if not asked.future.done():
                    asked.future.set_exception(exc)
            return
        for asked, outcome in zip(batch, outcomes, strict=True):
            if asked.future.done():  # cancelled during the trip: its outcome goes nowhere
                continue
            if isinstance(outcome, Exception):
                asked.future.set_exception(outcome)
            else:
                asked.future.set_result(outcome)


#: One per event loop: a future belongs to its loop. Weak: a closed loop takes its own with it.
_per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ConnectReads] = weakref.WeakKeyDictionary()


def for_loop() -> ConnectReads:
    """The running loop's :class:`ConnectReads`."""
    loop = asyncio.get_running_loop()
    reads = _per_loop.get(loop)
    if reads is None:
        reads = _per_loop[loop] = ConnectReads()
    return reads


async def read_together(identity: Identity, services: dict[str, Service]) -> Outcome:
    """A connect's user, snapshots and credentials, read with the other connects waiting now."""
    return await for_loop().read(identity, services)
