"""What one authenticated connect costs, counted: its queries, its trips to the database thread, and
its Redis round trips (issue 24). A count that grows back fails here; scripts/connect_trips.py prints
the same counts step by step, with their time (docs/benchmarks.md).

Each connect is by a user of its own while another user's socket is open, as the bench's are.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import channel_layers
from django.conf import settings
from django.test import override_settings

from tests.support.communicators import (
    bearer,
    connected,
    cookie,
    create_user,
    error_frame,
    refused,
)
from tests.support.connect_trips import (
    OLDER_SECRET,
    SESSION_BACKENDS,
    SESSION_CHANGES,
    ConnectTrips,
    changed_sessions,
    credentials,
    session_of,
)
from wsgateway.codes import CloseCode
from wsgateway.layers import InProcessChannelLayer
from wsgateway.layers.extensions import PLACE_PRESENCE, PRESENCE, supports
from wsgateway.sessions import session_store
from wsgateway.signals import user_offline, user_online
from wsgateway.tokens import issue_token

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def trips() -> Iterator[ConnectTrips]:
    with ConnectTrips().installed() as counting:
        yield counting


async def count_one_connect(trips: ConnectTrips, kind: str) -> ConnectTrips:
    async with connected(headers=await credentials(kind, "resident")):
        headers = await credentials(kind, "measured")
        with trips.counted():
            async with connected(headers=headers):
                trips.counting = False  # the connect, not the disconnect
    return trips


def queries(trips: ConnectTrips) -> dict[str, int]:
    return {name: len(step.queries) for name, step in trips.steps.items() if step.queries}


def round_trips(trips: ConnectTrips) -> dict[str, list[str]]:
    return {name: step.commands for name, step in trips.steps.items() if step.commands}


# -- the database: the same on every layer --------------------------------------------------------


async def test_a_session_connect_is_two_trips_to_the_database_thread_and_four_queries(
    trips: ConnectTrips, database_trips: list[str]
) -> None:
    await count_one_connect(trips, "session")
    # The session's row once (its expiry with its data) and its user, in one trip; then the
    # snapshots: the notifications' counts with the number and whether a snooze is due (one
    # statement), and the clipboard.
    assert queries(trips) == {"authenticate": 2, "reads": 2}
    assert database_trips[-2:] == ["session_users", "connect_reads"]
    assert round_trips(trips) == {}


async def test_a_token_connect_is_one_trip_to_the_database_thread_and_three_queries(
    trips: ConnectTrips, database_trips: list[str]
) -> None:
    await count_one_connect(trips, "token")
    assert queries(trips) == {"reads": 3}  # the user, then the snapshots
    assert database_trips[-1:] == ["connect_reads"]


async def test_a_session_connect_reads_its_sessions_row_once(trips: ConnectTrips) -> None:
    await count_one_connect(trips, "session")
    sessions = [sql for step in trips.steps.values() for sql in step.queries if "django_session" in sql]
    assert len(sessions) == 1, sessions


async def test_a_token_issued_in_a_session_reads_the_session_once(trips: ConnectTrips) -> None:
    ann = await create_user("ann")
    token = issue_token(ann, await database_sync_to_async(session_of)(ann))
    async with connected(headers=await credentials("token", "resident")):
        with trips.counted():
            async with connected(headers=[bearer(token)]):
                trips.counting = False
    # The token's check (its session has not ended) and the socket's credentials (when it ends).
    sessions = [sql for step in trips.steps.values() for sql in step.queries if "django_session" in sql]
    assert len(sessions) == 1, sessions
    assert queries(trips) == {"reads": 4}


async def test_an_expired_session_is_still_refused(alice: Any) -> None:
    key = await database_sync_to_async(session_of)(alice)
    store = session_store(key)
    await database_sync_to_async(lambda: store.set_expiry(-1) or store.save())()
    async with refused(headers=[cookie(**{settings.SESSION_COOKIE_NAME: key})]) as socket:
        assert await socket.receive() == error_frame("gateway", "unauthorized")
        assert await socket.close_code() == CloseCode.UNAUTHORIZED


# -- wsgateway's Redis layer: the cap, the cool-down and presence in one script --------------------


@pytest.fixture
def redis_layer(redis_url: str) -> Iterator[None]:
    backend = "wsgateway.layers.redis.RedisChannelLayer"
    config = {"hosts": [redis_url], "prefix": f"trips-{secrets.token_hex(4)}"}
    with override_settings(CHANNEL_LAYERS={"default": {"BACKEND": backend, "CONFIG": config}}):
        channel_layers.backends.clear()
        try:
            yield
        finally:
            channel_layers.backends.clear()


class Signals:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.offline_sent = asyncio.Event()

    def online(self, sender: Any, user_id: str, **kwargs: Any) -> None:
        self.sent.append(("online", user_id))

    def offline(self, sender: Any, user_id: str, **kwargs: Any) -> None:
        self.sent.append(("offline", user_id))
        self.offline_sent.set()


@pytest.fixture
def signals() -> Iterator[Signals]:
    found = Signals()
    user_online.connect(found.online)
    user_offline.connect(found.offline)
    yield found
    user_online.disconnect(found.online)
    user_offline.disconnect(found.offline)


@pytest.mark.redis
@pytest.mark.parametrize("kind", ["session", "token"])
async def test_a_connect_is_one_script_and_its_users_subscription_on_redis(
    redis_layer: None, trips: ConnectTrips, kind: str
) -> None:
    await count_one_connect(trips, kind)
    # The cap, the cool-down and presence: one script. A new user's group: one SUBSCRIBE (the group of
    # every socket is subscribed already, by the resident socket). Nothing after the accept.
    assert round_trips(trips) == {"place": ["EVALSHA", "SUBSCRIBE"]}


@pytest.mark.redis
async def test_the_place_brings_the_user_online_once_and_the_accept_says_so(
    redis_layer: None, signals: Signals
) -> None:
    from channels.layers import get_channel_layer

    assert supports(get_channel_layer(), PLACE_PRESENCE)
    alice = await create_user("alice")
    async with connected(headers=[bearer(issue_token(alice))]):
        async with connected(headers=[bearer(issue_token(alice))]):
            assert signals.sent == [("online", str(alice.pk))]
        assert await get_channel_layer().presence_online(str(alice.pk))


@pytest.mark.redis
@pytest.mark.slow  # the grace: a second at least
@override_settings(WSGATEWAY={"PRESENCE_GRACE": 1})
async def test_a_token_refused_after_its_place_leaves_online_and_offline_paired(
    redis_layer: None, signals: Signals
) -> None:
    from channels.layers import get_channel_layer

    alice = await create_user("alice")
    token = issue_token(alice)
    alice.set_password("a new password")  # the token's user is read after its place: refused then
    await alice.asave()
    async with refused(headers=[bearer(token)]) as socket:
        assert await socket.receive() == error_frame("gateway", "token_invalid")
        assert await socket.close_code() == CloseCode.UNAUTHORIZED
    # The place made alice online in Redis: said, and the end's check takes her offline after the grace.
    assert signals.sent == [("online", str(alice.pk))]
    layer = get_channel_layer()
    assert await layer.connections(str(alice.pk)) == [], "the place was given back"
    await asyncio.wait_for(signals.offline_sent.wait(), 5)
    assert signals.sent == [("online", str(alice.pk)), ("offline", str(alice.pk))]
    assert not await layer.presence_online(str(alice.pk))


@pytest.mark.redis
async def test_the_place_script_joins_presence_only_with_a_place(redis_url: str) -> None:
    from wsgateway.layers.redis import RedisChannelLayer

    layer = RedisChannelLayer(hosts=[redis_url], prefix=f"trips-{secrets.token_hex(4)}")
    try:
        assert await layer.connection_add("7", "ws.a", 1, presence=True) == 2, "placed, and came online"
        assert await layer.connection_add("7", "ws.a", 1, presence=True) == 1, "placed, online already"
        assert await layer.connection_add("7", "ws.b", 1, presence=True) == 0, "over the cap"
        assert await layer.connection_add("9", "ws.c", 0, presence=True) == 0
        assert not await layer.presence_online("9"), "no place, not online"
        assert await layer.presence_since(["7"]) != [None]
        assert await layer.connection_add("8", "ws.d", 1) == 1, "without presence: as before"
        assert not await layer.presence_online("8")
    finally:
        await layer.close()


# -- sessions.session_user: what Django's get_user finds, in fewer queries -----------------------------


def _django_user(key: str) -> Any:
    from types import SimpleNamespace

    from django.contrib.auth import get_user

    return get_user(SimpleNamespace(session=session_store(key)))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "change",
    SESSION_CHANGES,
)
def test_session_user_finds_who_djangos_get_user_finds(change: str) -> None:

    from wsgateway.sessions import session_user

    _, keys = changed_sessions(change, "ann")
    overrides: dict[str, Any] = (
        {"SECRET_KEY_FALLBACKS": [OLDER_SECRET]} if change == "fallback secret" else {}
    )
    with override_settings(AUTHENTICATION_BACKENDS=SESSION_BACKENDS, **overrides):
        found, expires_at = session_user(session_store(keys[0]))
        expected = _django_user(keys[1])
    assert (found.pk, found.is_authenticated) == (expected.pk, expected.is_authenticated)
    assert found.is_authenticated == (change in ("none", "other backend", "fallback secret"))
    if change == "none":
        assert expires_at == pytest.approx(session_store(keys[0]).get_expiry_date().timestamp(), abs=2)


def test_session_user_takes_the_lazy_session_of_channels_session_middleware() -> None:
    from django.contrib.auth import get_user_model
    from django.utils.functional import LazyObject

    from wsgateway.sessions import session_user

    user = get_user_model().objects.create_user("ann", password="x")
    lazy = LazyObject()
    lazy._wrapped = session_store(session_of(user))
    found, _ = session_user(lazy)  # Django's get_user reads it, as before
    assert found.pk == user.pk and found.is_authenticated


# -- the membership's part in it, without a socket -------------------------------------------------


class PlacingLayer(InProcessChannelLayer):
    """The in-process layer, joining presence with the place as wsgateway's Redis layer does."""

    extensions = [*InProcessChannelLayer.extensions, PRESENCE, PLACE_PRESENCE]

    def __init__(self) -> None:
        super().__init__()
        self.online: set[str] = set()
        self.left: list[str] = []

    async def connection_add(self, user: str, channel: str, limit: int, presence: bool = False) -> int:
        if not await super().connection_add(user, channel, limit):
            return 0
        came = presence and user not in self.online
        self.online.add(user)
        return 2 if came else 1

    async def presence_leave(self, user: str) -> None:
        self.left.append(user)


async def test_a_place_that_brought_its_user_online_is_said_once_by_the_accept_or_by_the_end(
    signals: Signals,
) -> None:
    from wsgateway.membership import Membership

    layer = PlacingLayer()
    accepted = Membership(layer, await layer.new_channel())
    assert await accepted.register(7, limit=2)
    assert accepted.announce() is True, "the accept says it (presence.arrive)"
    assert accepted.announce() is None, "once"
    second = Membership(layer, await layer.new_channel())
    assert await second.register(7, limit=2)
    assert second.announce() is False, "online already: nothing to say, nothing to ask the layer"
    await accepted.leave()
    await second.leave()
    assert signals.sent == [] and layer.left == []  # their sockets' ends depart, not their memberships
    refused_after_place = Membership(layer, await layer.new_channel())
    assert await refused_after_place.register(8, limit=2)
    await refused_after_place.leave()  # never accepted: its end says it, and departs
    assert signals.sent == [("online", "8")] and layer.left == ["8"]


# -- a user model whose manager hides rows: read through it, never around it -----------------------


@pytest.fixture
def hiding_manager(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The user model's default manager replaced by one that hides the users named ``hidden*``
    (as a soft-delete manager would hide deleted users)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import UserManager

    user_model = get_user_model()

    class Hiding(UserManager):  # type: ignore[type-arg]
        def get_queryset(self) -> Any:
            return super().get_queryset().exclude(username__startswith="hidden")

    manager = Hiding()
    manager.model = user_model
    manager.name = "objects"
    monkeypatch.setitem(user_model._meta.__dict__, "default_manager", manager)
    return manager


def test_a_user_the_managers_hide_is_no_user_of_a_session_or_a_token(hiding_manager: Any) -> None:
    from django.contrib.auth import get_user_model

    from wsgateway.exceptions import AuthenticationFailed
    from wsgateway.reads import whole_table
    from wsgateway.sessions import session_user
    from wsgateway.tokens import token_claims, token_user

    assert not whole_table(get_user_model())
    shown = get_user_model().objects.create_user("shown", password="x")
    hidden = get_user_model().objects.create_user("hidden-ann", password="x")
    found, _ = session_user(session_store(session_of(shown)))
    assert found.pk == shown.pk and found.is_authenticated
    found, _ = session_user(session_store(session_of(hidden)))
    assert not found.is_authenticated  # the plain read would have found her
    assert token_user(token_claims(issue_token(shown))).pk == shown.pk
    with pytest.raises(AuthenticationFailed):
        token_user(token_claims(issue_token(hidden)))


def test_djangos_own_user_manager_reads_the_whole_table() -> None:
    from django.contrib.auth import get_user_model

    from wsgateway.reads import whole_table

    assert whole_table(get_user_model())
