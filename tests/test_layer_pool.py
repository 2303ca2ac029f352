"""The Redis layer's pool of connections (layers.redis_pool) on a real Redis: a full pool is back-pressure.

Before, a loop's pool was redis-py's default (100 connections, then ``MaxConnectionsError`` at once) and
the watchdog counted that as an outage: every socket of the process was resynced with Redis up. Here a
pool of two connections takes a burst of 400 commands in flight: they wait their turn and all succeed;
the watchdog, probing meanwhile, logs no outage and resyncs nobody; a command that waits longer than
``pool_timeout`` fails with PoolExhausted, which the watchdog counts as ``layer.busy``, logged once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.exceptions import MaxConnectionsError

from wsgateway import health, metrics
from wsgateway.health import LayerWatchdog
from wsgateway.layers.extensions import LayerBusy
from wsgateway.layers.redis import RedisChannelLayer
from wsgateway.layers.redis_pool import MAX_POOL_SIZE, PoolExhausted

pytestmark = [pytest.mark.redis, pytest.mark.timeout(60)]

BURST = 400


class Socket:
    """What the watchdog holds of a socket: counts its resyncs."""

    def __init__(self) -> None:
        self.resyncs = 0

    async def resync(self) -> None:
        self.resyncs += 1


@pytest.fixture
async def small_pool(redis_url: str) -> AsyncIterator[RedisChannelLayer]:
    layer = RedisChannelLayer(hosts=[redis_url], prefix="pooltest", pool_size=2, pool_timeout=5)
    try:
        yield layer
    finally:
        await layer.close()


async def test_a_burst_past_the_pool_waits_and_delivers_with_no_outage_and_no_resync(
    small_pool: RedisChannelLayer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(health, "PROBE_INTERVAL", 0.05)
    layer = small_pool
    channel = await layer.new_channel()
    await layer.group_add("burst", channel)
    watchdog = LayerWatchdog(layer)
    sockets = [Socket() for _ in range(3)]
    for socket in sockets:
        watchdog.register(socket)
    failures: list[BaseException] = []

    async def command(number: int) -> None:
        # What many sockets closing at once ask: one command each, all in flight together.
        try:
            await layer.connection_discard(f"user{number}", f"channel{number}")
        except Exception as exc:  # as a consumer does with a failure of the layer
            failures.append(exc)
            watchdog.report_failure(exc)

    with caplog.at_level(logging.WARNING, logger="wsgateway"):
        burst = [asyncio.create_task(command(number)) for number in range(BURST)]
        await asyncio.sleep(0)
        assert layer._state().pool.waiting >= BURST - 2  # two have a connection, the rest wait for one
        await asyncio.gather(*burst)
        await layer.group_send("burst", {"type": "push", "n": 1})
        assert (await asyncio.wait_for(layer.receive(channel), 5))["n"] == 1
        await asyncio.sleep(0.3)  # a few rounds of the watchdog after the burst
    assert failures == []
    assert layer._state().pool.max_connections == 2
    assert watchdog.healthy
    assert [socket.resyncs for socket in sockets] == [0, 0, 0]
    assert "unavailable" not in caplog.text and "busy" not in caplog.text
    for socket in sockets:
        watchdog.unregister(socket)
    await watchdog.task


async def test_a_wait_past_pool_timeout_is_busy_not_an_outage_counted_and_logged_once(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    layer = RedisChannelLayer(hosts=[redis_url], prefix="pooltest", pool_size=2, pool_timeout=0.1)
    try:
        client = layer._state().client
        watchdog = LayerWatchdog(layer)
        busy_before = metrics.value(metrics.LAYER_BUSY)
        # Both connections held for half a second (a blocking pop on a list nobody fills).
        holders = [asyncio.create_task(client.blpop([f"pooltest:nothing{n}"], 0.5)) for n in range(2)]
        await asyncio.sleep(0.05)
        with caplog.at_level(logging.WARNING, logger="wsgateway"):
            for _ in range(2):
                with pytest.raises(PoolExhausted) as raised:
                    await layer.connections("alice")
                assert isinstance(raised.value, LayerBusy) and isinstance(raised.value, MaxConnectionsError)
                watchdog.report_failure(raised.value)
        await asyncio.gather(*holders)
        assert watchdog.healthy
        assert metrics.value(metrics.LAYER_BUSY) - busy_before == 2
        busy_logs = [r for r in caplog.records if "busy" in r.getMessage()]
        assert len(busy_logs) == 1 and "pool_size" in busy_logs[0].getMessage()
        assert await layer.connections("alice") == []  # the pool serves again once its connections return
    finally:
        await layer.close()


@pytest.mark.parametrize(
    "options",
    [
        {"pool_size": 1},
        {"pool_size": MAX_POOL_SIZE + 1},
        {"pool_size": "500"},
        {"pool_size": True},
        {"pool_timeout": 0},
        {"pool_timeout": -1},
        {"pool_timeout": "10"},
        {"pool_timeout": 301},
    ],
)
def test_pool_options_out_of_bounds_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(options))):
        RedisChannelLayer(hosts=["redis://127.0.0.1:1/0"], **options)


async def test_probes_stuck_behind_a_full_pool_that_moves_are_busy_not_an_outage(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ten tasks keep both connections of the pool busy with blocking pops of 0.2 s: a connection comes
    back five times a second, and a probe waits behind the queue longer than its timeout, twice."""
    monkeypatch.setattr(health, "PROBE_TIMEOUT", 0.5)
    layer = RedisChannelLayer(hosts=[redis_url], prefix="pooltest", pool_size=2, pool_timeout=30)
    try:
        watchdog = LayerWatchdog(layer)
        assert await watchdog.check()  # the probe's channel and group, while the pool is free
        client = layer._state().client
        stop = asyncio.Event()

        async def hold(number: int) -> None:
            while not stop.is_set():
                await client.blpop([f"pooltest:nothing{number}"], 0.2)

        holders = [asyncio.create_task(hold(number)) for number in range(10)]
        await asyncio.sleep(0.05)
        busy_before = metrics.value(metrics.LAYER_BUSY)
        assert await watchdog.check() is False  # neither up nor down: back-pressure
        assert watchdog.healthy and metrics.value(metrics.LAYER_BUSY) == busy_before + 1
        stop.set()
        await asyncio.gather(*holders)
        assert await watchdog.check()  # the pool free again, the probe passes
        assert not watchdog.busy
    finally:
        await layer.close()
