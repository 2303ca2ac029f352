"""Who is online: a user is online from their first open socket until they have had none for
``PRESENCE_GRACE`` seconds, on any process sharing the channel layer.

The grace is what keeps a reload from flapping: the page's socket closes and the new page's opens a
second later, and neither ``user_offline`` nor ``user_online`` is sent for it.

On wsgateway's Redis layer (the ``presence`` extension) the online users are one sorted set in Redis,
beside the per-user sets of sockets that the cap on connections keeps (wsgateway.connections); any
process answers for all of them. Each signal is sent once, by one process:

- ``user_online`` by the process whose socket put the user in the set (one atomic ``ZADD``);
- ``user_offline`` by the process whose check took the user out of it (one atomic script that finds
  no socket and a last sighting at least the grace ago). The process where the last socket ended
  checks once the grace has passed; and every process with sockets checks a page of the set at a time
  (:class:`PresenceSweeper`), which is how the users of a process that died go offline: once its
  sockets' registrations expire (the layer's ``connection_expiry``), and the grace after that.

On any other layer each process keeps its own sockets' users (:class:`LocalPresence`): exact for that
process, and blind to the others (as the cap is: check ``wsgateway.W005``).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from . import connections
from .bridge import require_sync, run_async
from .conf import gateway_settings
from .groups import channel_layer, user_pk
from .layers.extensions import PRESENCE, supports
from .signals import user_offline, user_online

logger = logging.getLogger("wsgateway")

#: Users one sweep asks Redis about: a bounded page, whatever the number online.
SWEEP_PAGE = 500
#: Seconds past the grace at which the process where a user's last socket ended checks on them:
#: Redis's clock and this process's need not tick together, and a check a little late costs nothing.
CHECK_MARGIN = 0.25
#: The most users :func:`aonline_users` returns in one call.
MAX_ONLINE_USERS = 100_000
#: The most users one call of :func:`aonline_since` or :func:`aonline_page` asks about: one round trip
#: to Redis each, of a bounded size.
MAX_PAGE = 100


class OnlineUser(NamedTuple):
    """One row of :func:`aonline_page`."""

    user_id: str
    #: When the user came online (Unix time), by the clock of Redis on its layer, of this process else.
    since: float
    #: Sockets open now, on every process where the layer counts them (0 for one within the grace).
    sockets: int


class LocalPresence:
    """The presence of one process's users, for a layer without the ``presence`` extension.

    ``sockets``: each online user's open sockets here; ``left``: when the last one of a user ended, for
    the users in their grace; ``since``: when each online user came online (Unix time, read from
    ``wall``: it is shown, where ``clock`` only measures the grace). Bounded by the open sockets and the
    users who left within the grace.
    """

    __slots__ = ("clock", "left", "since", "sockets", "wall")

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time
    ) -> None:
        self.clock = clock
        self.wall = wall
        self.sockets: dict[str, set[str]] = {}
        self.left: dict[str, float] = {}
        self.since: dict[str, float] = {}

    def join(self, user: str, channel: str) -> bool:
        """A socket of ``user`` opened; True when the user was not online (send ``user_online``)."""
        new = user not in self.sockets and user not in self.left
        self.left.pop(user, None)
        self.sockets.setdefault(user, set()).add(channel)
        if new:
            self.since[user] = self.wall()
        return new

    def leave(self, user: str, channel: str) -> None:
        """A socket of ``user`` ended; with their last, their grace starts. Harmless for one not joined."""
        channels = self.sockets.get(user)
        if channels is None or channel not in channels:
            return
        channels.discard(channel)
        if not channels:
            del self.sockets[user]
            self.left[user] = self.clock()

    def due(self, grace: float) -> list[str]:
        """The users whose grace is over, taken offline now (send ``user_offline`` for each)."""
        cutoff = self.clock() - grace
        gone = [user for user, at in self.left.items() if at <= cutoff]
        for user in gone:
            del self.left[user]
            self.since.pop(user, None)
        return gone

    def online(self, user: str) -> bool:
        return user in self.sockets or user in self.left

    def users(self) -> list[str]:
        return sorted({*self.sockets, *self.left})

    def page(self, offset: int, count: int) -> tuple[int, list[tuple[str, float]]]:
        """How many users are online, and ``count`` of them from ``offset``, the longest online first."""
        ordered = sorted(self.since.items(), key=lambda item: (item[1], item[0]))
        return len(ordered), ordered[offset : offset + count]


#: This process's users, on a layer without the extension.
_local = LocalPresence()


class PresenceSweeper:
    """On a layer with the ``presence`` extension, one per event loop, while the loop has sockets: every
    ``interval`` seconds, marks the users of its sockets seen (and online again, with ``user_online``,
    if the layer had lost them: Redis lost its data, or a stall let their registrations lapse), and asks
    the layer about one page of the online users, sending ``user_offline`` for those it takes offline.
    That page is how the users of a process that died go offline: no check of its own will ever run."""

    __slots__ = ("__weakref__", "cursor", "layer", "task", "users", "wakeup")

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        #: This loop's sockets: channel name -> user.
        self.users: dict[str, str] = {}
        self.cursor = 0
        self.task: asyncio.Task[None] | None = None
        self.wakeup = asyncio.Event()

    @staticmethod
    def interval() -> float:
        # A quarter of the grace, within [0.25, 5] s: an offline comes at most that late.
        return min(max(gateway_settings.PRESENCE_GRACE / 4, 0.25), 5.0)

    def add(self, channel: str, user: str) -> None:
        self.users[channel] = user
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self.run(), name="wsgateway-presence-sweeper")

    def discard(self, channel: str) -> None:
        self.users.pop(channel, None)
        if not self.users:
            self.wakeup.set()  # end the task now, not at its next round

    async def run(self) -> None:
        while self.users:
            self.wakeup.clear()
            try:
                await asyncio.wait_for(self.wakeup.wait(), self.interval())
            except TimeoutError:
                pass
            if self.users:
                await self.sweep()

    async def sweep(self) -> None:
        """One round: this loop's users seen, and one page of the online users checked."""
        local = sorted(set(self.users.values()))
        try:
            back: list[str] = []
            for start in range(0, len(local), SWEEP_PAGE):
                back.extend(await self.layer.presence_renew(local[start : start + SWEEP_PAGE]))
            self.cursor, users = await self.layer.presence_scan(self.cursor, SWEEP_PAGE)
            gone = await self.layer.presence_sweep(sorted(set(users)), gateway_settings.PRESENCE_GRACE)
        except Exception as exc:  # the layer is down: the watchdog says so; the next round asks again
            logger.debug("wsgateway: presence sweep failed: %s", exc)
            return
        for user in back:
            await _send(user_online, self.layer, user)
        await _send_offline(self.layer, gone)


_sweepers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, PresenceSweeper]] = (
    weakref.WeakKeyDictionary()
)
#: Each loop's checks to come, by (layer, user): bounded by the users who left within the grace.
_timers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[int, str], asyncio.TimerHandle]] = (
    weakref.WeakKeyDictionary()
)
#: Checks under way, held so that they are not collected before they ran.
_checks: set[asyncio.Task[None]] = set()


def sweeper_for(layer: Any) -> PresenceSweeper:
    """The sweeper of ``layer`` in the running event loop."""
    per_loop = _sweepers.setdefault(asyncio.get_running_loop(), {})
    sweeper = per_loop.get(id(layer))
    if sweeper is None or sweeper.layer is not layer:
        sweeper = per_loop[id(layer)] = PresenceSweeper(layer)
    return sweeper


def shared(layer: Any) -> bool:
    """Whether the layer keeps presence for all its processes (else this process keeps its own)."""
    return supports(layer, PRESENCE)


# -- what the consumer calls --------------------------------------------------------------------


async def arrive(layer: Any, user: Any, channel: str, came_online: bool | None = None) -> None:
    """A socket of ``user`` was accepted: the user is online, and ``user_online`` is sent if they were not.
    A layer that fails here costs the socket nothing (logged at debug: the outage is logged once).

    ``came_online``: what the socket's place said, on a layer that joins presence with the place
    (wsgateway.connections.joins_presence), in the cap's round trip: the layer is not asked again."""
    user = str(user)
    if shared(layer):
        sweeper_for(layer).add(channel, user)
        if came_online is not None:
            new = came_online
        else:
            try:
                new = await layer.presence_join(user)
            except Exception as exc:
                logger.debug("wsgateway: could not mark user %s online: %s", user, exc)
                return
    else:
        new = _local.join(user, channel)
    if new:
        await _send(user_online, layer, user)


async def placed_only(layer: Any, user: Any, channel: str) -> None:
    """A place that brought ``user`` online (wsgateway.connections.joins_presence) whose socket was
    not accepted after all (refused after the place, or gone during the accept): the layer says the
    user is online, so ``user_online`` is sent, and ``user_offline`` after the grace if no socket of
    theirs is open then, as for any departure: the two signals stay paired."""
    await _send(user_online, layer, str(user))
    await depart(layer, user, channel)


async def depart(layer: Any, user: Any, channel: str) -> None:
    """A socket of ``user`` ended: once the grace has passed, the user goes offline if no socket of
    theirs is open then, on any process. Never raises."""
    user = str(user)
    if shared(layer):
        sweeper_for(layer).discard(channel)
        try:
            await layer.presence_leave(user)
        except Exception as exc:
            logger.debug("wsgateway: could not mark user %s's socket gone: %s", user, exc)
    else:
        _local.leave(user, channel)
    # One check per user and loop, counted from their latest departure: a user who opens and closes
    # sockets in a loop costs one timer, not one per socket.
    loop = asyncio.get_running_loop()
    timers = _timers.setdefault(loop, {})
    earlier = timers.pop((id(layer), user), None)
    if earlier is not None:
        earlier.cancel()
    timers[(id(layer), user)] = loop.call_later(
        gateway_settings.PRESENCE_GRACE + CHECK_MARGIN, _start_check, layer, user
    )


def _start_check(layer: Any, user: str) -> None:
    loop = asyncio.get_running_loop()
    _timers.get(loop, {}).pop((id(layer), user), None)
    task = loop.create_task(check(layer, user), name="wsgateway-presence-check")
    _checks.add(task)
    task.add_done_callback(_checks.discard)


async def check(layer: Any, user: str) -> None:
    """After a socket's grace: take ``user`` offline if they have had no socket since (on this process
    alone on a layer without the extension, where every user whose grace is over goes too)."""
    grace = gateway_settings.PRESENCE_GRACE
    if shared(layer):
        try:
            gone = await layer.presence_sweep([user], grace)
        except Exception as exc:  # the sweepers of the processes with sockets ask again
            logger.debug("wsgateway: could not check whether user %s is offline: %s", user, exc)
            return
    else:
        gone = _local.due(grace)
    await _send_offline(layer, gone)


async def _send_offline(layer: Any, users: list[str]) -> None:
    for user in users:
        await _send(user_offline, layer, user)


async def _send(signal: Any, layer: Any, user: str) -> None:
    logger.debug("wsgateway: user %s %s", user, "online" if signal is user_online else "offline")
    await signal.asend_robust(sender=type(layer), user_id=user)


# -- the public API (wsgateway.is_online and the others) ----------------------------------------


async def ais_online(user: Any) -> bool:
    """Whether ``user`` (a user or a primary key) is online: between their ``user_online`` and their
    ``user_offline``, so still within the grace after their last socket ended. On every process on
    wsgateway's Redis layer (one round trip); on another layer, on this process."""
    layer = channel_layer()
    if layer is None:
        return False
    key = str(user_pk(user))
    if shared(layer):
        return bool(await layer.presence_online(key))
    return _local.online(key)


async def aonline_among(users: Iterable[Any]) -> dict[str, bool]:
    """Whether each of ``users`` (users or primary keys) is online, as :func:`ais_online` answers, by
    primary key as a string. On wsgateway's Redis layer one round trip per MAX_PAGE users."""
    keys = list(dict.fromkeys(str(user_pk(user)) for user in users))
    layer = channel_layer()
    if layer is None:
        return dict.fromkeys(keys, False)
    if not shared(layer):
        return {key: _local.online(key) for key in keys}
    states: dict[str, bool] = {}
    for start in range(0, len(keys), MAX_PAGE):
        page = keys[start : start + MAX_PAGE]
        states.update(zip(page, await layer.presence_online_many(page), strict=True))
    return states


def is_online(user: Any) -> bool:
    """Synchronous :func:`ais_online`, for views and workers."""
    require_sync("is_online() is for sync code; await ais_online() in async code")
    return run_async(ais_online, user)


async def aonline_users(limit: int = 1000) -> list[str]:
    """The primary keys (strings) of up to ``limit`` online users, in no particular order.

    Read a page at a time (Redis ``ZSCAN``, never ``KEYS``); ``limit`` bounds the work, at most
    MAX_ONLINE_USERS. A user who comes or goes during the read may be in it or not.
    """
    if not 0 < limit <= MAX_ONLINE_USERS:
        raise ValueError(f"limit must be from 1 to {MAX_ONLINE_USERS}, not {limit!r}")
    layer = channel_layer()
    if layer is None:
        return []
    if not shared(layer):
        return _local.users()[:limit]
    found: dict[str, None] = {}  # ZSCAN may return a user twice; ordered, unlike a set
    cursor = 0
    while True:
        cursor, page = await layer.presence_scan(cursor, min(limit, SWEEP_PAGE))
        found.update(dict.fromkeys(page))
        if cursor == 0 or len(found) >= limit:
            return list(found)[:limit]


def online_users(limit: int = 1000) -> list[str]:
    """Synchronous :func:`aonline_users`."""
    require_sync("online_users() is for sync code; await aonline_users() in async code")
    return run_async(aonline_users, limit)


async def asocket_count(user: Any) -> int:
    """How many sockets ``user`` has open now (0 for one online within the grace): on every process
    on a layer with the ``connections`` extension, else on this one (see :func:`wsgateway.auser_sockets`)."""
    layer = channel_layer()
    if layer is None:
        return 0
    return len(await connections.user_sockets(layer, str(user_pk(user))))


def socket_count(user: Any) -> int:
    """Synchronous :func:`asocket_count`."""
    require_sync("socket_count() is for sync code; await asocket_count() in async code")
    return run_async(asocket_count, user)


async def aonline_since(users: Iterable[Any]) -> dict[str, float | None]:
    """When each of ``users`` (users or primary keys, at most MAX_PAGE) came online, as Unix time, by
    primary key (a string); None for one who is not online. One round trip on wsgateway's Redis layer;
    on another layer, this process's users."""
    keys = list(dict.fromkeys(str(user_pk(user)) for user in users))
    if len(keys) > MAX_PAGE:
        raise ValueError(f"at most {MAX_PAGE} users a call, not {len(keys)}")
    layer = channel_layer()
    if layer is None or not keys:
        return dict.fromkeys(keys)
    if shared(layer):
        return dict(zip(keys, await layer.presence_since(keys), strict=True))
    return {key: _local.since.get(key) for key in keys}


def online_since(users: Iterable[Any]) -> dict[str, float | None]:
    """Synchronous :func:`aonline_since`."""
    require_sync("online_since() is for sync code; await aonline_since() in async code")
    return run_async(aonline_since, list(users))


async def aonline_page(offset: int = 0, count: int = MAX_PAGE) -> tuple[int, list[OnlineUser]]:
    """How many users are online, and ``count`` of them (at most MAX_PAGE) from ``offset`` (below
    MAX_ONLINE_USERS), the longest online first, each with when they came online and their open sockets.

    On wsgateway's Redis layer, two round trips whatever the page's size or offset: the page (with the
    total), then every user's sockets in one script. A user who comes or goes between two pages may be
    on both or on neither.
    """
    if not 0 < count <= MAX_PAGE:
        raise ValueError(f"count must be from 1 to {MAX_PAGE}, not {count!r}")
    if not 0 <= offset < MAX_ONLINE_USERS:
        raise ValueError(f"offset must be from 0 to {MAX_ONLINE_USERS - 1}, not {offset!r}")
    layer = channel_layer()
    if layer is None:
        return 0, []
    if shared(layer):
        total, page = await layer.presence_page(offset, count)
        counts = await layer.presence_sockets([user for user, _ in page])
    else:
        total, page = _local.page(offset, count)
        counts = [len(await connections.user_sockets(layer, user)) for user, _ in page]
    return total, [OnlineUser(user, since, n) for (user, since), n in zip(page, counts, strict=True)]


def online_page(offset: int = 0, count: int = MAX_PAGE) -> tuple[int, list[OnlineUser]]:
    """Synchronous :func:`aonline_page`."""
    require_sync("online_page() is for sync code; await aonline_page() in async code")
    return run_async(aonline_page, offset, count)
