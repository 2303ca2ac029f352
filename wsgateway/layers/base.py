"""Pieces shared by wsgateway's layers: their common CONFIG, local inboxes, local groups, message copies."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Any

from channels.exceptions import ChannelFull
from channels.layers import BaseChannelLayer

from .. import metrics
from ..events import URGENT_EVENTS
from .fanout import ChunkedFanOut

logger = logging.getLogger("wsgateway")

#: Messages queued per channel by default: Channels' 100 cut a burst of notify() to one socket short.
DEFAULT_CAPACITY = 1000
#: Urgent events (a revocation) queued per channel, apart from its capacity. A socket watches its
#: channel (the ``urgent`` extension), so they are handed over as they come and this holds none; it
#: bounds what waits for a consumer that does not watch. The same event twice is queued once: a
#: flood of distinct revocations for one channel is not something a site sends.
MAX_URGENT = 32

UrgentWatcher = Callable[[dict[str, Any]], None]
#: Called as a message is queued for a channel (extensions.QUEUED).
QueuedListener = Callable[[], None]

_IMMUTABLE = (str, int, float, bool, bytes, type(None))


def copy_message(value: Any) -> Any:
    """Copy a message so no receiver shares mutable state with the sender or another receiver.

    Messages hold only what msgpack can carry, so this is deepcopy without its memo
    and dispatch: the common event (a dict of strings) costs one dict copy.
    """
    if isinstance(value, dict):
        return {k: v if type(v) in _IMMUTABLE else copy_message(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [v if type(v) in _IMMUTABLE else copy_message(v) for v in value]
    return value


class LocalDeliveryLayer(BaseChannelLayer):  # type: ignore[misc]
    """The CONFIG both of wsgateway's layers take, as Channels' in-memory layer names it:
    ``expiry``, ``group_expiry``, ``capacity``, ``channel_capacity``.

    Only ``capacity``'s default differs from Channels' (1000, not 100): past it, a message for
    the channel is dropped, counted, and reported to its consumer (the ``overflow`` extension).

    ``clock`` is what ``expiry`` and ``group_expiry`` are measured on (``time.monotonic``): a test
    passes one it advances itself, rather than sleeping until a message or a membership expires.
    """

    def __init__(
        self,
        expiry: int = 60,
        group_expiry: int = 86400,
        capacity: int = DEFAULT_CAPACITY,
        channel_capacity: dict[str, int] | None = None,
        clock: Callable[[], float] = time.monotonic,
        **kwargs: Any,
    ) -> None:
        super().__init__(expiry=expiry, capacity=capacity, **kwargs)
        # Compiled here: the stock in-memory layer forgets to, and then any pattern fails.
        self.channel_capacity = self.compile_capacities(channel_capacity or {})
        self.group_expiry = group_expiry
        self.clock = clock


#: Seconds a forgotten channel is remembered (:attr:`LocalDelivery.forgotten`): the late replies to a
#: request come within milliseconds of the first (the user's other tabs) or of its timeout. One that
#: comes later is queued until it expires, as before there was a memory of them. Remembering each for
#: the whole ``expiry`` would cost more than the late replies did: every request forgets its channel.
FORGOTTEN_FOR = 5.0
#: Most forgotten channels one process remembers, whatever the rate of requests; past it, the oldest is
#: let go. A channel name is about 100 bytes: at most a megabyte.
MAX_FORGOTTEN = 10_000


class Inbox:
    """Messages waiting for one channel, with their expiry times, and who waits for them.

    The times sit in a deque of their own, not in a (time, message) pair per message: a
    pair is an object the cyclic collector tracks, a dict of strings (a push) is not, and
    a burst of queued pairs set off collections over the whole heap of a busy server.

    Every socket has one for its whole life, and an idle socket's is empty: its two queues are
    the shared empty tuple until the first message, and again after a sweep finds them empty (an
    empty deque is 760 bytes; three of them were a third of wsgateway's memory per idle socket);
    its waiters are a list (one receive waits on it at a time, all but always). Between sweeps the
    deques stay: a burst then makes no container the cyclic collector would track. A socket that
    listens (:meth:`LocalDelivery.listen`) never waits in a receive: its waiters stay empty.
    """

    __slots__ = ("expiries", "listener", "messages", "urgent", "waiters", "watcher")

    def __init__(self) -> None:
        self.messages: deque[dict[str, Any]] | tuple[()] = ()
        self.expiries: deque[float] | tuple[()] = ()
        self.waiters: list[asyncio.Future[None]] = []
        #: Urgent events waiting (with when they came), ahead of :attr:`messages`; made by the first.
        self.urgent: list[tuple[float, dict[str, Any]]] | None = None
        #: Who takes urgent events as they come (see :meth:`LocalDelivery.watch`).
        self.watcher: UrgentWatcher | None = None
        #: Who is told that a message was queued (see :meth:`LocalDelivery.listen`).
        self.listener: QueuedListener | None = None

    def append(self, message: dict[str, Any], expires: float) -> None:
        if not isinstance(self.messages, deque) or not isinstance(self.expiries, deque):
            self.messages, self.expiries = deque(), deque()
        self.messages.append(message)
        self.expiries.append(expires)

    def pop(self) -> dict[str, Any]:
        if self.urgent:
            return self.urgent.pop(0)[1]
        assert isinstance(self.messages, deque) and isinstance(self.expiries, deque), "pop from no message"
        self.expiries.popleft()
        return self.messages.popleft()

    def shrink(self) -> None:
        """Give the queues back while they are empty (see the class's docstring)."""
        if not self.messages:
            self.messages = self.expiries = ()

    @property
    def idle(self) -> bool:
        """Nothing queued, nobody waiting, watching or listening: an inbox the sweep may forget."""
        return (
            not self.messages
            and not self.urgent
            and not self.waiters
            and self.watcher is None
            and self.listener is None
        )

    def wake_one(self) -> None:
        while self.waiters:
            waiter = self.waiters.pop(0)
            if not waiter.done():
                waiter.set_result(None)
                return


class LocalDelivery:
    """Inboxes and group memberships of one process, all operations O(1) or O(group size).

    Channels' InMemoryChannelLayer scans every channel and group on each
    group_send to expire entries, so a broadcast to N users costs N squared.
    Here expiry is checked where it matters (the head of an inbox, a member at
    send time) and a full sweep runs at most once per ``expiry`` seconds.

    Urgent events (:data:`wsgateway.events.URGENT_EVENTS`, a revocation) are kept apart: outside
    the capacity, never expired while their channel has a consumer (see :meth:`sweep`), received
    first, and handed to the channel's watcher as they come (see :meth:`watch`).

    A message lost without its sender being told (for a full member of a group, or
    expired unread) is counted in :mod:`wsgateway.metrics`, and its channel is marked
    until its consumer asks (:meth:`take_overflow`): what it lost is for it to recover
    (the gateway resyncs the socket). One warning per channel per such episode, not one
    per message of a burst.
    """

    def __init__(
        self,
        expiry: float,
        group_expiry: float,
        capacity_of: Any,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.expiry = expiry
        self.group_expiry = group_expiry
        self.capacity_of = capacity_of
        self.inboxes: dict[str, Inbox] = {}
        self.groups: dict[str, dict[str, float]] = {}
        self.memberships: dict[str, set[str]] = {}
        #: Channels that lost messages since their consumer last asked, with when the first was lost.
        self.overflowed: dict[str, float] = {}
        #: Channels their receiver forgot (:meth:`forget`), with when: what comes for them soon after (a
        #: reply after its requester gave up) is dropped on arrival, not queued in a new inbox until it
        #: expires. Oldest first; kept :data:`FORGOTTEN_FOR` seconds, at most :data:`MAX_FORGOTTEN`.
        self.forgotten: dict[str, float] = {}
        #: Monotonic seconds, what every ``now`` here is measured on.
        self.clock = clock
        self.next_sweep = clock() + expiry
        #: What a group with many members here is still being handed (layers.fanout).
        self.handouts = ChunkedFanOut(self.deliver, self.is_member, clock)

    # -- channels --------------------------------------------------------------------------

    def put(self, channel: str, message: dict[str, Any], now: float) -> None:
        """Queue a (copied) message, or raise ChannelFull."""
        inbox = self.inboxes.get(channel)
        if inbox is None:
            if self.forgotten and channel in self.forgotten:
                metrics.increment(metrics.LAYER_LATE)
                return
            inbox = self.inboxes[channel] = Inbox()
        if message.get("type") in URGENT_EVENTS:
            self.put_urgent(channel, inbox, copy_message(message), now)
            return
        if inbox.messages and len(inbox.messages) >= self.capacity_of(channel):
            self.drop_expired(channel, inbox, now)
            if len(inbox.messages) >= self.capacity_of(channel):
                raise ChannelFull(channel)
        inbox.append(copy_message(message), now + self.expiry)
        if inbox.waiters:
            inbox.wake_one()
        if inbox.listener is not None:
            self.tell(channel, inbox.listener)

    @staticmethod
    def tell(channel: str, listener: QueuedListener) -> None:
        try:
            listener()
        except Exception:  # the sender (another socket, the Redis reader) must not pay for it
            logger.exception("wsgateway: the listener of %s failed to hear of a message", channel)

    def put_urgent(self, channel: str, inbox: Inbox, message: dict[str, Any], now: float) -> None:
        """Hand an urgent event to the channel's watcher, else queue it ahead of the rest."""
        if inbox.watcher is not None:
            try:
                inbox.watcher(message)
            except Exception:  # the sender (another socket, the Redis reader) must not pay for it
                logger.exception("wsgateway: the watcher of %s failed to take an urgent event", channel)
            return
        urgent = inbox.urgent
        if urgent is None:
            urgent = inbox.urgent = []
        if any(queued == message for _, queued in urgent):
            return
        if len(urgent) >= MAX_URGENT:
            # Lost, but not silently: the consumer's catch-up re-checks the login before anything else.
            metrics.increment(metrics.LAYER_DROPPED)
            if channel not in self.overflowed:
                logger.warning("wsgateway: %s holds %d urgent events: dropping more", channel, len(urgent))
                self.mark_overflowed(channel, now)
            return
        urgent.append((now, message))
        if inbox.waiters:
            inbox.wake_one()
        if inbox.listener is not None:
            self.tell(channel, inbox.listener)

    def watch(self, channel: str, watcher: UrgentWatcher | None) -> None:
        """Hand ``channel``'s urgent events to ``watcher`` as they come (None: queue them again);
        those already queued are handed over now. From the loop that receives on ``channel``."""
        inbox = self.inboxes.get(channel)
        if inbox is None:
            if watcher is None:
                return
            inbox = self.inboxes[channel] = Inbox()
        inbox.watcher = watcher
        while watcher is not None and inbox.urgent and inbox.watcher is watcher:
            watcher(inbox.urgent.pop(0)[1])
        if inbox.idle:  # a closed socket's: gone now, not frozen until a sweep (wsgateway.collector)
            del self.inboxes[channel]

    def listen(self, channel: str, listener: QueuedListener | None) -> None:
        """Call ``listener()`` each time a message is queued for ``channel`` (None: stop), and now if
        one is queued already: its consumer then takes them with :meth:`get_nowait`, and needs no
        task waiting in :meth:`get`. From the loop that receives on ``channel``."""
        inbox = self.inboxes.get(channel)
        if inbox is None:
            if listener is None:
                return
            inbox = self.inboxes[channel] = Inbox()
        inbox.listener = listener
        if listener is not None and (inbox.messages or inbox.urgent):
            self.tell(channel, listener)

    async def get(self, channel: str) -> dict[str, Any]:
        inbox = self.inboxes.get(channel)
        if inbox is not None and inbox.urgent:  # before the sweep: a channel read from is no closed socket's
            return inbox.pop()
        self.sweep_if_due(self.clock())
        # Looked up after the sweep, which forgets an idle inbox: waiting on a forgotten one would
        # wait for ever, as what comes next is queued in a new one.
        inbox = self.inboxes.get(channel)
        if inbox is None:
            inbox = self.inboxes[channel] = Inbox()
        while True:
            if inbox.urgent:
                return inbox.pop()
            if inbox.messages:
                self.drop_expired(channel, inbox, self.clock())
                if inbox.messages:
                    return inbox.pop()
            waiter = asyncio.get_running_loop().create_future()
            inbox.waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    inbox.wake_one()  # it was woken for a message it will not take: pass it on
                raise
            finally:
                if not waiter.done():
                    waiter.cancel()
                # A receive cancelled while it waited (a closed socket's, a request that timed out)
                # must not stay in the inbox: the sweep forgets only an inbox nobody waits on, and
                # each one left behind was an Inbox and a future for the process's life.
                if waiter in inbox.waiters:
                    inbox.waiters.remove(waiter)

    def get_nowait(self, channel: str) -> dict[str, Any] | None:
        inbox = self.inboxes.get(channel)
        if inbox is None:
            return None
        if inbox.urgent:
            return inbox.pop()
        if not inbox.messages:
            return None
        self.drop_expired(channel, inbox, self.clock())
        return inbox.pop() if inbox.messages else None

    def deliver(self, channel: str, message: dict[str, Any], now: float) -> None:
        """Queue a message whose sender cannot be told it was refused (a group send, another
        process's send): for a full channel, it is dropped and the loss recorded."""
        self.sweep_if_due(now)
        try:
            self.put(channel, message, now)
        except ChannelFull:
            metrics.increment(metrics.LAYER_DROPPED)
            if channel not in self.overflowed:
                logger.warning(
                    "wsgateway: %s is full (%d messages queued): dropping its messages until its consumer "
                    "catches up",
                    channel,
                    len(self.inboxes[channel].messages),
                )
                self.mark_overflowed(channel, now)

    def drop_expired(self, channel: str, inbox: Inbox, now: float) -> None:
        expired = 0
        while inbox.expiries and inbox.expiries[0] < now:
            inbox.pop()
            expired += 1
        if expired:
            metrics.increment(metrics.LAYER_EXPIRED, expired)
            if channel not in self.overflowed:
                # A channel in no group is most likely a closed socket's (it left them as it closed),
                # and what reached it after the close is no one's loss: counted, not warned of.
                logger.log(
                    logging.WARNING if channel in self.memberships else logging.INFO,
                    "wsgateway: %d message(s) for %s expired unread after %s s; it leaves its groups",
                    expired,
                    channel,
                    self.expiry,
                )
                self.mark_overflowed(channel, now)
            # An unread message means nobody is reading: the channel leaves its groups,
            # as in the stock layers.
            self.leave_all(channel)

    def mark_overflowed(self, channel: str, now: float) -> None:
        metrics.increment(metrics.LAYER_OVERFLOWED_CHANNELS)
        self.overflowed[channel] = now

    def take_overflow(self, channel: str) -> bool:
        """True when ``channel`` lost messages since the last True, and nothing is queued for it now.

        Not while messages are still queued: they are older than the loss, and whatever the
        consumer does to recover (send fresh state) must come after them, not be overwritten by them.
        """
        if channel not in self.overflowed:
            return False
        inbox = self.inboxes.get(channel)
        if inbox is not None and (inbox.messages or inbox.urgent):
            return False
        del self.overflowed[channel]
        return True

    # -- groups ----------------------------------------------------------------------------

    def add(self, group: str, channel: str) -> None:
        self.groups.setdefault(group, {})[channel] = self.clock()
        self.memberships.setdefault(channel, set()).add(group)
        self.handouts.joined()

    def discard(self, group: str, channel: str) -> None:
        members = self.groups.get(group)
        if members is not None:
            members.pop(channel, None)
            if not members:
                del self.groups[group]
        groups = self.memberships.get(channel)
        if groups is not None:
            groups.discard(group)
            if not groups:
                del self.memberships[channel]

    def leave_all(self, channel: str) -> None:
        for group in list(self.memberships.get(channel, ())):
            self.discard(group, channel)

    def members(self, group: str, now_monotonic: float) -> list[str]:
        members = self.groups.get(group)
        if not members:
            return []
        oldest = now_monotonic - self.group_expiry
        stale = [channel for channel, joined in members.items() if joined < oldest]
        for channel in stale:
            self.discard(group, channel)
        return list(members)

    def fan_out(self, group: str, message: dict[str, Any]) -> None:
        """Deliver to every local member of ``group``; a full member misses it, as in Channels,
        but not silently (see :meth:`deliver`). A group of many members here is handed it a chunk a
        turn of the loop, so that what comes after it is not held back (layers.fanout)."""
        now = self.clock()
        members = self.members(group, now)
        if members:
            self.handouts.fan_out(group, message, members, now)
        self.sweep_if_due(now)

    def is_member(self, group: str, channel: str) -> bool:
        members = self.groups.get(group)
        return members is not None and channel in members

    def sweep_if_due(self, now: float) -> None:
        # Not only on group sends: a process that only asks (wsgateway.asking) and receives
        # replies joins no group, and its reply channels would never be swept.
        if now >= self.next_sweep:
            self.sweep(now)

    def forget(self, channel: str) -> None:
        """Drop ``channel``'s inbox and what it holds, unless someone waits on it or watches it: its
        receiver is done with it. A message that comes for it within :data:`FORGOTTEN_FOR` is dropped on
        arrival and counted (``layer.late``); later, one is queued anew, and expires unread."""
        inbox = self.inboxes.get(channel)
        if inbox is not None and (inbox.waiters or inbox.watcher is not None or inbox.listener is not None):
            return
        self.inboxes.pop(channel, None)
        now = self.clock()
        forgotten = self.forgotten
        forgotten[channel] = now
        # The oldest let go here, a few at each call, so that the memory follows the rate of requests.
        while len(forgotten) > MAX_FORGOTTEN or next(iter(forgotten.values())) < now - FORGOTTEN_FOR:
            del forgotten[next(iter(forgotten))]

    def sweep(self, now: float) -> None:
        """Expire old messages everywhere and forget idle inboxes nobody waits on.

        An overflow mark outlives its inbox (a busy consumer's inbox may be forgotten while it
        dispatches, before it asks), but not past the next sweep after: its channel is gone.
        Urgent events expire only in an inbox nobody waits on or watches, of a channel in no group:
        a closed socket's (it left them as it closed, or as its messages expired unread). A
        consumer that watches its channel (wsgateway's sockets) never leaves one queued.
        """
        self.next_sweep = now + self.expiry
        oldest = now - self.expiry
        for channel, inbox in list(self.inboxes.items()):
            self.drop_expired(channel, inbox, now)
            listened = inbox.waiters or inbox.watcher or inbox.listener
            if inbox.urgent and not (listened or channel in self.memberships):
                inbox.urgent = [(at, event) for at, event in inbox.urgent if at >= oldest] or None
            if inbox.idle:
                del self.inboxes[channel]
            else:
                inbox.shrink()
        for channel, since in list(self.overflowed.items()):
            if since < oldest and channel not in self.inboxes:
                del self.overflowed[channel]
        while self.forgotten and next(iter(self.forgotten.values())) < now - FORGOTTEN_FOR:
            del self.forgotten[next(iter(self.forgotten))]

    def flush(self) -> None:
        self.handouts.flush()
        for inbox in self.inboxes.values():
            for waiter in inbox.waiters:
                waiter.cancel()
        self.inboxes.clear()
        self.groups.clear()
        self.memberships.clear()
        self.overflowed.clear()
        self.forgotten.clear()


class LocalConnections:
    """The sockets of each user in one process: the ``connections`` extension of a process-local layer,
    and wsgateway's per-process count on a layer without it. Exact, and never expires: it dies with its
    process, and one event loop's consumers are its only writers, so check and add are one step."""

    def __init__(self) -> None:
        self.by_user: dict[str, set[str]] = {}

    def add(self, user: str, channel: str, limit: int) -> bool:
        channels = self.by_user.setdefault(user, set())
        if channel not in channels and len(channels) >= limit:
            return False
        channels.add(channel)
        return True

    def discard(self, user: str, channel: str) -> None:
        channels = self.by_user.get(user)
        if channels is not None:
            channels.discard(channel)
            if not channels:
                del self.by_user[user]

    def of(self, user: str) -> list[str]:
        return sorted(self.by_user.get(user, ()))


class LocalCooldowns:
    """Keys refused something until a time (a user's new sockets, see wsgateway.limits): the
    ``cooldown`` extension of a process-local layer, and wsgateway's per-process memory of them.

    Bounded: an entry ends with its time (expired entries are dropped as new ones come), and past
    ``most`` entries the one that ends first makes room. A flood of distinct users costs at most that.
    """

    __slots__ = ("clock", "most", "until")

    def __init__(self, clock: Callable[[], float] = time.monotonic, most: int = 10_000) -> None:
        self.clock = clock
        self.most = most
        self.until: dict[Hashable, float] = {}

    def start(self, key: Hashable, seconds: float) -> bool:
        """Refuse ``key`` for ``seconds`` from now; True when it was not refused already (a new episode)."""
        now = self.clock()
        new = self.left(key) == 0.0
        if new and len(self.until) >= self.most:
            self.until = {k: end for k, end in self.until.items() if end > now}
            if len(self.until) >= self.most:
                del self.until[min(self.until, key=self.until.__getitem__)]
        self.until[key] = now + seconds
        return new

    def left(self, key: Hashable) -> float:
        """Seconds ``key`` is refused for still; 0.0 when it is not (an ended entry is dropped)."""
        end = self.until.get(key)
        if end is None:
            return 0.0
        left = end - self.clock()
        if left <= 0:
            del self.until[key]
            return 0.0
        return left

    def __len__(self) -> int:
        return len(self.until)
