"""The connects that arrive together read the database together: one trip to the database thread for
all the connects of an event loop that wait for it, not one each.

Every connect's reads (the token's user, the credentials, the snapshots: :func:`snapshots.connect_reads`)
run in Channels' database thread, one thread per process. A trip there and back costs the event loop
and that thread a hand-off each way, and under a burst of connects (a deploy, a network's return: many
clients at once) the connects queued for the thread one behind the other, each paying its own. Here the
first connect starts a trip at once (no timer: a lone connect waits for nothing but its own reads);
the connects that ask while it runs wait, and go together in the next trip, at most
:data:`MAX_PER_TRIP` to a trip. Each gets its own outcome: a connect refused, or whose reads raised,
costs only itself. (The taking is wsgateway.trips's, which a session connect's read of its session
goes through too.)
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Sequence

from django.utils import translation

from . import snapshots
from .auth import Identity
from .services.base import Service
from .snapshots import Outcome
from .trips import Trips

#: Most connects read in one trip. A trip holds the database thread for its whole length, and the
#: connects in it wait for the last one's reads: past a hundred (a burst's worth at once, as the bench
#: opens them) a larger trip saves little more hand-offs and makes the first connects wait longer.
MAX_PER_TRIP = 100


class ConnectReads(Trips[snapshots.Asked, Outcome]):
    """The connects of one event loop waiting for the database thread for their reads."""

    __slots__ = ()

    def most_per_trip(self) -> int:
        return MAX_PER_TRIP  # read at each trip: a test sets it

    def work(self) -> Callable[[Sequence[snapshots.Asked]], list[Outcome | Exception]]:
        return snapshots.connect_reads  # looked up at each trip: a test stands in for it

    async def read(self, identity: Identity, services: dict[str, Service]) -> Outcome:
        """This connect's outcome, read in the next trip (raising what its reads raised)."""
        # Its own context and language, which the trip's task (the first connect's) does not have.
        return await self.ask(
            snapshots.Asked(identity, services, contextvars.copy_context(), translation.get_language())
        )


def for_loop() -> ConnectReads:
    """The running loop's :class:`ConnectReads`."""
    return ConnectReads.for_loop()


async def read_together(identity: Identity, services: dict[str, Service]) -> Outcome:
    """A connect's user, snapshots and credentials, read with the other connects waiting now."""
    return await for_loop().read(identity, services)
