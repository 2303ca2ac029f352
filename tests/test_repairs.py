"""A push that failed is repaired: once the layer takes a send again, every socket of its users
catches up (wsgateway.repairs), whether the next push or the watchdog's next probe finds it back.

The failure is made at the call (``pushing.push_many`` raising, as a full pool or a Redis blip
would): what is tested is what follows it, through a real layer (in-process, and Redis) to a real
consumer.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import channel_layers
from django.test import override_settings

from tests.support.communicators import Socket, connected, create_user, frame
from wsgateway import metrics, repairs
from wsgateway.notifications import notify, pushing

KINDS = [pytest.param("inprocess"), pytest.param("redis", marks=pytest.mark.redis)]


# -- the part, without a socket ----------------------------------------------------------------


def test_a_user_is_kept_once_in_order_and_taken_once() -> None:
    pending = repairs.PendingRepairs(limit=5)
    assert pending.add([3, 1, 3]) == 0
    assert pending.add([1, 2]) == 0
    assert len(pending) == 3
    assert pending.take() == [3, 1, 2]
    assert pending.take() == [] and not pending


def test_the_process_keeps_as_many_as_max_pending_repairs_says() -> None:
    pending = repairs.PendingRepairs()
    assert pending.limit == 10_000  # the default
    with override_settings(WSGATEWAY={"MAX_PENDING_REPAIRS": 2}):
        assert pending.add([1, 2, 3]) == 1
        assert pending.take() == [1, 2]
    assert repairs.PENDING.limit == 10_000


def test_past_its_limit_a_user_is_counted_and_logged_once_an_episode(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="wsgateway")
    pending = repairs.PendingRepairs(limit=2)
    before = metrics.value(metrics.PUSH_UNREPAIRED)
    assert pending.add([1, 2, 3, 4]) == 2
    assert pending.add([1, 5]) == 1  # 1 is kept already; 5 does not fit
    assert metrics.value(metrics.PUSH_UNREPAIRED) - before == 3
    assert len([r for r in caplog.records if "wait for repair" in r.getMessage()]) == 1
    assert pending.take() == [1, 2]
    assert pending.add([6, 7, 8]) == 1  # a new episode: logged again
    assert len([r for r in caplog.records if "wait for repair" in r.getMessage()]) == 2


def test_a_repair_the_layer_refuses_keeps_its_users(monkeypatch: pytest.MonkeyPatch) -> None:
    def down(items: Any) -> None:
        raise ConnectionError("still down")

    monkeypatch.setattr(repairs, "send_to_groups", down)
    repairs.push_failed([7, 8])
    before = metrics.value(metrics.PUSH_REPAIRED)
    assert repairs.repair() == 0
    assert repairs.PENDING.take() == [7, 8]
    assert metrics.value(metrics.PUSH_REPAIRED) == before


def test_nothing_pending_sends_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[Any] = []
    monkeypatch.setattr(repairs, "send_to_groups", sent.append)
    assert repairs.repair() == 0
    assert sent == []


# -- through a layer to a socket ----------------------------------------------------------------


def layer_config(kind: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    if kind == "redis":
        url = request.getfixturevalue("redis_url")
        return {"BACKEND": "wsgateway.layers.redis.RedisChannelLayer", "CONFIG": {"hosts": [url]}}
    return {"BACKEND": "wsgateway.layers.InProcessChannelLayer"}


def failing_once(monkeypatch: pytest.MonkeyPatch) -> None:
    real = pushing.push_many

    def once(pushes: Any) -> None:
        monkeypatch.setattr(pushing, "push_many", real)
        raise ConnectionError("Redis blinked")

    monkeypatch.setattr(pushing, "push_many", once)


async def caught_up(socket: Socket, within: float = 2) -> dict[str, Any]:
    """The resync frame (within ``within`` seconds), then the connect frames again; returns the
    notifications' one."""
    assert await socket.receive(within) == frame("gateway", {"resync": True})
    notifications = await socket.receive()
    assert notifications["channel"] == "notifications"
    assert (await socket.receive())["channel"] == "clipboard"
    return notifications


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", KINDS)
async def test_the_next_push_from_the_process_repairs_a_failed_one(
    kind: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    with override_settings(CHANNEL_LAYERS={"default": layer_config(kind, request)}):
        try:
            ann, bob = await create_user("ann"), await create_user("bob")
            repaired = metrics.value(metrics.PUSH_REPAIRED)
            async with connected(ann) as ann_socket, connected(bob) as bob_socket:
                failing_once(monkeypatch)
                await database_sync_to_async(notify)(ann, "missed")
                assert await ann_socket.receive_nothing()
                assert list(repairs.PENDING._users) == [ann.pk]
                # Bob's push goes through: the layer is back, and ann's sockets are told.
                await database_sync_to_async(notify)(bob, "for bob")
                assert (await bob_socket.receive())["payload"]["last"]["label"] == "for bob"
                notifications = await caught_up(ann_socket)
                assert [n["label"] for n in notifications["payload"]["missed"]] == ["missed"]
                assert notifications["payload"]["seq"] == 1
                assert await bob_socket.receive_nothing()  # bob missed nothing: not resynced
            assert metrics.value(metrics.PUSH_REPAIRED) - repaired == 1
            assert not repairs.PENDING
        finally:
            channel_layers.backends.clear()


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
async def test_the_watchdog_repairs_a_failed_push_when_no_other_comes(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process whose sockets a layer reaches from other processes runs the watchdog (Redis)."""
    with override_settings(CHANNEL_LAYERS={"default": layer_config("redis", request)}):
        try:
            ann = await create_user("ann")
            async with connected(ann) as socket:
                failing_once(monkeypatch)
                await database_sync_to_async(notify)(ann, "missed")
                # No other push: the watchdog's next probe that passes (PROBE_INTERVAL, 1 s) repairs it.
                notifications = await caught_up(socket, within=5)
                assert [n["label"] for n in notifications["payload"]["missed"]] == ["missed"]
        finally:
            channel_layers.backends.clear()
