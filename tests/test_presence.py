"""Who is online (wsgateway.presence): the process-local part on a fake clock, the Redis layer's
``presence`` extension against a real Redis (two layers standing for two processes), and the signals
as a socket on the in-process layer sends them. tests/test_live_presence.py runs two daphnes."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from channels.layers import get_channel_layer

import wsgateway
from tests.support.communicators import connected
from wsgateway import presence
from wsgateway.conf import gateway_settings
from wsgateway.layers.extensions import PRESENCE, supports
from wsgateway.layers.redis import RedisChannelLayer
from wsgateway.presence import LocalPresence
from wsgateway.signals import user_offline, user_online


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- the part alone --------------------------------------------------------------------------------


def test_a_user_comes_online_with_the_first_socket_only() -> None:
    part = LocalPresence(FakeClock())
    assert part.join("1", "a") is True
    assert part.join("1", "b") is False
    assert part.join("2", "c") is True
    assert part.users() == ["1", "2"]


def test_a_user_stays_online_for_the_grace_after_the_last_socket_and_goes_once() -> None:
    clock = FakeClock()
    part = LocalPresence(clock)
    part.join("1", "a")
    part.join("1", "b")
    part.leave("1", "a")
    clock.now += 100
    assert part.due(30) == [], "a user with a socket open never goes"
    part.leave("1", "b")
    clock.now += 29.9
    assert part.online("1") and part.due(30) == []
    clock.now += 0.1
    assert part.due(30) == ["1"]
    assert not part.online("1") and part.users() == []
    assert part.due(30) == [], "offline once"


def test_a_reconnect_within_the_grace_neither_goes_offline_nor_comes_online() -> None:
    clock = FakeClock()
    part = LocalPresence(clock)
    part.join("1", "a")
    part.leave("1", "a")
    clock.now += 10
    assert part.join("1", "b") is False
    clock.now += 60
    assert part.due(30) == []
    assert part.online("1")


def test_leaving_with_a_socket_never_joined_changes_nothing() -> None:
    part = LocalPresence(FakeClock())
    part.leave("1", "a")
    part.join("2", "b")
    part.leave("2", "other")
    assert part.users() == ["2"] and part.left == {}


def test_a_user_is_online_since_their_first_socket_until_they_go() -> None:
    clock, wall = FakeClock(), FakeClock(1_700_000_000.0)
    part = LocalPresence(clock, wall)
    part.join("1", "a")
    wall.now += 5
    part.join("2", "b")
    part.join("1", "c")  # a second socket: still online since the first
    assert part.since == {"1": 1_700_000_000.0, "2": 1_700_000_005.0}
    assert part.page(0, 10) == (2, [("1", 1_700_000_000.0), ("2", 1_700_000_005.0)])
    assert part.page(1, 10) == (2, [("2", 1_700_000_005.0)])
    part.leave("1", "a")
    part.leave("1", "c")
    wall.now += 10
    part.join("1", "d")  # back within the grace: the same stretch online
    assert part.since["1"] == 1_700_000_000.0
    part.leave("1", "d")
    clock.now += 30
    assert part.due(30) == ["1"]
    assert part.since == {"2": 1_700_000_005.0}, "forgotten with the user_offline"
    wall.now += 1
    part.join("1", "e")
    assert part.since["1"] == 1_700_000_016.0, "a new stretch online"


class Received:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def online(self, sender: Any, user_id: str, **kwargs: Any) -> None:
        self.events.append(("online", user_id))

    def offline(self, sender: Any, user_id: str, **kwargs: Any) -> None:
        self.events.append(("offline", user_id))


@pytest.fixture
def received() -> Iterator[Received]:
    found = Received()
    user_online.connect(found.online)
    user_offline.connect(found.offline)
    yield found
    user_online.disconnect(found.online)
    user_offline.disconnect(found.offline)


# -- the Redis layer's extension: two layers on one Redis are two processes --------------------------


@pytest.fixture
async def processes(redis_url: str) -> AsyncIterator[tuple[RedisChannelLayer, RedisChannelLayer]]:
    prefix = f"presence-{secrets.token_hex(4)}"
    first = RedisChannelLayer(hosts=[redis_url], prefix=prefix, connection_expiry=0.5)
    second = RedisChannelLayer(hosts=[redis_url], prefix=prefix, connection_expiry=0.5)
    yield first, second
    await first._state().client.delete(first.online_key, first.since_key)
    for layer in (first, second):
        await layer.close()


@pytest.mark.redis
def test_only_the_redis_layer_declares_presence() -> None:
    from wsgateway.layers import InProcessChannelLayer

    assert supports(RedisChannelLayer, PRESENCE)
    assert not supports(InProcessChannelLayer, PRESENCE)


@pytest.mark.redis
async def test_one_process_of_two_brings_a_user_online(processes: tuple[RedisChannelLayer, ...]) -> None:
    first, second = processes
    outcomes = await asyncio.gather(first.presence_join("7"), second.presence_join("7"))
    assert sorted(outcomes) == [False, True]
    assert await second.presence_online("7") and not await second.presence_online("8")


@pytest.mark.redis
async def test_one_process_of_two_takes_a_user_offline_after_the_grace(
    processes: tuple[RedisChannelLayer, ...],
) -> None:
    first, second = processes
    await first.connection_add("7", "ws.a", 5)
    await first.presence_join("7")
    assert await second.presence_sweep(["7"], 0.2) == [], "a socket is open"
    await first.connection_discard("7", "ws.a")
    await first.presence_leave("7")
    assert await second.presence_sweep(["7"], 0.2) == [], "within the grace"
    await asyncio.sleep(0.3)
    outcomes = await asyncio.gather(first.presence_sweep(["7"], 0.2), second.presence_sweep(["7"], 0.2))
    assert sorted(outcomes) == [[], ["7"]]
    assert not await first.presence_online("7")


@pytest.mark.redis
async def test_a_socket_on_another_process_keeps_a_user_online(
    processes: tuple[RedisChannelLayer, ...],
) -> None:
    first, second = processes
    await first.connection_add("7", "ws.a", 5)
    await second.connection_add("7", "ws.b", 5)
    await first.presence_join("7")
    assert await second.presence_join("7") is False
    await first.connection_discard("7", "ws.a")
    await first.presence_leave("7")
    await asyncio.sleep(0.3)
    await second.connection_renew([("7", "ws.b")])
    assert await first.presence_sweep(["7"], 0.2) == []
    assert await first.presence_online("7")


@pytest.mark.redis
async def test_the_users_of_a_dead_process_go_offline_after_their_registrations_expire(
    processes: tuple[RedisChannelLayer, ...],
) -> None:
    first, second = processes
    await first.connection_add("7", "ws.a", 5)  # never discarded nor renewed: its process died
    await first.presence_join("7")
    assert await second.presence_sweep(["7"], 0.2) == []  # seen now: the registration is alive
    await asyncio.sleep(0.55)  # past connection_expiry (0.5 s), not yet the grace after the last sighting
    assert await second.connections("7") == []
    await asyncio.sleep(0.2)
    assert await second.presence_sweep(["7"], 0.2) == ["7"]


@pytest.mark.redis
async def test_many_users_states_are_one_read_a_page(
    processes: tuple[RedisChannelLayer, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = processes
    await first.presence_join("3")
    await second.presence_join("5")
    assert await first.presence_online_many(["3", "4", "5"]) == [True, False, True]
    assert await first.presence_online_many([]) == []
    monkeypatch.setattr(presence, "channel_layer", lambda: second)
    calls = []
    real = second.presence_online_many

    async def counted(users: list[str]) -> list[bool]:
        calls.append(len(users))
        return await real(users)

    monkeypatch.setattr(second, "presence_online_many", counted)
    states = await presence.aonline_among([*range(250), "5"])
    assert calls == [presence.MAX_PAGE, presence.MAX_PAGE, 50]  # "5" once: 250 distinct users
    assert [user for user, online in states.items() if online] == ["3", "5"]


@pytest.mark.redis
async def test_the_online_users_are_read_a_bounded_page_at_a_time(
    processes: tuple[RedisChannelLayer, ...],
) -> None:
    first, _ = processes
    users = [str(n) for n in range(1200)]
    for user in users:
        await first.presence_join(user)
    found: set[str] = set()
    cursor, pages = 0, 0
    while True:
        cursor, page = await first.presence_scan(cursor, 100)
        assert len(page) < 400, "ZSCAN's COUNT bounds a page (a hint, so with room)"
        found.update(page)
        pages += 1
        if cursor == 0:
            break
    assert found == set(users) and pages > 1


@pytest.mark.redis
async def test_a_user_the_layer_lost_while_their_socket_is_open_is_online_again_at_the_next_sweep(
    processes: tuple[RedisChannelLayer, ...], received: Received
) -> None:
    first, _ = processes
    await first.connection_add("7", "ws.a", 5)
    sweeper = presence.sweeper_for(first)
    sweeper.users["ws.a"] = "7"  # as arrive() adds it, without starting the task: the test runs the round
    assert await first.presence_join("7")
    await first._state().client.delete(first.online_key)  # a FLUSHALL, or a stall that let a sweep take them
    assert not await first.presence_online("7")
    await sweeper.sweep()
    assert await first.presence_online("7")
    assert received.events == [("online", "7")]
    await sweeper.sweep()
    assert received.events == [("online", "7")], "once"


@pytest.mark.redis
async def test_since_is_kept_from_the_first_join_until_the_sweep_that_takes_the_user(
    processes: tuple[RedisChannelLayer, ...],
) -> None:
    first, second = processes
    await first.connection_add("7", "ws.a", 5)
    await first.presence_join("7")
    [since] = await second.presence_since(["7"])
    assert since is not None and abs(since - time.time()) < 5, "Redis's clock, Unix time"
    await asyncio.sleep(0.05)
    await second.connection_add("7", "ws.b", 5)
    assert await second.presence_join("7") is False
    await first.presence_renew(["7"])
    assert await first.presence_since(["7", "8"]) == [since, None], "kept by a second join and a renewal"
    assert await first.presence_sockets(["7", "8"]) == [2, 0]
    for layer, channel in ((first, "ws.a"), (second, "ws.b")):
        await layer.connection_discard("7", channel)
        await layer.presence_leave("7")
    await asyncio.sleep(0.3)
    assert await second.presence_sweep(["7"], 0.2) == ["7"]
    assert await first.presence_since(["7"]) == [None]
    assert await first.presence_page(0, 10) == (0, [])
    await first.presence_join("7")
    [again] = await first.presence_since(["7"])
    assert again is not None and again > since, "a new stretch online"


@pytest.mark.redis
async def test_the_online_users_come_in_pages_the_longest_online_first(
    processes: tuple[RedisChannelLayer, ...],
) -> None:
    first, second = processes
    for user in ("3", "1", "2"):
        await first.presence_join(user)
        await asyncio.sleep(0.002)  # Redis's clock in microseconds: each its own time
    await first.connection_add("1", "ws.a", 5)
    total, page = await second.presence_page(0, 2)
    assert total == 3 and [user for user, _ in page] == ["3", "1"]
    assert page[0][1] < page[1][1]
    assert await second.presence_page(2, 2) == (3, [("2", (await first.presence_since(["2"]))[0])])
    assert await second.presence_page(3, 2) == (3, [])
    assert await second.presence_sockets(["3", "1", "2"]) == [0, 1, 0]


@pytest.mark.redis
async def test_a_user_online_without_since_gets_one_at_the_next_renewal(
    processes: tuple[RedisChannelLayer, ...],
) -> None:
    first, _ = processes
    await first.presence_join("7")
    await first._state().client.delete(first.since_key)  # online before the since set existed
    assert await first.presence_since(["7"]) == [None]
    assert await first.presence_renew(["7"]) == [], "online all along: no user_online"
    [since] = await first.presence_since(["7"])
    assert since is not None


# -- the signals, from sockets on the in-process layer -------------------------------------------


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(presence._local, "clock", fake)
    return fake


@pytest.mark.django_db(transaction=True)
async def test_the_signals_come_once_a_reload_sends_none_and_offline_comes_after_the_grace(
    alice: Any, received: Received, clock: FakeClock
) -> None:
    layer = get_channel_layer()
    key = str(alice.pk)
    grace = gateway_settings.PRESENCE_GRACE
    async with connected(alice):
        async with connected(alice):
            assert received.events == [("online", key)]
            assert await wsgateway.ais_online(alice) and await wsgateway.asocket_count(alice) == 2
        assert await wsgateway.asocket_count(alice) == 1
    # Reload: the last socket ended, the next opens within the grace.
    clock.now += 5
    await presence.check(layer, key)
    async with connected(alice):
        pass
    assert received.events == [("online", key)]
    assert await wsgateway.ais_online(alice) and await wsgateway.asocket_count(alice) == 0
    assert await wsgateway.aonline_users() == [key]
    clock.now += grace - 1
    await presence.check(layer, key)
    assert received.events == [("online", key)]
    clock.now += 1
    await presence.check(layer, key)
    await presence.check(layer, key)
    assert received.events == [("online", key), ("offline", key)]
    assert not await wsgateway.ais_online(alice) and await wsgateway.aonline_users() == []


def test_the_sync_api_answers_from_sync_code() -> None:
    presence._local.join("7", "ws.a")
    assert wsgateway.is_online(7) and wsgateway.is_online("7") and not wsgateway.is_online(8)
    assert wsgateway.online_users() == ["7"]
    assert wsgateway.online_since([7, "8"]) == {"7": presence._local.since["7"], "8": None}
    assert presence.online_page() == (1, [presence.OnlineUser("7", presence._local.since["7"], 0)])
    assert wsgateway.socket_count(7) == 0  # joined the presence part alone, no place in the layer


async def test_is_online_refuses_to_block_async_code() -> None:
    with pytest.raises(RuntimeError, match="ais_online"):
        wsgateway.is_online(1)


async def test_since_and_pages_take_bounded_arguments() -> None:
    with pytest.raises(ValueError, match="at most 100"):
        await wsgateway.aonline_since(range(presence.MAX_PAGE + 1))
    assert await wsgateway.aonline_since([1] * (presence.MAX_PAGE + 1)) == {"1": None}, "each user once"
    for offset, count in [(0, 0), (0, presence.MAX_PAGE + 1), (-1, 10), (presence.MAX_ONLINE_USERS, 10)]:
        with pytest.raises(ValueError):
            await presence.aonline_page(offset, count)


@pytest.mark.parametrize("limit", [0, -1, presence.MAX_ONLINE_USERS + 1])
async def test_online_users_takes_a_bounded_limit(limit: int) -> None:
    with pytest.raises(ValueError, match="limit"):
        await wsgateway.aonline_users(limit)


async def test_the_departures_of_one_user_share_one_check() -> None:
    from wsgateway.layers import InProcessChannelLayer

    layer = InProcessChannelLayer()
    channels = ["ws.a", "ws.b", "ws.c"]
    for channel in channels:
        presence._local.join("7", channel)
    for channel in channels:
        await presence.depart(layer, "7", channel)
    await presence.depart(layer, "8", "ws.d")  # never joined: a check, harmless
    timers = presence._timers[asyncio.get_running_loop()]
    try:
        assert sorted(timers) == [(id(layer), "7"), (id(layer), "8")]
        assert presence._local.left.keys() == {"7"}
    finally:
        for timer in timers.values():
            timer.cancel()
        timers.clear()


class ScriptedLayer:
    """The ``presence`` calls a sweeper makes, answered from a script: no Redis."""

    def __init__(self, gone: list[str]) -> None:
        self.gone = gone
        self.renewed: list[list[str]] = []
        #: Set as the second round starts: the first round is over, signals and all.
        self.second_round = asyncio.Event()

    async def presence_renew(self, users: list[str]) -> list[str]:
        self.renewed.append(users)
        if len(self.renewed) == 2:
            self.second_round.set()
        return []

    async def presence_scan(self, cursor: int, count: int) -> tuple[int, list[str]]:
        return 0, ["7", "8", "7"]

    async def presence_sweep(self, users: list[str], grace: float) -> list[str]:
        assert users == ["7", "8"], "each user once"
        gone, self.gone = self.gone, []
        return gone


async def test_the_sweeper_runs_while_its_loop_has_sockets_and_sends_offline_for_what_it_took(
    monkeypatch: pytest.MonkeyPatch, received: Received
) -> None:
    monkeypatch.setattr(presence.PresenceSweeper, "interval", staticmethod(lambda: 0.01))
    layer = ScriptedLayer(gone=["8"])
    sweeper = presence.PresenceSweeper(layer)
    sweeper.add("ws.a", "7")
    sweeper.add("ws.b", "7")
    task = sweeper.task
    assert task is not None
    async with asyncio.timeout(5):
        await layer.second_round.wait()
    assert received.events == [("offline", "8")]
    assert layer.renewed[0] == ["7"], "its users, each once, marked seen"
    sweeper.discard("ws.a")
    assert not task.done()
    sweeper.discard("ws.b")
    async with asyncio.timeout(1):
        await task  # ended by the last discard, not at its next round
