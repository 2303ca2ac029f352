"""When an open socket re-checks the login it was opened with (see wsgateway.revocation).

Events close a socket at once when a login ends on this site (a logout, a password change); a
re-check catches the rest: an expiry, a session evicted from a cache, an ``UPDATE`` that bypassed
the ORM, an event lost while the layer was down. Each socket re-checks when its credentials
expire, every ``REVALIDATE_INTERVAL`` seconds if that is sooner, and at once when the site says a
user changed (``recheck_user_sockets()``: :meth:`LoginRecheck.now`).

The sockets of an event loop wait for their checks in one :class:`RecheckSchedule`, on one timer,
rather than on a timer each: a timer handle, its bound method, the context it copied and (under uvloop)
a libuv timer were four tracked objects and about 0.5 KB a socket, kept for its life (under uvicorn;
tests/test_socket_cost.py, bench/README.md).
"""

from __future__ import annotations

import asyncio
import contextvars
import heapq
import logging
import math
import time
from collections.abc import Awaitable, Callable

from channels.db import database_sync_to_async

from . import revocation
from .conf import gateway_settings

logger = logging.getLogger("wsgateway")

#: Seconds after an expiry that its re-check runs, and the least delay of any re-check.
RECHECK_MARGIN = 0.05
#: Seconds before a re-check that failed (not a login that ended: the check itself) runs again.
RECHECK_RETRY = 5.0
#: Seconds of time one set of the schedule holds the checks of: a set per second with a check due,
#: not a timer per socket.
BUCKET_SECONDS = 1.0
#: Least seconds between two runs of the schedule's timer: checks due that close together run together,
#: at most this late (never early: a check a hair early would find an expiry still valid). Without it,
#: a thousand sockets connected in one second would be a thousand runs, each reading its bucket.
COALESCE_SECONDS = 0.05


async def _ended_already(verdict: revocation.Verdict) -> None:
    """What a stopped re-check calls instead of ``ended``: nothing, as it calls nothing."""


class RecheckSchedule:
    """The re-checks waiting in one event loop: sets of them by the second they are due in, a heap of
    those seconds, and one timer, at the earliest check (or :data:`COALESCE_SECONDS` after the last
    run). A socket costs a place in a set (about 40 bytes), from which a check taken out (a socket
    closed, checked at once) is taken in constant time, however many sockets are due in that second.

    The timer runs in an empty context, and so do the checks' tasks: they belong to no one socket
    (what a check says to its socket is written in the socket's language: ``speaking()``).
    """

    __slots__ = ("buckets", "context", "loop", "seconds", "timer", "timer_at")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        #: A second (``int(due // BUCKET_SECONDS)``) to the checks due in it; a set emptied by
        #: :meth:`remove` stays until the timer passes it, so that a second is in ``seconds`` once.
        self.buckets: dict[int, set[LoginRecheck]] = {}
        #: The keys of ``buckets``, a heap.
        self.seconds: list[int] = []
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = math.inf
        self.context = contextvars.Context()

    def __len__(self) -> int:
        return sum(len(bucket) for bucket in self.buckets.values())

    def add(self, part: LoginRecheck, due: float) -> None:
        """Run ``part.start()`` at ``due`` (the loop's time), or just after."""
        part.due = due
        second = int(due // BUCKET_SECONDS)
        if (bucket := self.buckets.get(second)) is None:
            bucket = self.buckets[second] = set()
            heapq.heappush(self.seconds, second)
        bucket.add(part)
        if due < self.timer_at:
            self.arm(due)

    def remove(self, part: LoginRecheck) -> None:
        if part.due is None:
            return
        if (bucket := self.buckets.get(int(part.due // BUCKET_SECONDS))) is not None:
            bucket.discard(part)
        part.due = None
        # The timer stays: a run that finds nothing due arms for the next check.

    def arm(self, when: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer_at = when
        self.timer = self.loop.call_at(when, self.run, context=self.context)

    def run(self) -> None:
        """Start every check that is due, and arm the timer for the next."""
        self.timer, self.timer_at = None, math.inf
        now = self.loop.time()
        due: list[LoginRecheck] = []
        while self.seconds:
            second = self.seconds[0]
            bucket = self.buckets[second]
            if bucket and second * BUCKET_SECONDS > now:
                break  # this second and every later one are still to come
            ready = [part for part in bucket if part.due is not None and part.due <= now]
            bucket.difference_update(ready)
            due += ready
            if bucket:
                break  # the rest of this second is still to come, and so is every later one
            heapq.heappop(self.seconds)
            del self.buckets[second]
        try:
            for part in due:
                part.due = None
                try:
                    part.start()
                except Exception:
                    # One socket's failure must not cost the others their checks (and a revocation
                    # its closing): logged, and the rest are started.
                    logger.exception("wsgateway: a socket's login re-check could not start")
        finally:
            if self.seconds:
                first = self.buckets[self.seconds[0]]  # emptied since only by a start that took some out
                following = min((part.due for part in first if part.due is not None), default=now)
                self.arm(max(following, now + COALESCE_SECONDS))


#: Each event loop's schedule (in a process, the server's one loop; in the tests, one a test).
_schedules: dict[asyncio.AbstractEventLoop, RecheckSchedule] = {}


def schedule_of(loop: asyncio.AbstractEventLoop) -> RecheckSchedule:
    if (schedule := _schedules.get(loop)) is None:
        # list(): a copy taken at once, as another thread's loop may add its own meanwhile.
        for closed in [other for other in list(_schedules) if other.is_closed()]:
            _schedules.pop(closed, None)
        schedule = _schedules[loop] = RecheckSchedule(loop)
    return schedule


class LoginRecheck:
    """One socket's re-checks: what it logged in with, and the next check.

    It waits in its event loop's :class:`RecheckSchedule`; the task that reads the database exists
    only while it does. ``ended`` is called with the verdict of a login that no longer holds (it
    takes the socket's turn and closes it); after :meth:`stop`, nothing is checked or called again.
    """

    __slots__ = ("again", "clock", "credentials", "due", "ended", "stopped", "task")

    def __init__(
        self,
        credentials: revocation.Credentials,
        ended: Callable[[revocation.Verdict], Awaitable[None]],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.credentials = credentials
        self.ended = ended
        self.clock = clock
        self.stopped = False
        #: :meth:`now` was called while a check ran: it may have read the row before the change.
        self.again = False
        #: The loop's time of the next check, while one waits in the schedule.
        self.due: float | None = None
        self.task: asyncio.Task[None] | None = None

    def delay(self) -> float:
        """Seconds to the next check: the credentials' expiry, or ``REVALIDATE_INTERVAL`` if sooner."""
        delay = float(gateway_settings.REVALIDATE_INTERVAL)
        if (expiry := self.credentials.next_expiry) is not None:
            # Just after the expiry, not on it: a check a hair early would find it still valid.
            delay = min(delay, expiry - self.clock() + RECHECK_MARGIN)
        return max(delay, RECHECK_MARGIN)

    def schedule(self, delay: float | None = None) -> None:
        if not self.stopped:
            loop = asyncio.get_running_loop()
            schedule = schedule_of(loop)
            schedule.remove(self)  # the next check only
            schedule.add(self, loop.time() + (self.delay() if delay is None else delay))

    def start(self) -> None:
        if not self.stopped:
            self.task = asyncio.get_running_loop().create_task(self.run())

    def now(self) -> None:
        """Check at once, whenever the next check was due: the site changed the user in a way no
        signal reports. A check already running is followed by another: it may have read the row
        before the change was committed."""
        if self.stopped:
            return
        if self.task is not None:
            self.again = True
            return
        self.unschedule()
        self.start()

    async def run(self) -> None:
        """Read whether the login still holds: ``ended`` if not, else schedule the next check."""
        try:
            verdict = await self.check_now()
        except Exception:
            # The database is down, say: the socket stays, and its check is retried (not at once,
            # past an expiry: that would be a loop of failures).
            logger.exception("wsgateway: the re-check of a socket's login failed; retried later")
            self.task = None
            self.schedule(min(RECHECK_RETRY, gateway_settings.REVALIDATE_INTERVAL))
            return
        self.task = None
        again, self.again = self.again, False
        if verdict is not None:
            await self.ended(verdict)
        else:
            self.schedule(0.0 if again else None)

    async def check_now(self) -> revocation.Verdict | None:
        """Whether the login still holds, read now in the database thread: what a recovery from a
        loss asks before it sends anything (a revocation may have been lost with the rest)."""
        verdict: revocation.Verdict | None = await database_sync_to_async(revocation.check)(self.credentials)
        return verdict

    def unschedule(self) -> None:
        if self.due is not None:
            schedule_of(asyncio.get_running_loop()).remove(self)

    def stop(self) -> None:
        """No more checks: the socket is closing. A check in flight is cancelled, unless it is the
        caller (its verdict is closing the socket)."""
        self.stopped = True
        # ``ended`` is the consumer's bound method: let go of it, or the consumer and this part would be a
        # reference cycle after the close, freed only by a full collection. A call in flight has it already.
        self.ended = _ended_already
        self.unschedule()
        task, self.task = self.task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
