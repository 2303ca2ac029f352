"""What a channel layer can do beyond Channels' contract, asked one way.

Channels' layers list what they support in a class attribute ``extensions``
(``"groups"``, ``"flush"``). wsgateway's layers add their own names to the same
list, and every caller asks through :func:`supports`, never by probing for a
method: an attribute lookup on an instance of channels_redis'
RedisPubSubChannelLayer is forwarded to a per-loop layer, and outside a loop that
lookup raises. So the question is put to the class.
"""

from __future__ import annotations

from typing import Any

#: ``receive_nowait(channel)``: the next message already queued, or None; never waits.
RECEIVE_NOWAIT = "receive_nowait"
#: ``async group_send_many([(group, message), ...])``: many group sends in one call.
GROUP_SEND_MANY = "group_send_many"
#: ``group_send_many_sync(items)``: the same from sync code outside the layer's loop.
GROUP_SEND_MANY_SYNC = "group_send_many_sync"
#: Groups and messages never leave this process (no method: a property of the layer).
PROCESS_LOCAL = "process_local"
#: ``take_overflow(channel) -> bool``: whether messages for ``channel`` were dropped (its queue was
#: full, or they expired unread) since it last said True; it says so once the queue is empty, and
#: saying it resets it. Asked from the loop that receives on the channel, whose consumer then
#: brings its client back in step.
OVERFLOW = "overflow"
#: The sockets of each user, counted on all the layer's processes, with a cap checked as one is added:
#:
#: - ``async connection_add(user, channel, limit) -> bool``: register ``channel`` as a socket of ``user``
#:   (a string) if fewer than ``limit`` are registered, or if it is already; False, and nothing added,
#:   when it does not fit. Check and add are one step: two sockets racing for the last place never
#:   both get it.
#: - ``async connection_discard(user, channel)``: unregister it; harmless for a channel not registered.
#: - ``async connection_renew([(user, channel), ...])``: keep registrations alive (see below).
#: - ``async connections(user) -> list[str]``: the channels registered for ``user`` now, on every process.
#:
#: A layer whose registrations outlive their process in a shared store (Redis) ends each one
#: ``connection_expiry`` seconds (an attribute of the layer) after its last add or renewal, so that a
#: process that dies without unregistering frees its users' places; its sockets are renewed more often
#: than that. A process-local layer has no ``connection_expiry``: its registrations die with it.
#:
#: Such a layer can also lose them all at once (Redis flushed, or restarted without persistence), and
#: then must not give new places until the open sockets' are back: ``connection_add`` raises
#: :class:`PlacesLost` instead, until ``async connection_restore([(user, channel), ...])`` has put back
#: every registration of the calling loop (and, on a layer shared by processes, until the others have
#: had the time to put back theirs); ``async connections_intact() -> bool`` asks without adding.
CONNECTIONS = "connections"


class PlacesLost(Exception):
    """``connection_add`` gave no place: the layer lost the registrations (``connections``).

    ``own``: this process's are lost, and it must restore them (``connection_restore``) before it
    asks again; ``settle``: seconds to wait, after that, for other processes to restore theirs.
    """

    def __init__(self, own: bool, settle: float = 0.0) -> None:
        super().__init__(
            "the channel layer lost this process's connection registrations"
            if own
            else f"the channel layer's connection registrations are being restored ({settle:.3f} s left)"
        )
        self.own = own
        self.settle = settle


#: ``forget_channel(channel)``: the caller will not receive on ``channel`` (one of this process's,
#: from ``new_channel``) again: its inbox is dropped now, not at the next sweep. A message that
#: reaches it later is queued anew and expires unread. A requester's reply channel (wsgateway.asking).
FORGET_CHANNEL = "forget_channel"

#: ``watch_urgent(channel, callback | None)``: the layer's urgent events (``gateway.revoke``: see
#: :data:`wsgateway.events.URGENT_EVENTS`) never wait behind the rest. They do not count against a
#: channel's capacity, do not expire while their channel is watched or waited on, and ``receive`` and
#: ``receive_nowait`` return them before anything queued; while ``callback`` is set for ``channel`` (by
#: the loop that receives on it), each is handed to it as it arrives instead of being queued. The
#: callback runs on that loop, in the sender's call: it must be quick and must not raise.
URGENT = "urgent"

#: ``watch_queued(channel, callback | None)``: ``callback()`` (no argument) is called each time a message
#: is queued for ``channel`` (an urgent event queued for want of a ``watch_urgent`` watcher too), on the
#: loop that receives on it, in the sender's call, and once at once when something is queued already. So
#: a consumer needs no task waiting in ``receive`` for its channel: it takes what is queued with
#: ``receive_nowait`` when called, and an idle socket holds no task, coroutine nor future for its channel.
#: The callback must be quick and must not raise.
QUEUED = "queued"

#: Users refused new sockets for a while, on every process of the layer (wsgateway.limits: a user
#: closed 4429 for flooding):
#:
#: - ``async cooldown_start(user, seconds)``: refuse ``user``'s new places for ``seconds`` from now (a
#:   second call restarts the wait).
#: - ``async cooldown_left(user) -> float``: seconds left of it, 0.0 for none.
#:
#: ``connection_add`` asks it in the same step, in the same round trip: for a user cooling down it
#: raises :class:`CoolingDown` and adds nothing. A layer shared by processes keeps it in its store, where
#: it expires by itself; a process-local one in its process, bounded.
COOLDOWN = "cooldown"


class CoolingDown(Exception):
    """``connection_add`` gave no place: the user is cooling down (``cooldown``) ``retry_after`` more
    seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"the user is refused new sockets for {retry_after:.3f} s more")
        self.retry_after = retry_after


#: Who is online, on every process of the layer (wsgateway.presence), beside the ``connections``
#: registry: a user is online from their first socket until they have had none for a grace period.
#:
#: - ``async presence_join(user) -> bool``: a socket of ``user`` was placed; True when the user was not
#:   online, and this call made them so: one caller on one process gets True, and sends ``user_online``.
#: - ``async presence_leave(user)``: a socket of ``user`` ended; the grace counts from now.
#: - ``async presence_renew(users) -> list[str]``: ``users`` have sockets open on the caller's process;
#:   those that were not online (the layer lost them) are online again, and returned.
#: - ``async presence_sweep(users, grace) -> list[str]``: of ``users``, those with no socket registered
#:   (``connections``, expired ones left out) since ``grace`` seconds, taken offline by this call: one
#:   caller gets each, and sends ``user_offline``.
#: - ``async presence_scan(cursor, count) -> (cursor, users)``: a page of the online users, bounded work
#:   per call; the cursor starts and ends at 0, and a user may come on two pages.
#: - ``async presence_online(user) -> bool``.
#: - ``async presence_online_many(users) -> list[bool]``: whether each is online, in one call.
#: - ``async presence_since(users) -> list[float | None]``: when each came online (Unix time), None for
#:   one who is not: kept from the call that brought them online until the one that took them offline.
#: - ``async presence_page(offset, count) -> (total, [(user, since)])``: how many are online, and a page
#:   of them, the longest online first.
#: - ``async presence_sockets(users) -> list[int]``: how many sockets each has open now, in one call.
#:
#: Only a layer shared by processes declares it (wsgateway's Redis layer): on any other, each process
#: keeps its own users' presence (``wsgateway.presence.LocalPresence``), exact for that process.
PRESENCE = "presence"

#: ``connections`` and ``presence`` in one step: ``connection_add(user, channel, limit, presence=True)``
#: also does what ``presence_join(user)`` would, in the same round trip, once the place is given, and
#: returns 2 instead of True when this call brought the user online (its caller sends ``user_online``).
#: Nothing is joined for a place not given. A connect's round trip fewer (wsgateway.presence.arrive).
PLACE_PRESENCE = "place_presence"


#: Each server process's status (wsgateway.status, ``manage.py wsgateway_status``), on every process:
#:
#: - ``async status_publish(process, snapshot, ttl)``: keep ``snapshot`` (a JSON text) as ``process``'s
#:   (a name unique to the process) for ``ttl`` seconds, replacing the one before.
#: - ``async status_read(limit) -> list[str]``: the snapshots not expired, at most ``limit``.
#:
#: Only a layer shared by processes declares it (wsgateway's Redis layer): on any other, no process can
#: read another's.
STATUS = "status"

#: ``pool_busy(within) -> bool``: the calling loop's pool of connections to the backend is full (every
#: connection in use, or calls waiting for one) and gave one back within ``within`` seconds: a call
#: that timed out waited behind the process's own calls, with the backend answering. The watchdog asks
#: it of a probe that timed out twice, and counts that as back-pressure (:class:`LayerBusy`), not an
#: outage. Only a layer with a bounded pool declares it (wsgateway's Redis layer).
POOL_BUSY = "pool_busy"

#: No method: ``group_add`` returns only once a message sent to the group after it returns reaches the
#: channel, on every process, or raises (a layer whose subscriber is reconnecting after an outage raises
#: rather than return with a subscription that is not live yet). So a socket that joined its groups and
#: then read its state missed nothing before it: after an outage, the watchdog resyncs only the sockets
#: that were open when it noticed the failure, not those that connected since. On a layer without it
#: (channels_redis' pub/sub layer could return while its subscriber reconnects), it resyncs them all.
JOIN_CONFIRMED = "join_confirmed"

#: ``node_groups(base) -> list[str]``: the layer spreads its groups over several backend nodes (wsgateway's
#: Redis layer given several ``hosts``), by name; these are group names made from ``base``, one carried
#: by each node. The watchdog probes through all of them in one round, so that one node down is seen
#: as an outage (and one back, as a recovery) whichever node its probe group would have hashed to.
#: ``node_index(name) -> int``: the node (an index into that order) that carries the group ``name``:
#: when a node returns, the watchdog resyncs only the sockets with a group on a node that failed.
#: ``node_drops() -> list[int]``: per node, how many times the calling loop's subscription to it dropped:
#: a drop shorter than a probe's wait loses messages too, and the watchdog reads it as that node's outage.
NODES = "nodes"

#: What both of wsgateway's own layers (in-process and Redis) declare: Channels' ``groups`` and
#: ``flush``, and every extension above but :data:`PROCESS_LOCAL`, which only the in-process one adds.
WSGATEWAY_LAYER_EXTENSIONS: tuple[str, ...] = (
    "groups",
    "flush",
    RECEIVE_NOWAIT,
    GROUP_SEND_MANY,
    GROUP_SEND_MANY_SYNC,
    OVERFLOW,
    CONNECTIONS,
    FORGET_CHANNEL,
    URGENT,
    QUEUED,
    COOLDOWN,
)


def _layer_class(layer_or_class: Any) -> type:
    return layer_or_class if isinstance(layer_or_class, type) else type(layer_or_class)


def supports(layer_or_class: Any, extension: str) -> bool:
    """True when the layer (an instance or its class) declares ``extension``."""
    return extension in getattr(_layer_class(layer_or_class), "extensions", ())


def is_process_local(layer_or_class: Any) -> bool:
    """True for a layer whose groups live in one process: Channels' in-memory layer, or one that
    declares :data:`PROCESS_LOCAL`. A push from a worker or another server never reaches its sockets."""
    from channels.layers import InMemoryChannelLayer

    cls = _layer_class(layer_or_class)
    return issubclass(cls, InMemoryChannelLayer) or supports(cls, PROCESS_LOCAL)


class LayerBusy(Exception):
    """The layer refused a call because it is busy, not down: the call waited for a resource of this
    process (the Redis layer's pool of connections) longer than it may, while the backend answered
    the calls ahead of it. The call failed as any failure of the layer does (a push is counted
    ``push.failed``, a connect refused ``unavailable``), but the watchdog counts it as ``layer.busy``
    and logs it once an episode, not as an outage: resyncing every socket of the process would ask
    more of a layer that is already asked too much."""
