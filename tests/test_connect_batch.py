"""Connects that arrive together read the database together (issue 24): one trip to the database thread
for the connects waiting for it (wsgateway.connect_reads), each with its own outcome.

First the part on its own (:class:`ConnectReads`, with the database thread's work stood in for), then
connects gathered at once straight into the consumer through Channels' communicator.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections.abc import Iterator, Sequence
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.test import override_settings
from django.utils import timezone
from django.utils.translation import gettext

from tests.support.communicators import (
    TIMEOUT,
    Socket,
    bearer,
    communicator,
    create_user,
    error_frame,
    frame,
)
from tests.support.connect_trips import ConnectTrips, session_of
from tests.support.postgres import rerun_on_postgresql, thread_closes_its_connection  # noqa: F401 (autouse)
from wsgateway import connect_reads, notify, snapshots
from wsgateway.auth import Identity
from wsgateway.exceptions import AuthenticationFailed
from wsgateway.models import ClipboardEntry, Notification
from wsgateway.services.base import Service
from wsgateway.sessions import session_store
from wsgateway.tokens import issue_token

SITE_SERVICES = [
    "wsgateway.services.notifier.NotifierService",
    "wsgateway.services.clipboard.ClipboardService",
]

# The part's tests too: Channels' database thread closes the connections an earlier test there opened.
pytestmark = pytest.mark.django_db(transaction=True)


#: Connects gathered at once in the tests below.
N = 20


# -- the part, without a socket or a database ------------------------------------------------------


class StandIn:
    """Stands in for :func:`snapshots.connect_reads` in the database thread: records each trip's
    connects (by their user), and can hold a trip until released."""

    def __init__(self) -> None:
        self.trips: list[list[Any]] = []
        self.hold = False
        self.entered = threading.Event()
        #: A held trip waits for one release of it.
        self.gate = threading.Semaphore(0)
        #: Users whose reads raise, and a trip that raises as a whole.
        self.refused: set[Any] = set()
        self.broken = False

    def __call__(self, asked: list[snapshots.Asked]) -> list[Any]:
        self.trips.append([one.identity.user for one in asked])
        self.entered.set()
        if self.hold:
            assert self.gate.acquire(timeout=TIMEOUT)
        if self.broken:
            raise RuntimeError("the database went away")
        return [
            AuthenticationFailed("token_invalid", f"not {one.identity.user}")
            if one.identity.user in self.refused
            else (one.identity.user, {}, None)
            for one in asked
        ]

    def go(self) -> None:
        """Let the held trip go, and the next ones run unheld."""
        self.hold = False
        self.gate.release()

    async def held(self) -> None:
        """Until a trip has entered the stand-in (and, with ``hold``, waits there)."""
        assert await asyncio.to_thread(self.entered.wait, TIMEOUT)
        self.entered.clear()


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> Iterator[StandIn]:
    reads = StandIn()
    monkeypatch.setattr(snapshots, "connect_reads", reads)
    yield reads
    reads.hold = False
    reads.gate.release(10)  # a test that failed holding a trip lets the thread go


def ask(name: str) -> asyncio.Task[Any]:
    return asyncio.ensure_future(connect_reads.read_together(Identity(user=name), {}))


async def settle() -> None:
    """Until every task the test started has run as far as it can (a loop turn or two)."""
    for _ in range(3):
        await asyncio.sleep(0)


async def test_a_lone_connect_goes_at_once_in_a_trip_of_its_own(stand_in: StandIn) -> None:
    assert await connect_reads.read_together(Identity(user="ann"), {}) == ("ann", {}, None)
    assert stand_in.trips == [["ann"]]
    assert connect_reads.for_loop().task is None  # nothing left running after the last trip


async def test_connects_that_ask_during_a_trip_go_together_in_the_next(stand_in: StandIn) -> None:
    stand_in.hold = True
    first = ask("first")
    await stand_in.held()
    waiting = [ask(f"user{i}") for i in range(5)]
    await settle()
    stand_in.go()
    assert (await first)[0] == "first"
    assert [(await task)[0] for task in waiting] == [f"user{i}" for i in range(5)]
    assert stand_in.trips == [["first"], [f"user{i}" for i in range(5)]]


async def test_a_trip_takes_at_most_max_per_trip(stand_in: StandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connect_reads, "MAX_PER_TRIP", 3)
    stand_in.hold = True
    first = ask("first")
    await stand_in.held()
    waiting = [ask(f"user{i}") for i in range(7)]
    await settle()
    stand_in.go()
    await asyncio.gather(first, *waiting)
    assert [len(trip) for trip in stand_in.trips] == [1, 3, 3, 1]
    assert stand_in.trips[1:] == [["user0", "user1", "user2"], ["user3", "user4", "user5"], ["user6"]]


async def test_a_refused_connect_costs_only_itself(stand_in: StandIn) -> None:
    stand_in.refused = {"user2"}
    stand_in.hold = True
    first = ask("first")
    await stand_in.held()
    waiting = {f"user{i}": ask(f"user{i}") for i in range(4)}
    await settle()
    stand_in.go()
    await first
    outcomes = await asyncio.gather(*waiting.values(), return_exceptions=True)
    refused = outcomes.pop(2)
    assert isinstance(refused, AuthenticationFailed) and refused.message == "not user2"
    assert [outcome[0] for outcome in outcomes] == ["user0", "user1", "user3"]


async def test_a_trip_that_fails_fails_each_of_its_connects_and_the_next_trip_goes(stand_in: StandIn) -> None:
    stand_in.broken = True
    outcomes = await asyncio.gather(ask("ann"), ask("bob"), return_exceptions=True)
    assert [str(outcome) for outcome in outcomes] == ["the database went away"] * 2
    stand_in.broken = False
    assert (await ask("cid"))[0] == "cid"


async def test_a_connect_cancelled_while_it_waits_is_left_out_and_the_others_are_read(
    stand_in: StandIn,
) -> None:
    stand_in.hold = True
    first = ask("first")
    await stand_in.held()
    gone, staying = ask("gone"), ask("staying")
    await settle()
    gone.cancel()  # the client went away before its trip
    await settle()
    stand_in.go()
    assert (await first)[0] == "first" and (await staying)[0] == "staying"
    assert gone.cancelled()
    assert stand_in.trips == [["first"], ["staying"]]
    reads = connect_reads.for_loop()
    assert reads.task is None and reads.waiting == []


async def test_a_connect_cancelled_during_its_trip_drops_its_outcome_and_costs_no_other(
    stand_in: StandIn,
) -> None:
    stand_in.hold = True
    first = ask("first")
    await stand_in.held()
    gone, staying = ask("gone"), ask("staying")
    await settle()
    stand_in.gate.release()  # the first trip, and the second is held
    await first
    await stand_in.held()  # the second trip, with both, waits in the thread
    gone.cancel()
    await settle()
    stand_in.go()
    assert (await staying)[0] == "staying"
    assert gone.cancelled()
    assert stand_in.trips == [["first"], ["gone", "staying"]]
    assert connect_reads.for_loop().task is None


async def test_each_event_loop_has_its_own(stand_in: StandIn) -> None:
    reads = connect_reads.for_loop()
    assert connect_reads.for_loop() is reads
    other = await asyncio.to_thread(asyncio.run, _loop_reads())
    assert other is not reads


async def _loop_reads() -> connect_reads.ConnectReads:
    return connect_reads.for_loop()


def test_each_connect_in_a_trip_is_read_in_its_own_context_and_language() -> None:
    """snapshots.connect_reads runs each connect's reads as if it had made the trip alone: in the
    context it asked in, and in its socket's language; one connect's outcome, refused or read, is its
    own."""
    mark: contextvars.ContextVar[str] = contextvars.ContextVar("mark")

    def asked_by(name: str, identity: Identity, language: str) -> snapshots.Asked:
        return snapshots.Asked(identity, {}, contextvars.Context().run(_marked, mark, name), language)

    def refuse() -> Any:
        raise AuthenticationFailed("token_invalid", f"{mark.get()}: " + gettext("The token is not valid."))

    user = SimpleNamespace(pk=1, get_session_auth_hash=lambda: "h")
    german, read, english = snapshots.connect_reads(
        [
            asked_by("ann", Identity(user_id=1, load_user=refuse), "de"),
            asked_by("bob", Identity(user=user), "en"),
            asked_by("cid", Identity(user_id=2, load_user=refuse), "en"),
        ]
    )
    assert isinstance(german, AuthenticationFailed) and german.message == "ann: Das Token ist ungültig."
    assert isinstance(english, AuthenticationFailed) and english.message == "cid: The token is not valid."
    assert not isinstance(read, Exception) and read[0] is user


def _marked(mark: contextvars.ContextVar[str], name: str) -> contextvars.Context:
    mark.set(name)
    return contextvars.copy_context()


# -- connects gathered at once, through the consumer --------------------------------------------


class PickyService(Service):
    """A snapshot that raises for the users named "picky*", and reads nothing for the others."""

    channel = "picky"

    def snapshot(self, user: Any) -> Any:
        if user.username.startswith("picky"):
            raise RuntimeError("a bug in snapshot, for this user only")
        return {"for": user.username}


async def tokens_of(names: list[str]) -> list[tuple[Any, str]]:
    users = [await create_user(name) for name in names]
    return [(user, issue_token(user)) for user in users]


async def connect_together(headers: list[list[tuple[bytes, bytes]]]) -> list[Socket]:
    """Sockets whose handshakes are sent at once, each connected (accepted) before this returns."""
    sockets = [Socket(communicator(headers=each)) for each in headers]
    answers = await asyncio.gather(*(socket.communicator.connect(timeout=TIMEOUT) for socket in sockets))
    assert all(accepted for accepted, _ in answers)
    return sockets


async def connect_frames(socket: Socket) -> list[Any]:
    hello = await socket.receive()
    return [hello] + [await socket.receive() for _ in hello["payload"]["services"]]


async def disconnect(sockets: list[Socket]) -> None:
    for socket in sockets:
        await socket.communicator.disconnect(timeout=TIMEOUT)


async def test_connects_together_cost_fewer_trips_and_fewer_statements_than_alone(
    database_trips: list[str],
) -> None:
    tokens = await tokens_of([f"user{i}" for i in range(N + 1)])
    with ConnectTrips().installed() as trips:
        alone = Socket(communicator(headers=[bearer(tokens[0][1])]))
        with trips.counted():
            assert (await alone.communicator.connect(timeout=TIMEOUT))[0]
            await connect_frames(alone)
        lone_queries = trips.queries
        database_trips.clear()
        with trips.counted():
            sockets = await connect_together([[bearer(token)] for _, token in tokens[1:]])
            for socket in sockets:
                await connect_frames(socket)
        together_queries = trips.queries
    await disconnect([alone, *sockets])
    # A connect that asks while a trip runs waits for the next: the first goes alone, at once, and
    # the others (each a few awaits behind, on the same loop) mostly go together after it.
    # The first trip starts at the loop's next turn, and on the in-process layer (no trip to a thread
    # or a server before the reads, for a token) every connect gathered has asked by then: one trip,
    # where alone they make N. Two allows for one put a turn behind by a change of the steps before.
    assert 1 <= database_trips.count("connect_reads") <= 2, database_trips
    # Alone: the user, the notifications' statement and the clipboard's, each connect. Together: one
    # each a trip, for the tokens' users (TokenUser.read_together) and for each of the two services
    # (their set-based snapshots); a trip of one connect makes what a lone connect makes.
    assert lone_queries == 3
    assert together_queries <= 3 * database_trips.count("connect_reads"), together_queries


async def test_each_socket_of_a_trip_gets_its_own_users_counts_and_clipboard() -> None:
    tokens = await tokens_of([f"user{i}" for i in range(N)])

    def give(users: list[Any]) -> None:
        for i, user in enumerate(users):
            for n in range(i % 4):
                notify(user, f"message {n} for {user.username}")
            ClipboardEntry.objects.create(user=user, data={"of": user.username})

    await database_sync_to_async(give)([user for user, _ in tokens])
    sockets = await connect_together([[bearer(token)] for _, token in tokens])
    try:
        for i, ((user, _), socket) in enumerate(zip(tokens, sockets, strict=True)):
            hello, notifications, clipboard = await connect_frames(socket)
            assert hello["payload"]["user"] == {"id": user.pk, "username": user.username}
            assert notifications["payload"]["unread"] == i % 4
            assert notifications["payload"]["seq"] == i % 4  # the user's own numbers, from 1
            [entry] = clipboard["payload"]["clipboard"]
            assert entry["data"] == {"of": user.username}
    finally:
        await disconnect(sockets)


async def test_one_refused_token_in_a_trip_costs_only_its_socket_in_its_own_language() -> None:
    tokens = await tokens_of([f"user{i}" for i in range(N)])
    revoked, _ = tokens[N // 2]
    revoked.set_password("a new one")  # its token's hash no longer matches: refused in the trip
    await revoked.asave()
    headers = [[bearer(token)] for _, token in tokens]
    headers[N // 2].append((b"accept-language", b"de"))
    with override_settings(LANGUAGES=[("en", "English"), ("de", "German")], LANGUAGE_CODE="en"):
        sockets = await connect_together(headers)
        try:
            for i, socket in enumerate(sockets):
                if i == N // 2:
                    refusal = await socket.receive()
                    assert refusal == error_frame("gateway", "token_invalid")
                    assert refusal["error"]["message"] == "Das Token ist ungültig."
                    assert await socket.close_code() is not None
                else:
                    hello, *_ = await connect_frames(socket)
                    assert hello["payload"]["user"]["id"] == tokens[i][0].pk
        finally:
            await disconnect(sockets)


async def test_a_snapshot_that_raises_for_one_socket_of_a_trip_costs_only_that_service_there() -> None:
    names = [f"user{i}" for i in range(N)]
    names[3] = "picky"
    tokens = await tokens_of(names)
    services = [*SITE_SERVICES, "tests.test_connect_batch.PickyService"]
    with override_settings(WSGATEWAY={"SERVICES": services}):
        sockets = await connect_together([[bearer(token)] for _, token in tokens])
        try:
            for name, socket in zip(names, sockets, strict=True):
                _, _, clipboard, picky = await connect_frames(socket)
                assert clipboard == frame("clipboard", {"clipboard": []})
                if name == "picky":
                    assert picky == error_frame("picky", "internal_error")
                else:
                    assert picky == frame("picky", {"for": name})
                await socket.assert_open()
        finally:
            await disconnect(sockets)


async def frames_of(socket: Socket) -> list[Any]:
    """The connect frames, then whatever else comes at once (a woken snooze's push)."""
    received = await connect_frames(socket)
    while not await socket.receive_nothing(0.2):
        received.append(await socket.receive())
    return received


def without_ids(frames: list[Any]) -> list[Any]:
    """What two users with the same inbox and clipboard are sent alike: no ids, names or times."""
    hello, notifications, clipboard, *pushes = frames
    return [
        hello["payload"]["services"],
        notifications,
        [entry["data"] for entry in clipboard["payload"]["clipboard"]],
        [[change["change"] for change in push["payload"]["changes"]] for push in pushes],
    ]


def inbox(user: Any, i: int) -> None:
    """The ``i``-th inbox and clipboard: some notifications, read or not; every fifth user a snooze
    that is due (the connect wakes it, and its wake is pushed) and one that is not."""
    for n in range(i % 4):
        notify(user, f"message {n}")
    if i % 5 == 0:
        due, later = (notify(user, text)[0] for text in ("due", "later"))
        now = timezone.now()
        Notification.objects.filter(pk=due.pk).update(snoozed_until=now - timedelta(seconds=1))
        Notification.objects.filter(pk=later.pk).update(snoozed_until=now + timedelta(hours=1))
    ClipboardEntry.objects.create(user=user, data={"entry": i})


async def test_each_socket_of_a_trip_is_sent_what_it_would_have_been_alone() -> None:
    alone, together = (
        await tokens_of([f"alone{i}" for i in range(N)]),
        await tokens_of([f"user{i}" for i in range(N)]),
    )
    for i in range(N):
        await database_sync_to_async(inbox)(alone[i][0], i)
        await database_sync_to_async(inbox)(together[i][0], i)
    expected = []
    for _, token in alone:
        [socket] = await connect_together([[bearer(token)]])
        expected.append(without_ids(await frames_of(socket)))
        await disconnect([socket])
    sockets = await connect_together([[bearer(token)] for _, token in together])
    try:
        received = [await frames_of(socket) for socket in sockets]
    finally:
        await disconnect(sockets)
    assert [without_ids(frames) for frames in received] == expected
    for (user, _), frames in zip(together, received, strict=True):
        assert frames[0]["payload"]["user"]["id"] == user.pk
    # Woken once, by the connect; the later one still hidden.
    snoozed = Notification.objects.filter(recipient__username__startswith="user", snoozed_until__isnull=False)
    assert await snoozed.acount() == len(range(0, N, 5))


class SetBased(Service):
    """A service with both forms, told apart in its payloads; ``broken`` breaks the set-based one."""

    channel = "set_based"
    broken = False

    def snapshot(self, user: Any) -> Any:
        if user.username.startswith("picky"):
            raise RuntimeError("a bug in snapshot, for this user only")
        return self.payload(user, False)

    @classmethod
    def snapshots(cls, sockets: Sequence[tuple[Service, Any]]) -> list[Any]:
        if cls.broken:
            raise RuntimeError("a bug in the set-based form")
        return [
            RuntimeError("not this one") if user.username.startswith("picky") else cls.payload(user, True)
            for _, user in sockets
        ]

    @staticmethod
    def payload(user: Any, together: bool) -> dict[str, Any]:
        return {"for": user.username, "together": together}


@pytest.fixture
def set_based() -> Iterator[type[SetBased]]:
    with override_settings(WSGATEWAY={"SERVICES": ["tests.test_connect_batch.SetBased"]}):
        yield SetBased
    SetBased.broken = False


async def test_a_set_based_snapshot_serves_a_trip_and_fails_only_the_sockets_it_says(
    set_based: type[SetBased],
) -> None:
    names = [f"user{i}" for i in range(5)] + ["picky"]
    tokens = await tokens_of(names)
    sockets = await connect_together([[bearer(token)] for _, token in tokens])
    try:
        for name, socket in zip(names, sockets, strict=True):
            _, received = await connect_frames(socket)
            if name == "picky":
                assert received == error_frame("set_based", "internal_error")
            else:
                assert received == frame("set_based", {"for": name, "together": True})
    finally:
        await disconnect(sockets)
    # A lone connect reads its own snapshot: the set-based form is for more than one.
    [socket] = await connect_together([[bearer(tokens[0][1])]])
    assert (await connect_frames(socket))[1] == frame("set_based", {"for": "user0", "together": False})
    await disconnect([socket])


async def test_a_set_based_snapshot_that_raises_is_logged_and_each_socket_read_alone(
    set_based: type[SetBased], caplog: pytest.LogCaptureFixture
) -> None:
    set_based.broken = True
    names = [f"user{i}" for i in range(5)]
    tokens = await tokens_of(names)
    with caplog.at_level(logging.ERROR, "wsgateway"):
        sockets = await connect_together([[bearer(token)] for _, token in tokens])
        try:
            for name, socket in zip(names, sockets, strict=True):
                assert (await connect_frames(socket))[1] == frame(
                    "set_based", {"for": name, "together": False}
                )
        finally:
            await disconnect(sockets)
    assert "SetBased.snapshots raised" in caplog.text and "a bug in the set-based form" in caplog.text


def test_the_set_based_form_is_optional() -> None:
    assert SetBased.has_snapshots() and not PickyService.has_snapshots()
    with pytest.raises(NotImplementedError):
        PickyService.snapshots([])


class Gated(Service):
    """Holds the trip that reads the user "first" until ``gate`` is set; records whom it read for."""

    channel = "gated"
    entered = threading.Event()
    gate = threading.Event()
    read_for: list[str] = []

    def snapshot(self, user: Any) -> Any:
        Gated.read_for.append(user.username)
        if user.username == "first":
            Gated.entered.set()
            assert Gated.gate.wait(TIMEOUT)
        return {}


async def until(condition: Any) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("never")


async def test_a_connect_whose_client_left_while_it_waited_costs_the_others_nothing() -> None:
    tokens = await tokens_of(["first", "gone", "staying"])
    Gated.entered.clear()
    Gated.gate.clear()
    Gated.read_for.clear()
    with override_settings(WSGATEWAY={"SERVICES": ["tests.test_connect_batch.Gated"]}):
        first, gone, staying = (Socket(communicator(headers=[bearer(token)])) for _, token in tokens)
        try:
            await first.communicator.send_input({"type": "websocket.connect"})
            assert await asyncio.to_thread(Gated.entered.wait, TIMEOUT)  # its trip holds the thread
            for socket in (gone, staying):
                await socket.communicator.send_input({"type": "websocket.connect"})
            reads = connect_reads.for_loop()
            await until(lambda: len(reads.waiting) == 2)
            gone.communicator.future.cancel()  # the server drops the connect: its client left
            await asyncio.wait([gone.communicator.future], timeout=TIMEOUT)
        finally:
            Gated.gate.set()
        for socket in (first, staying):
            assert (await socket.receive_output())["type"] == "websocket.accept"
            _, gated = await connect_frames(socket)
            assert gated == frame("gated", {})
        assert Gated.read_for == ["first", "staying"]  # the one gone was left out of the next trip
        assert reads.task is None and reads.waiting == []
        await disconnect([first, staying])


# -- the same on PostgreSQL: the set-based statements are plain SQL, typed by each database --------


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_connects_together_on_postgresql() -> None:
    rerun_on_postgresql(__file__, ON_POSTGRESQL)


ON_POSTGRESQL = [
    "test_connects_together_cost_fewer_trips_and_fewer_statements_than_alone",
    "test_each_socket_of_a_trip_is_sent_what_it_would_have_been_alone",
    "test_each_socket_of_a_trip_gets_its_own_users_counts_and_clipboard",
    "test_tokens_whose_user_is_gone_or_changed_or_whose_session_ended_are_refused_alone",
]


# -- the tokens' users, read together ------------------------------------------------------------


async def test_tokens_whose_user_is_gone_or_changed_or_whose_session_ended_are_refused_alone() -> None:
    names = [f"user{i}" for i in range(8)]
    tokens = await tokens_of(names)
    gone, changed, ended = tokens[1][0], tokens[3][0], tokens[5][0]
    key = await database_sync_to_async(session_of)(ended)
    headers = [[bearer(token)] for _, token in tokens]
    headers[5] = [bearer(issue_token(ended, key))]
    await gone.adelete()
    changed.set_password("a new one")
    await changed.asave()
    await database_sync_to_async(session_store(key).delete)()
    sockets = await connect_together(headers)
    try:
        for i, socket in enumerate(sockets):
            if i in (1, 3, 5):
                assert await socket.receive() == error_frame("gateway", "token_invalid")
                assert await socket.close_code() is not None
            else:
                assert (await connect_frames(socket))[0]["payload"]["user"]["username"] == names[i]
    finally:
        await disconnect(sockets)


async def test_a_user_twice_in_a_trip_and_a_token_of_a_session_are_each_read_as_alone(
    database_trips: list[str],
) -> None:
    tokens = await tokens_of([f"user{i}" for i in range(4)])
    ann = tokens[0][0]
    key = await database_sync_to_async(session_of)(ann)
    headers = [[bearer(token)] for _, token in tokens] + [
        [bearer(tokens[0][1])],
        [bearer(issue_token(ann, key))],
    ]
    with ConnectTrips().installed() as trips, trips.counted():
        sockets = await connect_together(headers)
        try:
            received = [await connect_frames(socket) for socket in sockets]
        finally:
            trips.counting = False
            await disconnect(sockets)
    assert [frames[0]["payload"]["user"]["id"] for frames in received] == [user.pk for user, _ in tokens] + [
        ann.pk
    ] * 2
    assert database_trips.count("connect_reads") == 1
    # The users named once in one query; ann's (named three times) by each of her connects; her
    # session's expiry once, checked with the token and kept for the socket's login; the two
    # services' statements.
    sessions = [sql for step in trips.steps.values() for sql in step.queries if "django_session" in sql]
    assert (trips.queries, len(sessions)) == (1 + 3 + 1 + 2, 1), trips.steps
