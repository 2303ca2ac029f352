"""Session connects that arrive together share their trip too (issue 24): the session connects of a loop
waiting to authenticate go to the database thread together (wsgateway.sessions.SessionReads, a
wsgateway.trips part), and with the ``db`` engine read their sessions in one statement and their
users in one more, each then judged as it would be alone.

First :func:`sessions.session_users` on its own (sync, no socket), then session connects gathered at
once straight into the consumer through Channels' communicator.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import get_user, get_user_model
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from tests.support.communicators import TIMEOUT, Socket, communicator, cookie, create_user, error_frame
from tests.support.connect_trips import (
    OLDER_SECRET,
    SESSION_BACKENDS,
    SESSION_CHANGES,
    ConnectTrips,
    changed_sessions,
    session_of,
)
from tests.support.postgres import rerun_on_postgresql, thread_closes_its_connection  # noqa: F401 (autouse)
from wsgateway import connect_reads, sessions
from wsgateway.codes import CloseCode
from wsgateway.sessions import SessionReads, read_user_together, session_store, session_user, session_users

pytestmark = pytest.mark.django_db(transaction=True)


#: Session connects gathered at once below.
N = 20

BACKENDS = SESSION_BACKENDS
CHANGES = SESSION_CHANGES


# -- session_users: many sessions, each as session_user (and Django's get_user) finds it -------------


def read(stores: list[Any]) -> list[tuple[Any, float | None]]:
    """:func:`session_users` of ``stores``, none of which raised."""
    results = session_users(stores)
    found = [result for result in results if not isinstance(result, Exception)]
    assert len(found) == len(results), results
    return found


@pytest.fixture
def fallbacks() -> Iterator[None]:
    with override_settings(AUTHENTICATION_BACKENDS=BACKENDS, SECRET_KEY_FALLBACKS=[OLDER_SECRET]):
        yield


def test_sessions_read_together_are_each_found_as_djangos_get_user_finds_it(fallbacks: None) -> None:
    changed = {change: changed_sessions(change, f"user-{i}") for i, change in enumerate(CHANGES)}
    missing = session_store("n0such5ession0000000000000000000")
    stores = [session_store(keys[0]) for _, keys in changed.values()] + [missing]
    results = read(stores)
    for (change, (user, keys)), (found, expires_at) in zip(changed.items(), results, strict=False):
        expected = get_user(SimpleNamespace(session=session_store(keys[1])))  # type: ignore[arg-type]
        assert (found.pk, found.is_authenticated) == (expected.pk, expected.is_authenticated), change
        assert found.is_authenticated == (change in ("none", "other backend", "fallback secret")), change
        if found.is_authenticated:
            assert found.username == user.username
        # The row was read with the session, unless expired (no session then).
        assert (expires_at is None) == (change == "expired"), change
    found, expires_at = results[-1]
    assert not found.is_authenticated and expires_at is None


def test_sessions_of_a_trip_are_one_statement_and_their_users_one_more() -> None:
    users = [get_user_model().objects.create_user(f"user{i}", password="x") for i in range(N)]
    keys = [session_of(user) for user in users]
    with CaptureQueriesContext(connection) as lone:
        for key in keys[:3]:
            session_user(session_store(key))
    with CaptureQueriesContext(connection) as together:
        results = read([session_store(key) for key in keys])
    assert len(lone) == 2 * 3  # each alone: its session, its user
    assert len(together) == 2, [query["sql"] for query in together.captured_queries]
    assert "IN (" in together[0]["sql"] and "django_session" in together[0]["sql"]
    assert [user.pk for user, _ in results] == [user.pk for user in users]
    assert len({id(user) for user, _ in results}) == N  # each socket its own user object


def test_a_session_that_is_one_of_a_trip_alone_costs_what_it_did() -> None:
    user = get_user_model().objects.create_user("ann", password="x")
    key = session_of(user)
    with CaptureQueriesContext(connection) as together:
        [(found, _)] = read([session_store(key)])
    assert found.pk == user.pk
    assert len(together) == 2 and all(" IN (" not in query["sql"] for query in together)


def test_a_user_in_two_sessions_of_a_trip_and_a_session_twice_are_each_their_own() -> None:
    ann, bob = (get_user_model().objects.create_user(name, password="x") for name in ("ann", "bob"))
    first, second, bobs = session_of(ann), session_of(ann), session_of(bob)
    stores = [session_store(first), session_store(second), session_store(first), session_store(bobs)]
    found = [user for user, _ in read(stores)]
    assert [user.pk for user in found] == [ann.pk, ann.pk, ann.pk, bob.pk]
    assert len({id(user) for user in found}) == 4  # each socket its own user object
    assert [store.session_key for store in stores] == [first, second, first, bobs]


def test_a_session_whose_read_raises_costs_only_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    users = [get_user_model().objects.create_user(f"user{i}", password="x") for i in range(3)]
    stores = [session_store(session_of(user)) for user in users]
    decode = type(stores[1]).decode

    def broken(store: Any, data: str) -> Any:
        if store is stores[1]:
            raise RuntimeError("a broken serializer, for this session only")
        return decode(store, data)

    monkeypatch.setattr(type(stores[1]), "decode", broken)
    first, failed, third = session_users(stores)
    assert isinstance(failed, RuntimeError)
    assert not isinstance(first, Exception) and not isinstance(third, Exception)
    assert [first[0].pk, third[0].pk] == [users[0].pk, users[2].pk]


@pytest.mark.parametrize(
    "engine",
    ["django.contrib.sessions.backends.cache", "django.contrib.sessions.backends.cached_db"],
)
def test_another_engine_reads_each_session_alone_and_finds_the_same(engine: str) -> None:
    with override_settings(SESSION_ENGINE=engine):
        users = [get_user_model().objects.create_user(f"user{i}", password="x") for i in range(3)]
        keys = [session_of(user) for user in users]
        results = read([session_store(key) for key in keys] + [session_store("n0such5ession")])
    assert [user.pk for user, _ in results[:3]] == [user.pk for user in users]
    assert not results[3][0].is_authenticated


# -- session connects gathered at once, through the consumer ---------------------------------------


async def sessions_of(names: list[str]) -> list[tuple[Any, str]]:
    users = [await create_user(name) for name in names]
    return [(user, await database_sync_to_async(session_of)(user)) for user in users]


def session_cookie(key: str) -> tuple[bytes, bytes]:
    return cookie(**{settings.SESSION_COOKIE_NAME: key})


async def connect_all(keys: list[str]) -> list[tuple[Socket, bool]]:
    sockets = [Socket(communicator(headers=[session_cookie(key)])) for key in keys]
    answers = await asyncio.gather(*(socket.communicator.connect(timeout=TIMEOUT) for socket in sockets))
    return [(socket, accepted) for socket, (accepted, _) in zip(sockets, answers, strict=True)]


async def test_session_connects_together_share_one_trip_for_their_sessions_and_fewer_statements(
    database_trips: list[str],
) -> None:
    browsers = await sessions_of([f"user{i}" for i in range(N + 1)])
    with ConnectTrips().installed() as trips:
        alone = Socket(communicator(headers=[session_cookie(browsers[0][1])]))
        with trips.counted():
            assert (await alone.communicator.connect(timeout=TIMEOUT))[0]
            await alone.receive()
        lone = len(trips.steps["authenticate"].queries)
        database_trips.clear()
        with trips.counted():
            connects = await connect_all([key for _, key in browsers[1:]])
            for socket, accepted in connects:
                assert accepted
                await socket.receive()
        together = len(trips.steps["authenticate"].queries)
    sockets = [alone, *(socket for socket, _ in connects)]
    for socket in sockets:
        await socket.communicator.disconnect(timeout=TIMEOUT)
    # The first trip starts at the loop's next turn, when every connect gathered has asked (nothing
    # before the session's read waits for a thread or a server on the in-process layer): one trip,
    # where alone they make N. Two allows for one put a turn behind by a change of the steps before.
    session_trips = database_trips.count("session_users")
    assert 1 <= session_trips <= 2, database_trips
    # Alone: the session and its user. Together: one statement for the sessions, one for the users, a
    # trip (a trip of one makes what a lone connect makes).
    assert lone == 2
    assert together <= 2 * session_trips < N * lone, trips.steps["authenticate"].queries


async def test_refused_sessions_in_a_trip_cost_only_their_sockets_each_its_own_user(fallbacks: None) -> None:
    browsers = await sessions_of([f"user{i}" for i in range(N)])
    expired = await database_sync_to_async(changed_sessions)("expired", "expired")
    changed = await database_sync_to_async(changed_sessions)("password", "changed")
    missing = "n0such5ession0000000000000000000"
    keys = [key for _, key in browsers]
    # Spread through the trip: the first, one in the middle, the last.
    keys.insert(0, expired[1][0])
    keys.insert(N // 2, changed[1][0])
    keys.append(missing)
    refused = {expired[1][0], changed[1][0], missing}
    users = iter(user for user, _ in browsers)
    connects = await connect_all(keys)
    try:
        for key, (socket, accepted) in zip(keys, connects, strict=True):
            assert accepted  # refused with a frame and a close, as alone
            if key in refused:
                # What each would get alone (tests/test_auth.py): unauthorized, then 4401.
                assert await socket.receive() == error_frame("gateway", "unauthorized")
                assert await socket.close_code() == CloseCode.UNAUTHORIZED
            else:
                user = next(users)
                hello = await socket.receive()
                assert hello["payload"]["user"] == {"id": user.pk, "username": user.username}
    finally:
        for socket, _ in connects:
            await socket.communicator.disconnect(timeout=TIMEOUT)


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_session_connects_together_on_postgresql() -> None:
    rerun_on_postgresql(__file__, ON_POSTGRESQL)


#: The plain SQL's IN statements, on the database a site runs (the rest is the same on any).
ON_POSTGRESQL = [
    "test_sessions_read_together_are_each_found_as_djangos_get_user_finds_it",
    "test_sessions_of_a_trip_are_one_statement_and_their_users_one_more",
    "test_session_connects_together_share_one_trip_for_their_sessions_and_fewer_statements",
    "test_refused_sessions_in_a_trip_cost_only_their_sockets_each_its_own_user",
]


# -- the part: one per loop, cancellation ----------------------------------------------------------


async def test_a_session_connect_cancelled_while_it_waits_costs_the_others_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    browsers = await sessions_of(["first", "gone", "staying"])
    stores = [session_store(key) for _, key in browsers]
    trips: list[list[Any]] = []
    entered, release = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    real = sessions.session_users

    def held(asked: list[Any]) -> list[Any]:
        trips.append([store.session_key for store in asked])
        if len(trips) == 1:
            loop.call_soon_threadsafe(entered.set)
            asyncio.run_coroutine_threadsafe(release.wait(), loop).result(TIMEOUT)
        return real(asked)

    monkeypatch.setattr(sessions, "session_users", held)
    first = asyncio.ensure_future(read_user_together(stores[0]))
    await asyncio.wait_for(entered.wait(), TIMEOUT)
    gone, staying = (asyncio.ensure_future(read_user_together(store)) for store in stores[1:])
    await asyncio.sleep(0)
    gone.cancel()
    release.set()
    assert (await first)[0].username == "first" and (await staying)[0].username == "staying"
    assert gone.cancelled()
    assert trips == [[stores[0].session_key], [stores[2].session_key]]
    reads = SessionReads.for_loop()
    assert reads.task is None and reads.waiting == []
    assert SessionReads.for_loop() is reads


async def test_each_kind_of_trip_has_its_own_part_on_each_loop() -> None:
    # The connects' reads and the sessions' wait in different queues: a session connect never waits for
    # a trip of snapshots, nor a snapshot for a trip of sessions.
    sessions_here, reads_here = SessionReads.for_loop(), connect_reads.for_loop()
    assert isinstance(sessions_here, SessionReads) and isinstance(reads_here, connect_reads.ConnectReads)
    assert (SessionReads.for_loop(), connect_reads.for_loop()) == (sessions_here, reads_here)
    assert await asyncio.to_thread(asyncio.run, _sessions_of_another_loop()) is not sessions_here


async def _sessions_of_another_loop() -> SessionReads:
    return SessionReads.for_loop()
