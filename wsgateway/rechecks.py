"""When an open socket re-checks the login it was opened with (see wsgateway.revocation).

Events close a socket at once when a login ends on this site (a logout, a password change); a
re-check catches the rest: an expiry, a session evicted from a cache, an ``UPDATE`` that bypassed
the ORM, an event lost while the layer was down. Each socket re-checks when its credentials
expire, every ``REVALIDATE_INTERVAL`` seconds if that is sooner, and at once when the site says a
user changed (``recheck_user_sockets()``: :meth:`LoginRecheck.now`).
"""

from __future__ import annotations

import asyncio
import logging
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


async def _ended_already(verdict: revocation.Verdict) -> None:
    """What a stopped re-check calls instead of ``ended``: nothing, as it calls nothing."""


class LoginRecheck:
    """One socket's re-checks: what it logged in with, and the next check.

    One timer per socket; the task that reads the database exists only while it does. ``ended`` is
    called with the verdict of a login that no longer holds (it takes the socket's turn and closes
    it); after :meth:`stop`, nothing is checked or called again.
    """

    __slots__ = ("again", "clock", "credentials", "ended", "stopped", "task", "timer")

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
        self.timer: asyncio.TimerHandle | None = None
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
            self.timer = asyncio.get_running_loop().call_later(
                self.delay() if delay is None else delay, self.start
            )

    def start(self) -> None:
        self.timer = None
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
        if self.timer is not None:
            self.timer.cancel()
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

    def stop(self) -> None:
        """No more checks: the socket is closing. A check in flight is cancelled, unless it is the
        caller (its verdict is closing the socket)."""
        self.stopped = True
        # ``ended`` is the consumer's bound method: let go of it, or the consumer and this part would be a
        # reference cycle after the close, freed only by a full collection. A call in flight has it already.
        self.ended = _ended_already
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        task, self.task = self.task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
