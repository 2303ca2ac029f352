"""The layer watchdog's probe, on a layer of the test's own: a loop that stood still is not an outage.

The stall is real: the event loop is blocked (``time.sleep``) for longer than the probe's timeout while
the probe waits, as a full garbage collection of a process with thousands of sockets blocks it, and the
answer is there the moment the loop runs again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from wsgateway import health, metrics
from wsgateway.health import LayerWatchdog
from wsgateway.layers.extensions import JOIN_CONFIRMED, NODES, POOL_BUSY
from wsgateway.layers.redis_nodes import names_per_node, node_of

TIMEOUT = 0.2


class StallingLayer:
    """Answers every probe, the first ``stalls`` of them during a stall of the loop; or never answers
    (``down``)."""

    def __init__(self, stalls: int = 0, down: bool = False) -> None:
        self.stalls, self.down = stalls, down
        self.sends = 0
        self.pending: dict[str, Any] | None = None
        self.sent: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def new_channel(self) -> str:
        return "probe!1"

    async def group_add(self, group: str, channel: str) -> None:
        return None

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        self.sends += 1
        if not self.down:
            self.pending = message

    async def receive(self, channel: str) -> dict[str, Any]:
        message, self.pending = self.pending, None
        if message is not None and self.sends <= self.stalls:
            # While the probe waits for it: the answer comes in 10 ms, and the loop stands still for
            # twice the timeout before it can be read (as a collection that starts then would).
            loop = asyncio.get_running_loop()
            loop.call_soon(time.sleep, TIMEOUT * 2)
            loop.call_later(0.01, self.sent.put_nowait, message)
        elif message is not None:
            self.sent.put_nowait(message)
        return await self.sent.get()


@pytest.fixture(autouse=True)
def short_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(health, "PROBE_TIMEOUT", TIMEOUT)


async def test_a_probe_that_timed_out_in_a_stalled_loop_is_asked_again_and_passes() -> None:
    layer = StallingLayer(stalls=1)
    watchdog = LayerWatchdog(layer)
    with pytest.raises(TimeoutError):
        await watchdog.probe()  # alone, the stall reads as a timeout
    layer.sends = 0
    await watchdog.check()  # the check asks again
    assert layer.sends == 2 and watchdog.healthy


async def test_a_layer_that_answers_neither_probe_is_down() -> None:
    layer = StallingLayer(down=True)
    watchdog = LayerWatchdog(layer)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await watchdog.check()
    assert layer.sends == 2
    assert time.monotonic() - started >= 2 * TIMEOUT  # two timeouts: an outage is seen one later


async def test_two_stalls_in_a_row_are_an_outage_to_the_check() -> None:
    layer = StallingLayer(stalls=2)
    with pytest.raises(TimeoutError):
        await LayerWatchdog(layer).check()
    assert layer.sends == 2


class BusyLayer(StallingLayer):
    """Never answers a probe, and says whether its pool of connections is full and moving."""

    extensions = [POOL_BUSY]

    def __init__(self, busy: bool) -> None:
        super().__init__(down=True)
        self.busy = busy

    def pool_busy(self, within: float) -> bool:
        return self.busy


async def test_probes_that_time_out_behind_a_full_pool_that_moves_are_back_pressure_not_an_outage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    watchdog = LayerWatchdog(BusyLayer(busy=True))
    before = metrics.value(metrics.LAYER_BUSY)
    with caplog.at_level(logging.WARNING, logger="wsgateway"):
        assert await watchdog.check() is False
        assert await watchdog.check() is False
    assert watchdog.healthy and metrics.value(metrics.LAYER_BUSY) - before == 2
    assert len([r for r in caplog.records if "busy" in r.getMessage()]) == 1  # once an episode


async def test_probes_that_time_out_behind_a_full_pool_that_stopped_moving_are_an_outage() -> None:
    with pytest.raises(TimeoutError):
        await LayerWatchdog(BusyLayer(busy=False)).check()


# -- the recovery: paced, and only the sockets that were open when the layer failed ----------------


class Socket:
    """What the watchdog holds of a socket: when it was resynced, and in which batch."""

    def __init__(self, log: list[tuple[Socket, float]]) -> None:
        self.log = log

    async def resync(self) -> None:
        self.log.append((self, time.monotonic()))
        await asyncio.sleep(0)

    def resyncs(self) -> int:
        return sum(1 for socket, _ in self.log if socket is self)


class ConfirmingLayer(StallingLayer):
    """Its group_add returns once the membership is live (as wsgateway's Redis layer's)."""

    extensions = [JOIN_CONFIRMED]


@pytest.fixture
def watchdog(monkeypatch: pytest.MonkeyPatch, settings: Any) -> Any:
    monkeypatch.setattr(health, "PROBE_INTERVAL", 3600)  # the test calls what a probe would
    settings.WSGATEWAY = {"RESYNC_RATE": 100}  # ten a batch, a batch every 0.1 s
    return LayerWatchdog(ConfirmingLayer())


async def recover(watchdog: LayerWatchdog) -> None:
    watchdog.recovered()
    if watchdog.resyncing is not None:
        await watchdog.resyncing


async def test_a_socket_that_connected_after_the_layer_failed_is_not_resynced(
    watchdog: LayerWatchdog,
) -> None:
    log: list[tuple[Socket, float]] = []
    before = [Socket(log) for _ in range(3)]
    for socket in before:
        watchdog.register(socket)
    watchdog.report_failure(ConnectionError("down"))
    after = Socket(log)
    watchdog.register(after)  # its connect read its frames after the failure
    await recover(watchdog)
    assert [socket.resyncs() for socket in before] == [1, 1, 1] and after.resyncs() == 0
    watchdog.report_failure(ConnectionError("down again"))
    await recover(watchdog)  # open when the layer failed this time: resynced too
    assert [socket.resyncs() for socket in before] == [2, 2, 2] and after.resyncs() == 1


async def test_on_a_layer_whose_joins_are_not_confirmed_every_socket_is_resynced(
    watchdog: LayerWatchdog,
) -> None:
    watchdog = LayerWatchdog(StallingLayer())  # a join may return before its subscription is live
    log: list[tuple[Socket, float]] = []
    watchdog.report_failure(ConnectionError("down"))
    socket = Socket(log)
    watchdog.register(socket)
    await recover(watchdog)
    assert socket.resyncs() == 1


async def test_a_failure_reported_after_a_socket_connected_during_the_outage_resyncs_it_too(
    watchdog: LayerWatchdog,
) -> None:
    log: list[tuple[Socket, float]] = []
    watchdog.report_failure(ConnectionError("down"))
    socket = Socket(log)
    watchdog.register(socket)
    watchdog.report_failure(ConnectionError("still failing"))  # after its connect: it may have missed it
    await recover(watchdog)
    assert socket.resyncs() == 1


async def test_the_resyncs_go_in_batches_of_a_tenth_of_the_rate_with_a_pause_between(
    watchdog: LayerWatchdog, monkeypatch: pytest.MonkeyPatch
) -> None:
    log: list[tuple[Socket, float]] = []
    sockets = [Socket(log) for _ in range(45)]
    for socket in sockets:
        watchdog.register(socket)
    pauses: list[tuple[int, float]] = []

    async def pause(seconds: float) -> None:
        pauses.append((len(log), seconds))

    monkeypatch.setattr(watchdog, "between_batches", pause)
    watchdog.report_failure(ConnectionError("down"))
    await recover(watchdog)
    assert sorted(id(socket) for socket, _ in log) == sorted(id(socket) for socket in sockets)  # once each
    assert pauses == [(10, 0.1), (20, 0.1), (30, 0.1), (40, 0.1)]


async def test_the_resyncs_are_spread_over_time(watchdog: LayerWatchdog) -> None:
    log: list[tuple[Socket, float]] = []
    sockets = [Socket(log) for _ in range(40)]
    for socket in sockets:
        watchdog.register(socket)
    watchdog.report_failure(ConnectionError("down"))
    started = time.monotonic()
    await recover(watchdog)
    assert len(log) == 40
    # At 100 a second, 40 take at least three pauses of 0.1 s; a loaded machine only makes it slower.
    assert log[-1][1] - started >= 0.3 * 0.9
    assert sum(1 for _, at in log if at - started < 0.15) <= 20  # two batches at most in 0.15 s


async def test_a_round_skips_a_socket_that_closed_before_its_turn(
    watchdog: LayerWatchdog, monkeypatch: pytest.MonkeyPatch
) -> None:
    log: list[tuple[Socket, float]] = []
    sockets = [Socket(log) for _ in range(20)]
    for socket in sockets:
        watchdog.register(socket)
    closed: list[Socket] = []

    async def pause(seconds: float) -> None:  # after the first batch of ten: one of the others closes
        closed.append(next(socket for socket in sockets if not socket.resyncs()))
        watchdog.unregister(closed[0])

    monkeypatch.setattr(watchdog, "between_batches", pause)
    watchdog.report_failure(ConnectionError("down"))
    await recover(watchdog)
    assert len(log) == 19 and closed[0].resyncs() == 0


async def test_a_round_stops_when_the_layer_fails_again(
    watchdog: LayerWatchdog, monkeypatch: pytest.MonkeyPatch
) -> None:
    log: list[tuple[Socket, float]] = []
    sockets = [Socket(log) for _ in range(30)]
    for socket in sockets:
        watchdog.register(socket)

    async def pause(seconds: float) -> None:
        watchdog.report_failure(ConnectionError("down again"))

    monkeypatch.setattr(watchdog, "between_batches", pause)
    watchdog.report_failure(ConnectionError("down"))
    await recover(watchdog)
    # The first batch, then none: the next recovery resyncs every one of them.
    assert len(log) == 10 and not watchdog.healthy
    monkeypatch.setattr(watchdog, "between_batches", lambda seconds: asyncio.sleep(0))
    await recover(watchdog)
    assert sorted(socket.resyncs() for socket in sockets) == [1] * 20 + [2] * 10


# -- on a layer over several nodes: the probe tells which failed, and only their sockets are resynced ----


class NodesLayer:
    """Three nodes, as wsgateway's Redis layer spreads groups over them (extensions.NODES). A node in
    ``refusing`` refuses every call (a Redis that is stopped); one in ``silent`` takes a send and
    never delivers it (a subscriber that has not reconnected yet)."""

    extensions = [JOIN_CONFIRMED, NODES]
    count = 3

    def __init__(self) -> None:
        self.refusing: set[int] = set()
        self.silent: set[int] = set()
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.drops = [0] * self.count

    def node_drops(self) -> list[int]:
        return list(self.drops)

    def node_groups(self, base: str) -> list[str]:
        return names_per_node(base, self.count)

    def node_index(self, name: str) -> int:
        return node_of(name, self.count)

    async def new_channel(self) -> str:
        return "probe!1"

    async def group_add(self, group: str, channel: str) -> None:
        if self.node_index(group) in self.refusing:
            raise ConnectionError("refused")

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        if self.node_index(group) in self.refusing:
            raise ConnectionError("refused")
        if self.node_index(group) not in self.silent:
            self.queue.put_nowait(message)

    async def receive(self, channel: str) -> dict[str, Any]:
        return await self.queue.get()


class Membership:
    def __init__(self, *groups: str) -> None:
        self.groups = groups


class Member(Socket):
    """A socket in its user's group (on ``node``) and the group of every socket."""

    def __init__(self, log: list[tuple[Socket, float]], node: int) -> None:
        super().__init__(log)
        user = next(
            f"wsgateway.user.{n}" for n in range(1, 1000) if node_of(f"wsgateway.user.{n}", 3) == node
        )
        self.membership = Membership(user, EVERY)
        self.node = node


EVERY = "wsgateway.all"
#: A node that does not carry the group of every socket: its outage misses no broadcast.
DOWN = next(node for node in range(3) if node != node_of(EVERY, 3))


async def test_a_probe_says_which_nodes_it_could_not_go_through() -> None:
    layer = NodesLayer()
    watchdog = LayerWatchdog(layer)
    assert await watchdog.check() and watchdog.unreached == set()
    layer.refusing = {DOWN}
    with pytest.raises(ConnectionError):
        await watchdog.check()
    assert watchdog.unreached == {DOWN}  # its send was refused
    layer.refusing, layer.silent = set(), {DOWN, 0}
    with pytest.raises(TimeoutError):
        await watchdog.check()
    assert watchdog.unreached == {DOWN, 0}  # their tokens did not come back
    layer.silent = set()
    assert await watchdog.check() and watchdog.unreached == set()


async def test_a_node_back_resyncs_the_sockets_with_a_group_on_it_and_no_other(
    watchdog: LayerWatchdog,
) -> None:
    watchdog = LayerWatchdog(NodesLayer())
    log: list[tuple[Socket, float]] = []
    sockets = [Member(log, node) for node in (0, 1, 2) for _ in range(4)]
    for socket in sockets:
        watchdog.register(socket)
    watchdog.report_failure(ConnectionError("refused"), {DOWN})  # as run() reports a probe that failed
    watchdog.report_failure(ConnectionError("a push failed"))  # no node named: taken to be that one's
    await recover(watchdog)
    assert {socket.node for socket, _ in log} == {DOWN} and len(log) == 4
    assert all(socket.resyncs() == (socket.node == DOWN) for socket in sockets)
    # The node of every socket's group: every socket can have missed a broadcast.
    watchdog.report_failure(ConnectionError("refused"), {node_of(EVERY, 3)})
    await recover(watchdog)
    assert len(log) == 4 + len(sockets)
    # A failure no probe located: any node's, as on a layer of one node.
    watchdog.report_failure(ConnectionError("down"))
    await recover(watchdog)
    assert len(log) == 4 + 2 * len(sockets)


async def test_a_round_stopped_by_another_nodes_failure_leaves_its_sockets_to_the_next_round(
    watchdog: LayerWatchdog, monkeypatch: pytest.MonkeyPatch
) -> None:
    watchdog = LayerWatchdog(NodesLayer())
    log: list[tuple[Socket, float]] = []
    other = next(node for node in range(3) if node not in (DOWN, node_of(EVERY, 3)))
    first = [Member(log, DOWN) for _ in range(25)]
    second = [Member(log, other) for _ in range(5)]
    for socket in first + second:
        watchdog.register(socket)

    async def pause(seconds: float) -> None:  # after the first batch of ten: the other node fails
        watchdog.report_failure(ConnectionError("refused"), {other})

    monkeypatch.setattr(watchdog, "between_batches", pause)
    watchdog.report_failure(ConnectionError("refused"), {DOWN})
    await recover(watchdog)
    assert len(log) == 10 and len(watchdog.owed) == 15
    monkeypatch.setattr(watchdog, "between_batches", lambda seconds: asyncio.sleep(0))
    await recover(watchdog)  # for the other node: its sockets, and the 15 the first round owed
    assert [socket.resyncs() for socket in first + second] == [1] * 30
    assert not watchdog.owed


async def test_a_subscription_that_dropped_between_two_probes_is_its_nodes_outage() -> None:
    layer = NodesLayer()
    watchdog = LayerWatchdog(layer)
    layer.drops = [0, 3, 0]  # before the first look: a baseline, not an outage
    assert watchdog.dropped() == set()
    assert watchdog.dropped() == set()
    layer.drops = [0, 3, 1]  # dropped and back, with every probe passing
    assert watchdog.dropped() == {2}
    assert watchdog.dropped() == set()  # counted once
