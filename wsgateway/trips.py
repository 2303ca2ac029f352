"""The callers of one event loop that wait for the database thread, taken there together: one trip
for all of them, not one each.

Channels runs every database read in one thread per process. A trip there and back costs the event
loop and that thread a hand-off each way, and under a burst of connects (a deploy's reconnect storm, a
network's return) the callers queued for the thread one behind the other, each paying its own. Here
the first caller starts a trip at once (no timer: a lone caller waits for nothing but its own work);
the callers that ask while it runs wait, and go together in the next trip, at most
:meth:`Trips.most_per_trip` to a trip. Each gets its own outcome: one refused, or whose work raised,
costs only itself.

A kind of work is a subclass: its :meth:`Trips.work` does a trip's work in the database thread, a result
or an exception for each request. wsgateway.connect_reads (a connect's user, credentials and
snapshots) and wsgateway.sessions (a session cookie's session and user) are two.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Generic, Self, TypeVar

from channels.db import database_sync_to_async

__all__ = ["Trips"]

R = TypeVar("R")
T = TypeVar("T")


class _Asked(Generic[R, T]):
    """One caller's request, and the future it waits on."""

    __slots__ = ("future", "request")

    def __init__(self, request: R, future: asyncio.Future[T]) -> None:
        self.request = request
        self.future = future


class Trips(Generic[R, T]):
    """The callers of one event loop waiting for the database thread with one kind of request, and
    the task that takes them there, a trip at a time. The task lives while callers wait, and ends
    with the last trip. One per loop and subclass: :meth:`for_loop`."""

    __slots__ = ("__weakref__", "task", "waiting")

    #: Each subclass's, by loop (a future belongs to its loop). Weak: a closed loop takes its own.
    _per_loop: ClassVar[weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._per_loop = weakref.WeakKeyDictionary()

    def __init__(self) -> None:
        self.waiting: list[_Asked[R, T]] = []
        self.task: asyncio.Task[None] | None = None

    @classmethod
    def for_loop(cls) -> Self:
        """The running loop's instance of this subclass."""
        loop = asyncio.get_running_loop()
        trips: Self | None = cls._per_loop.get(loop)
        if trips is None:
            trips = cls._per_loop[loop] = cls()
        return trips

    def most_per_trip(self) -> int:
        """Most requests in one trip: a trip holds the database thread for its whole length, and its
        callers wait for the last one's work."""
        raise NotImplementedError

    def work(self) -> Callable[[Sequence[R]], list[T | Exception]]:
        """The sync function that does a trip's work in the database thread: each request's result,
        or the exception it raised, in order (raising fails every request of the trip). Asked at each
        trip, and a named function: what runs in the thread is known by its name."""
        raise NotImplementedError

    async def ask(self, request: R) -> T:
        """This request's result, from the next trip (raising what its work raised)."""
        loop = asyncio.get_running_loop()
        asked: _Asked[R, T] = _Asked(request, loop.create_future())
        self.waiting.append(asked)
        if self.task is None:
            # A task, not this caller's own coroutine: a caller cancelled while its trip runs (the
            # client gone) must not take the other callers' trip with it. It starts at the loop's
            # next turn; the callers of the same turn go with it.
            self.task = loop.create_task(self._trips())
        # A cancelled caller cancels its future: the task skips it, or drops its result.
        return await asked.future

    async def _trips(self) -> None:
        try:
            while self.waiting:
                most = self.most_per_trip()
                batch = [asked for asked in self.waiting[:most] if not asked.future.done()]
                del self.waiting[:most]
                if batch:
                    await self._trip(batch)
        finally:
            self.task = None
            # Cancelled itself (its loop closing): the callers still waiting are cancelled too,
            # rather than left waiting for a trip that will not come.
            for asked in self.waiting:
                asked.future.cancel()
            self.waiting.clear()

    async def _trip(self, batch: list[_Asked[R, T]]) -> None:
        try:
            outcomes = await database_sync_to_async(self.work())([asked.request for asked in batch])
        except asyncio.CancelledError:
            for asked in batch:
                asked.future.cancel()
            raise
        except Exception as exc:
            # The trip itself failed (no database, say): every caller in it fails with it, as its
            # own trip would have.
            for asked in batch:
                if not asked.future.done():
                    asked.future.set_exception(exc)
            return
        for asked, outcome in zip(batch, outcomes, strict=True):
            if asked.future.done():  # cancelled during the trip: its result goes nowhere
                continue
            if isinstance(outcome, Exception):
                asked.future.set_exception(outcome)
            else:
                asked.future.set_result(outcome)
