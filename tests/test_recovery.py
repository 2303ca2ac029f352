"""The watchdog's recovery after a real outage: a redis-server of this test's own, stopped and started.

Sockets here are what the watchdog holds of them (a ``resync`` that records when it ran). Those open
when Redis went away are resynced exactly once after it is back, paced (``RESYNC_RATE`` a second, in
batches a tenth of it, asserted with margin as an upper bound on the rate: a loaded machine is only
slower); those that connected after the failure was noticed missed nothing and are not resynced.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tests.support.servers import RedisServer
from wsgateway import health
from wsgateway.health import LayerWatchdog
from wsgateway.layers.redis import RedisChannelLayer

pytestmark = [pytest.mark.redis, pytest.mark.timeout(60)]

RATE = 100
BEFORE = 25
AFTER = 5


class Socket:
    def __init__(self, log: list[tuple[Socket, float]]) -> None:
        self.log = log

    async def resync(self) -> None:
        self.log.append((self, time.monotonic()))

    def resyncs(self) -> int:
        return sum(1 for socket, _ in self.log if socket is self)


@pytest.fixture
async def outage(
    monkeypatch: pytest.MonkeyPatch, settings: Any
) -> AsyncIterator[tuple[RedisServer, RedisChannelLayer]]:
    monkeypatch.setattr(health, "PROBE_INTERVAL", 0.1)
    monkeypatch.setattr(health, "PROBE_TIMEOUT", 0.5)
    settings.WSGATEWAY = {"RESYNC_RATE": RATE}
    server = RedisServer().start()
    layer = RedisChannelLayer(hosts=[server.url], prefix="recovery")
    try:
        yield server, layer
    finally:
        await layer.close()
        server.stop()


async def until(condition: Callable[[], bool], within: float) -> None:
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 (a state of the watchdog's own: no event to wait on)
            await asyncio.sleep(0.02)


async def test_a_join_after_redis_is_back_waits_for_the_subscriber_and_misses_nothing(
    outage: tuple[RedisServer, RedisChannelLayer],
) -> None:
    """The race a skipped resync would lose to: redis-py's pool reconnects at the first command after
    Redis is back, the subscriber up to half a second later. A join in between raised (its connect is
    refused, and retried); one that returns is live, for a group this process already subscribed to."""
    server, layer = outage
    old = await layer.new_channel()
    await layer.group_add("team", old)
    server.stop()
    with pytest.raises(Exception):  # noqa: B017 (any failure of the layer; redis-py's kinds vary)
        await layer.group_send("team", {"type": "gateway.push", "n": 0})
    await until(lambda: layer._state().failing, 10)
    server.start()
    refused = 0
    new = await layer.new_channel()
    async with asyncio.timeout(20):
        while True:
            try:
                await layer.group_add("team", new)
                break
            except Exception:
                refused += 1
                await asyncio.sleep(0.01)
    await layer.group_send("team", {"type": "gateway.push", "n": 1})  # at once after the join
    assert (await asyncio.wait_for(layer.receive(new), 5))["n"] == 1
    assert (await asyncio.wait_for(layer.receive(old), 5))["n"] == 1
    assert refused >= 1  # it did wait for the subscriber


async def test_after_redis_stops_and_starts_the_sockets_open_before_are_resynced_once_and_paced(
    outage: tuple[RedisServer, RedisChannelLayer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The watchdog's rounds are driven here (what its task does each PROBE_INTERVAL: a check, a failure
    reported, a recovery), so that the sockets that connect during the outage do so at a known point:
    once a join of theirs went through, as a real connect's must."""
    monkeypatch.setattr(health, "PROBE_INTERVAL", 3600)
    server, layer = outage
    log: list[tuple[Socket, float]] = []
    watchdog = LayerWatchdog(layer)
    before = [Socket(log) for _ in range(BEFORE)]
    for socket in before:
        watchdog.register(socket)
    assert await watchdog.check()
    server.stop()
    with pytest.raises(Exception):  # noqa: B017 (any failure of the layer; redis-py's kinds vary)
        await watchdog.check()
    watchdog.report_failure(ConnectionError("the probe failed"))
    server.start()
    channel = await layer.new_channel()
    async with asyncio.timeout(20):
        while True:  # a connect's join: refused until the subscriber is back
            try:
                await layer.group_add("late", channel)
                break
            except Exception:
                await asyncio.sleep(0.01)
    after = [Socket(log) for _ in range(AFTER)]
    for socket in after:
        watchdog.register(socket)  # connected with Redis back: nothing to miss
    assert await watchdog.check()
    watchdog.recovered()
    assert watchdog.resyncing is not None
    await watchdog.resyncing
    assert [socket.resyncs() for socket in before] == [1] * BEFORE
    assert [socket.resyncs() for socket in after] == [0] * AFTER
    # 25 at 100 a second: batches of 10, 10 and 5, two pauses of 0.1 s between them.
    times = [at for _, at in log]
    assert times[-1] - times[0] >= 0.2 * 0.9
    assert sum(1 for at in times if at - times[0] < 0.09) <= 10
    for socket in before + after:
        watchdog.unregister(socket)
    assert watchdog.task is not None
    watchdog.task.cancel()
