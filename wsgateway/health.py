"""Keeping this process's sockets in step with the channel layer, one event loop at a time.

Two services, each a registry of the loop's live sockets and a task that runs while any is
registered (:class:`SocketRegistry`):

- :class:`LayerWatchdog`, on a layer that reaches other processes (Redis). While the layer
  is down, pushes are lost: ``notify()`` stores the row but cannot publish. Sockets may well
  stay open, and on RedisChannelLayer their group memberships die with the Redis data. So
  one watchdog per process probes the layer; when a probe succeeds after a failure, every
  local socket that was open when the failure was noticed, and that can have missed something,
  re-joins its groups and is sent its on-connect frames again (a "resync"), which carry whatever
  was missed: ``RESYNC_RATE`` a second (a setting), so that a recovery does not hold every push of
  the process behind thousands of resyncs. On a layer spread over several nodes (extensions.NODES)
  the probe tells which nodes failed, and only the sockets with a group on one of them can have
  missed something (``redis_nodes.sockets_on``). A layer that is busy (a full pool of connections)
  is not down, and resyncs nobody.
- :class:`MembershipRefresher`, on every layer. A layer ends a group membership
  ``group_expiry`` seconds after it was made (a day by default), whether its socket is
  still open or not; the refresher re-makes the memberships of registered sockets every
  ``group_expiry / 2`` seconds, so a socket lives as long as its connection. On a layer whose
  socket registrations expire (the ``connections`` extension's ``connection_expiry``), it renews
  them too, and runs every ``connection_expiry / 2`` seconds if that is sooner.

When the layer loses those registrations (Redis flushed, or restarted without persistence), the
refresher puts back every place of its loop's open sockets (:meth:`MembershipRefresher.restore_places`)
before a new socket of the loop gets one: a connect that finds them lost waits for it, and so does the
watchdog, which asks the layer at each probe, so a loss is repaired within PROBE_INTERVAL even when no
socket connects.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
import weakref
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Generic, Protocol, TypeVar

from . import events, metrics, repairs
from .conf import gateway_settings
from .groups import PROBE_GROUP
from .layers.extensions import CONNECTIONS, JOIN_CONFIRMED, NODES, POOL_BUSY, LayerBusy, supports
from .layers.redis_nodes import only_node, sockets_on

logger = logging.getLogger("wsgateway")

PROBE_INTERVAL = 1.0
PROBE_TIMEOUT = 2.0
RESYNC_CONCURRENCY = 32
#: A recovery's resyncs go ``WSGATEWAY["RESYNC_RATE"]`` a second at most (200 by default), in this many
#: batches a second. Each resync re-joins its groups, re-checks its login and reads its connect frames
#: from the database; all of a process's at once (4,637 and 14,368 in two runs of issue 24's soak) held
#: every push behind them for seconds. 5,000 sockets take 25 s at 200: one not resynced yet receives new
#: pushes as usual meanwhile, and only what it missed during the outage waits for its turn.
RESYNC_BATCHES_PER_SECOND = 10
#: Channels' group_expiry, for a layer that names none (channels_redis' pub/sub layer never expires one).
DEFAULT_GROUP_EXPIRY = 86400.0
#: Sockets whose memberships are re-made together; the next batch waits up to REFRESH_PAUSE.
REFRESH_BATCH = 100
REFRESH_PAUSE = 0.1
#: A round of refreshes spreads its batches over at most this share of the refresh interval.
REFRESH_SPREAD = 0.25
#: Seconds the places of a loop's sockets may take to be put back after the layer lost them, and so
#: the longest a connect waits on it; past it, the connect is refused as over the cap (4409).
RESTORE_TIMEOUT = 5.0


_Socket = TypeVar("_Socket")
_Registry = TypeVar("_Registry", bound="SocketRegistry[Any]")


class Resyncable(Protocol):
    """A socket the watchdog serves. Its ``membership`` (a ``redis_nodes.Grouped``), when it has one,
    names the groups it is in, so that a node's outage resyncs it only if one of them is on that node;
    a socket without one is resynced after any outage."""

    async def resync(self) -> None: ...


class Member(Protocol):
    def memberships(self) -> Iterable[tuple[str, str]]:
        """The ``(group, channel_name)`` pairs this socket belongs to now."""
        ...

    def registrations(self) -> Iterable[tuple[str, str]]:
        """The ``(user, channel_name)`` pairs this socket registered with the ``connections`` extension."""
        ...


class SocketRegistry(Generic[_Socket]):
    """The live sockets of one event loop on one layer, and a task that serves them while there are any.

    Sockets are held weakly: one that is collected without unregistering is forgotten.
    A subclass's :meth:`run` returns once :attr:`sockets` is empty; the next registration
    starts it again.
    """

    task_name = "wsgateway-socket-registry"

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.sockets: weakref.WeakSet[_Socket] = weakref.WeakSet()
        self.task: asyncio.Task[None] | None = None

    def register(self, socket: _Socket) -> None:
        self.sockets.add(socket)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self.run(), name=self.task_name)

    def unregister(self, socket: _Socket) -> None:
        self.sockets.discard(socket)

    async def run(self) -> None:
        raise NotImplementedError


class LayerWatchdog(SocketRegistry[Resyncable]):
    """Probes one channel layer from one event loop while any socket is registered."""

    task_name = "wsgateway-layer-watchdog"

    def __init__(self, layer: Any) -> None:
        super().__init__(layer)
        self.healthy = True
        self.probe_channel: str | None = None
        #: Sockets resyncing at once after an outage (each re-joins its group and reads the database).
        self.resync_slots = asyncio.Semaphore(RESYNC_CONCURRENCY)
        self.probe_group = PROBE_GROUP
        #: The groups a probe goes through: one, or one per node of a layer spread over several
        #: (extensions.NODES), so that any node down fails the probe.
        self.probe_groups = [PROBE_GROUP]
        #: In a busy episode (see :meth:`report_busy`) since the last probe that passed.
        self.busy = False
        #: Sockets registered since the last failure reported, on a layer whose joins are confirmed
        #: (extensions.JOIN_CONFIRMED): they joined their groups with the layer back, then read their
        #: connect frames, and missed nothing. On another layer, none: every socket is resynced.
        self.fresh: weakref.WeakSet[Resyncable] = weakref.WeakSet()
        self.joins_confirmed = supports(layer, JOIN_CONFIRMED)
        #: The recovery's paced resyncs (:meth:`resync_paced`), and which recovery it is: a round stops
        #: at its next batch once the layer fails again or a newer round starts.
        self.resyncing: asyncio.Task[None] | None = None
        self.round = 0
        #: The nodes (their index in the layer's ``hosts``; 0 on a layer of one) seen failing since the
        #: last recovery. None seen, a failure that named none means any node's.
        self.down: set[int] = set()
        #: The nodes the last probe could not reach through (all of them until it has reached one).
        self.unreached: set[int] = set()
        #: Each node's count of dropped subscriptions at the last passing probe (:meth:`dropped`).
        self.drops_seen: list[int] | None = None
        #: Sockets a recovery chose and has not resynced yet: a round stopped by a new failure leaves
        #: them to the next recovery, whichever nodes that one is for.
        self.owed: weakref.WeakSet[Resyncable] = weakref.WeakSet()

    def register(self, socket: Resyncable) -> None:
        super().register(socket)
        if not self.healthy and self.joins_confirmed:
            self.fresh.add(socket)

    def unregister(self, socket: Resyncable) -> None:
        super().unregister(socket)
        self.fresh.discard(socket)
        self.owed.discard(socket)

    def report_failure(self, exc: BaseException, nodes: Iterable[int] | None = None) -> None:
        """Called by anything in this process that saw the layer fail; ``nodes``: which of its nodes
        failed, when the caller knows (the watchdog's probe does).

        A layer that is busy, not down (:class:`~wsgateway.layers.extensions.LayerBusy`: a full pool of
        connections) is counted and logged once an episode, and is no outage: nothing to resync.
        """
        if isinstance(exc, LayerBusy):
            self.report_busy(exc)
            return
        logger.debug("wsgateway: channel layer failure (nodes %s): %r", nodes, exc)
        if nodes is not None:
            self.down.update(nodes)
        if self.fresh:
            self.fresh = weakref.WeakSet()  # connected before this failure: it may have missed something
        if self.healthy:
            logger.warning(
                "wsgateway: channel layer unavailable (%s); will resync sockets when it returns", exc
            )
        self.healthy = False

    def report_busy(self, reason: object) -> None:
        """Back-pressure from the layer: counted each time, logged once until a probe passes."""
        metrics.increment(metrics.LAYER_BUSY)
        if not self.busy:
            self.busy = True
            logger.warning(
                "wsgateway: the channel layer is busy (%s); calls wait for it, and this is no outage", reason
            )

    async def probe(self) -> None:
        """A round trip through the layer's backend, by way of a group of this process.

        A publish alone is not enough: on a pub/sub layer it succeeds before this
        process's subscriber connection is back, and a resync then would race it.
        A group, not a plain send: a layer may deliver a send to its own process
        without touching the backend. On a layer spread over several nodes, one group per node, all
        in the same round, each with its own token: the probe passes once every token came back.

        A probe that fails leaves in :attr:`unreached` the nodes it could not go through: those whose
        join or send failed, else those whose token did not come back (all of them if it failed before).
        """
        self.unreached = set(range(len(self.probe_groups)))
        try:
            if self.probe_channel is None:
                # The default prefix, like the consumers': RedisChannelLayer reads all of a process's
                # channels of one prefix through one blocking pop, which an idle socket's receive
                # holds; a channel of another prefix would not be read until that socket got a message.
                self.probe_channel = await self.layer.new_channel()
                self.probe_group = f"{PROBE_GROUP}.{uuid.uuid4().hex}"
                self.probe_groups = (
                    list(self.layer.node_groups(self.probe_group))
                    if supports(self.layer, NODES)
                    else [self.probe_group]
                )
                self.unreached = set(range(len(self.probe_groups)))
                channel = self.probe_channel
                await self.through_each_node(lambda node, group: self.layer.group_add(group, channel))
            sent = [uuid.uuid4().hex for _ in self.probe_groups]
            tokens = {token: node for node, token in enumerate(sent)}
            await self.through_each_node(
                lambda node, group: self.layer.group_send(group, {"type": events.PROBE, "token": sent[node]})
            )
            async with asyncio.timeout(PROBE_TIMEOUT):
                while tokens:
                    tokens.pop((await self.layer.receive(self.probe_channel)).get("token"), None)
                    self.unreached = set(tokens.values())
        except BaseException:
            self.probe_channel = None  # a cancelled receive may have dropped the channel: start afresh
            raise
        self.unreached = set()

    async def through_each_node(self, call: Callable[[int, str], Awaitable[None]]) -> None:
        """``call(node, group)`` for each probe group at once, each within PROBE_TIMEOUT; raise the first
        failure, once :attr:`unreached` holds the nodes that failed."""
        outcomes = await asyncio.gather(
            *(
                asyncio.wait_for(call(node, group), PROBE_TIMEOUT)
                for node, group in enumerate(self.probe_groups)
            ),
            return_exceptions=True,
        )
        if failed := {node: out for node, out in enumerate(outcomes) if isinstance(out, BaseException)}:
            self.unreached = set(failed)
            raise next(iter(failed.values()))

    async def check(self) -> bool:
        """One probe, asked again at once if it timed out: only a second timeout counts as an outage.
        True when a probe passed; False when the second timed out behind a full pool whose connections
        come back (the layer's ``pool_busy``): back-pressure, which tells neither up nor down.

        A loop that stood still (a full garbage collection of a process holding thousands of sockets
        took 0.5 to 3.7 s) times out a probe whose answer had come: the timer fires first when the loop
        runs again. Taken for an outage, that resynced every socket of the process with Redis up. A
        layer that is really down fails the second probe too, PROBE_TIMEOUT later.
        """
        try:
            await self.probe()
        except TimeoutError:
            logger.debug("wsgateway: the channel layer's probe timed out; asking again before it counts")
            try:
                await self.probe()
            except TimeoutError:
                if not self.pool_busy():
                    raise
                # Behind a full pool whose connections come back: the layer answers, slowly.
                self.report_busy("a probe waited behind a full pool of connections")
                return False
        self.busy = False
        return True

    def pool_busy(self) -> bool:
        """The layer's pool of connections is full and moving (a layer without one: never)."""
        return supports(self.layer, POOL_BUSY) and bool(self.layer.pool_busy(PROBE_TIMEOUT))

    async def run(self) -> None:
        while self.sockets:
            await asyncio.sleep(PROBE_INTERVAL)
            try:
                if not await self.check():
                    continue
            except Exception as exc:
                self.report_failure(exc, self.unreached)
                continue
            if dropped := self.dropped():  # back before a probe saw it: what it missed is lost all the same
                self.report_failure(ConnectionError("a subscription to the layer dropped"), dropped)
            try:
                # Before the resync below: after a restart, the places come back before anything else.
                await self.check_places()
            except Exception as exc:
                self.report_failure(exc)
                continue
            if not self.healthy:
                self.recovered()
            # Pushes of this process that failed unseen by a probe (a blip, a full pool): their users'
            # sockets, here and on every other process, catch up now (wsgateway.repairs).
            await repairs.arepair()

    def dropped(self) -> set[int]:
        """The nodes whose subscription dropped since the last call (the layer's ``node_drops``)."""
        if not supports(self.layer, NODES):
            return set()
        seen, self.drops_seen = self.drops_seen, self.layer.node_drops()
        return {node for node, now in enumerate(self.drops_seen) if seen and now > seen[node]}

    def recovered(self) -> None:
        """The layer is back: resync, paced, the sockets that were open when it failed and can have
        missed something (``redis_nodes.sockets_on``), and those an earlier round left owed.

        The nodes are those a probe saw failing; a failure reported without its node is taken to be
        theirs (it came during their outage), or, if no probe saw a node fail, any node's.
        """
        self.healthy = True
        nodes: set[int] | None = self.down or None
        self.down = set()
        node_index = self.layer.node_index if supports(self.layer, NODES) else only_node
        open_then = [socket for socket in list(self.sockets) if socket not in self.fresh]
        targets = sockets_on(nodes, open_then, node_index)
        chosen = set(targets)
        targets += [socket for socket in list(self.owed) if socket not in chosen and socket in self.sockets]
        self.owed = weakref.WeakSet(targets)
        self.fresh = weakref.WeakSet()
        self.round += 1
        logger.warning(
            "wsgateway: channel layer is back; resyncing %d socket(s) of %d, %d a second: those with a "
            "group on %s (the others' groups are on nodes that stayed up, or they connected since)",
            len(targets),
            len(self.sockets),
            gateway_settings.RESYNC_RATE,
            "any node" if nodes is None else "node " + ", ".join(map(str, sorted(nodes))),
        )
        if targets:
            self.resyncing = asyncio.get_running_loop().create_task(
                self.resync_paced(targets, self.round), name="wsgateway-resync"
            )

    async def resync_paced(self, targets: list[Resyncable], round_number: int) -> None:
        """Resync ``targets``, ``RESYNC_RATE`` a second at most (read once a round), a batch at a time:
        a batch waits for the one before it to end, then for its share of the second. A socket closed
        meanwhile is skipped. Stops once the layer fails again or a newer round starts: the sockets not
        resynced yet stay owed, and the next recovery resyncs them."""
        rate = gateway_settings.RESYNC_RATE
        size = max(1, rate // RESYNC_BATCHES_PER_SECOND)
        for start in range(0, len(targets), size):
            if start:
                await self.between_batches(size / rate)
            if round_number != self.round or not self.healthy:
                return
            batch = [socket for socket in targets[start : start + size] if socket in self.sockets]
            for socket in batch:
                self.owed.discard(socket)
            await asyncio.gather(*(socket.resync() for socket in batch), return_exceptions=True)

    async def between_batches(self, seconds: float) -> None:
        """The pause between two batches of resyncs: what spreads a recovery's load."""
        await asyncio.sleep(seconds)

    async def check_places(self) -> None:
        """Put back this loop's sockets' places if the layer lost them (a FLUSHALL, a restart without
        persistence): a probe succeeds on an empty Redis, and no connect may be there to notice."""
        refresher = refresher_for(self.layer)
        if refresher.renews_registrations and not await asyncio.wait_for(
            self.layer.connections_intact(), PROBE_TIMEOUT
        ):
            await refresher.restore_places()


def group_expiry_of(layer: Any) -> float:
    """Seconds a membership lasts on ``layer``: its ``group_expiry``, or Channels' default."""
    value = getattr(layer, "group_expiry", None)
    return float(value) if value else DEFAULT_GROUP_EXPIRY


def connection_expiry_of(layer: Any) -> float | None:
    """Seconds a socket's registration lasts on ``layer`` unless renewed; None: as long as its process."""
    value = getattr(layer, "connection_expiry", None) if supports(layer, CONNECTIONS) else None
    return float(value) if value else None


class MembershipRefresher(SocketRegistry[Member]):
    """Re-makes the group memberships of one event loop's registered sockets before they expire.

    Every ``group_expiry / 2`` seconds, each registered socket's :meth:`Member.memberships`
    are added again (``group_add`` of a present member renews it on every layer: Channels'
    in-memory layer and channels_redis' store the time of the latest add). A socket
    registered just after a round is renewed by the next one, well inside ``group_expiry``.
    The sockets go REFRESH_BATCH at a time, their batches spread over a quarter of the
    interval at most: a thousand sockets do not re-join at the same instant.
    """

    task_name = "wsgateway-membership-refresher"

    def __init__(self, layer: Any) -> None:
        super().__init__(layer)
        #: Registrations to renew, on a layer where they expire.
        self.renews_registrations = connection_expiry_of(layer) is not None
        self.interval = min(group_expiry_of(layer), connection_expiry_of(layer) or DEFAULT_GROUP_EXPIRY) / 2
        self.wakeup: asyncio.Future[None] | None = None
        #: The restore under way, shared by every connect and the watchdog that found the places lost.
        self.restoring: asyncio.Task[None] | None = None

    def unregister(self, socket: Member) -> None:
        super().unregister(socket)
        if not self.sockets and self.wakeup is not None and not self.wakeup.done():
            self.wakeup.set_result(None)  # end the task now, not at its next round (hours away)

    async def run(self) -> None:
        while self.sockets:
            await self.pause(self.interval)
            if self.sockets:
                await self.refresh_all()

    async def pause(self, seconds: float) -> None:
        """Sleep, unless the last socket unregisters first."""
        loop = asyncio.get_running_loop()
        self.wakeup = wakeup = loop.create_future()
        timer = loop.call_later(seconds, _settle, wakeup)
        try:
            await wakeup
        finally:
            timer.cancel()
            self.wakeup = None

    async def refresh_all(self) -> None:
        sockets = list(self.sockets)  # strong references for the round
        batches = -(-len(sockets) // REFRESH_BATCH)
        pause = min(REFRESH_PAUSE, self.interval * REFRESH_SPREAD / max(batches, 1))
        failures: list[BaseException] = []
        for start in range(0, len(sockets), REFRESH_BATCH):
            if start:
                await self.between_batches(pause)
            batch = sockets[start : start + REFRESH_BATCH]
            outcomes = await asyncio.gather(*(self.refresh(socket) for socket in batch), self.renew(batch))
            failures.extend(failure for failure in outcomes if failure is not None)
        if failures:
            metrics.increment(metrics.MEMBERSHIP_REFRESH_FAILED, len(failures))
            logger.warning(
                "wsgateway: %d of %d socket(s) could not renew their group memberships (%s); "
                "they are retried in %s s",
                len(failures),
                len(sockets),
                failures[-1],
                self.interval,
            )

    async def between_batches(self, seconds: float) -> None:
        """The pause between two batches of a round: what spreads the round's load on the layer."""
        await asyncio.sleep(seconds)

    async def refresh(self, socket: Member) -> BaseException | None:
        """Re-add one socket's memberships; the layer's failure, if any, is returned."""
        try:
            memberships = list(socket.memberships())
        except Exception:
            logger.exception("wsgateway: memberships() of %r failed", socket)
            return None
        for group, channel in memberships:
            if socket not in self.sockets:
                return None  # unregistered meanwhile: it is closing, and discards its groups
            try:
                await self.layer.group_add(group, channel)
            except Exception as exc:
                return exc
        return None

    async def renew(self, batch: list[Member]) -> BaseException | None:
        """Renew the registrations of a batch of sockets in one call; returns the layer's failure, if any.

        A socket that unregisters while the call is on its way may have its entry renewed after it
        discarded it: the entry then expires unrenewed, ``connection_expiry`` later.
        """
        if not self.renews_registrations:
            return None
        items: list[tuple[str, str]] = []
        for socket in batch:
            if socket not in self.sockets:
                continue
            try:
                items.extend(socket.registrations())
            except Exception:  # as for memberships(): one socket's bug costs the others nothing
                logger.exception("wsgateway: registrations() of %r failed", socket)
        try:
            await self.layer.connection_renew(items)
        except Exception as exc:
            return exc
        return None

    async def restore_places(self) -> None:
        """Put back the place of every registered socket that holds one, after the layer lost them
        (it raised PlacesLost, or said the places are not intact). One restore at a time for the
        loop: callers that arrive while one runs wait for it. Raises TimeoutError past RESTORE_TIMEOUT
        (the restore goes on), and the layer's failure.

        A connect whose place is not taken yet is not among them (its ``registrations()`` is empty
        until the layer said yes): it asks again once this returns, under the cap like any other.
        """
        if self.restoring is None or self.restoring.done():
            self.restoring = asyncio.get_running_loop().create_task(
                self._restore(), name="wsgateway-restore-places"
            )
        await asyncio.wait_for(asyncio.shield(self.restoring), RESTORE_TIMEOUT)

    async def _restore(self) -> None:
        items: list[tuple[str, str]] = []
        for socket in list(self.sockets):
            try:
                items.extend(socket.registrations())
            except Exception:
                logger.exception("wsgateway: registrations() of %r failed", socket)
        await self.layer.connection_restore(items)
        metrics.increment(metrics.PLACES_RESTORED, len(items))
        logger.warning(
            "wsgateway: the channel layer lost the sockets' places under MAX_CONNECTIONS_PER_USER; "
            "put back the %d of this process before any new one",
            len(items),
        )


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


_registries: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[type[Any], int], Any]] = (
    weakref.WeakKeyDictionary()
)


def _registry_for(kind: type[_Registry], layer: Any) -> _Registry:
    per_loop = _registries.setdefault(asyncio.get_running_loop(), {})
    registry = per_loop.get((kind, id(layer)))
    if not isinstance(registry, kind) or registry.layer is not layer:
        registry = per_loop[(kind, id(layer))] = kind(layer)
    return registry


def watchdog_for(layer: Any) -> LayerWatchdog:
    """The watchdog of ``layer`` in the running event loop (one per loop and layer)."""
    return _registry_for(LayerWatchdog, layer)


def refresher_for(layer: Any) -> MembershipRefresher:
    """The membership refresher of ``layer`` in the running event loop (one per loop and layer)."""
    return _registry_for(MembershipRefresher, layer)
