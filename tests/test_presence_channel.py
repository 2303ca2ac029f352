"""The presence channel (wsgateway.services.presence): its parts alone (the ids, the watched set, who
may watch whom, the service on a membership without a socket), then the service on sockets of the
in-process layer, where the signals of wsgateway.presence drive its pushes. Across two daphnes on one
Redis: tests/test_live_presence_channel.py."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import channel_layers, get_channel_layer
from django.test import override_settings

from tests.support.communicators import Socket, connected, create_user, error_frame, frame
from wsgateway import presence
from wsgateway.conf import gateway_settings
from wsgateway.exceptions import GatewayError, InvalidData
from wsgateway.groups import push_event, send_to_groups
from wsgateway.layers import InProcessChannelLayer
from wsgateway.membership import Membership
from wsgateway.services import presence as channel
from wsgateway.services.presence import MAX_WATCHED, PresenceService, Watching, parse_users, watchers_group

SERVICE = "wsgateway.services.presence.PresenceService"
EVERYONE = "wsgateway.services.presence.all_users"


# -- the parts alone ---------------------------------------------------------------------------


@pytest.mark.parametrize("user_id", ["42", "0", "-7", "3f2b1c9e-0d4a-4e55-9f3a-2c1d6e7f8a9b", "ann_b.c"])
def test_a_primary_key_as_a_string_can_be_watched(user_id: str) -> None:
    assert channel.valid_id(user_id)
    assert parse_users({"users": [user_id]}, "watch") == [user_id]


@pytest.mark.parametrize(
    "data",
    [
        None,
        [],
        "42",
        {"users": "42"},
        {"users": {"42": True}},
        {"users": [42]},
        {"users": [None]},
        {"users": [["42"]]},
        {"users": [""]},
        {"users": ["4 2"]},
        {"users": ["42/"]},
        {"users": ["é"]},
        {"users": ["7" * 100]},
        {"user": ["42"]},
    ],
)
def test_anything_but_a_list_of_ids_is_invalid_data(data: Any) -> None:
    with pytest.raises(InvalidData):
        parse_users(data, "watch")


def test_an_id_is_as_long_as_a_group_name_allows_with_the_prefix() -> None:
    longest = "9" * (99 - len(watchers_group("")))
    assert channel.valid_id(longest) and not channel.valid_id(longest + "9")
    # The same room as the user's own group: any user whose group fits can be watched.
    assert len(watchers_group("1")) == len(f"{gateway_settings.GROUP_PREFIX}.user.1")


def test_a_request_over_the_bound_is_refused_and_duplicates_count_once() -> None:
    with pytest.raises(GatewayError) as refused:
        parse_users({"users": [str(n) for n in range(MAX_WATCHED + 1)]}, "watch")
    assert refused.value.code == "limit_exceeded"
    assert parse_users({"users": ["1", "2", "1"]}, "watch") == ["1", "2"]


def test_watching_adds_up_to_the_bound_and_nothing_past_it() -> None:
    part = Watching()
    first = [str(n) for n in range(60)]
    assert part.new(first) == first
    part.add(first)
    assert part.new(["5", "60"]) == ["60"], "only the ones not watched yet are new"
    with pytest.raises(GatewayError) as refused:
        part.new([str(n) for n in range(40, 101)])  # 41 new: 101 in all
    assert refused.value.code == "limit_exceeded"
    assert list(part.users) == first, "nothing of a refused watch is kept"
    assert part.new([str(n) for n in range(40, 100)]) == [str(n) for n in range(60, 100)]


def test_unwatching_takes_away_the_named_or_everyone() -> None:
    part = Watching()
    part.add(["1", "2", "3"])
    assert part.remove(["2", "9"]) == ["2"]
    assert list(part.users) == ["1", "3"]
    assert part.remove(None) == ["1", "3"] and not part.users


def test_by_default_staff_see_everyone_and_anyone_else_only_themselves() -> None:
    staff = SimpleNamespace(pk=1, is_staff=True)
    member = SimpleNamespace(pk=2, is_staff=False)
    assert channel.allowed(staff, ["2", "3"]) == {"2", "3"}
    assert channel.allowed(member, ["1", "2", "3"]) == {"2"}


def test_a_site_callable_never_grants_more_than_was_asked(settings: Any) -> None:
    settings.WSGATEWAY = {"PRESENCE_VISIBLE": "tests.test_presence_channel.generous"}
    assert channel.allowed(SimpleNamespace(pk=1), ["2"]) == {"2"}


def generous(user: Any, ids: list[str]) -> list[Any]:
    return [*ids, 3, "4"]  # an int, and ids nobody asked for


class FakeConnection:
    def __init__(self, layer: InProcessChannelLayer) -> None:
        self.channel_name = "specific.test!presence"
        self.scope: dict[str, Any] = {}
        self.membership: Membership | None = Membership(layer, self.channel_name)


@pytest.fixture
def everyone(settings: Any) -> None:
    settings.WSGATEWAY = {"SERVICES": [SERVICE], "PRESENCE_VISIBLE": EVERYONE}


@pytest.mark.django_db(transaction=True)  # the site's callable runs in Channels' database thread
async def test_the_service_joins_what_it_watches_and_its_resync_frame_is_their_states(everyone: None) -> None:
    layer = InProcessChannelLayer()
    connection = FakeConnection(layer)
    service = PresenceService(connection)
    user = SimpleNamespace(pk=1, is_staff=False)
    assert await service.on_connect(user) is None, "nothing watched: no connect frame"
    presence._local.join("7", "specific.test!seven")
    reply = await service.on_message(user, {"action": "watch", "data": {"users": ["7", "8"]}})
    assert reply == {"users": {"7": True, "8": False}, "refused": []}
    assert set(layer.local.groups) == {watchers_group("7"), watchers_group("8")}
    membership = connection.membership
    assert membership is not None
    assert set(membership.memberships()) == {
        (watchers_group("7"), connection.channel_name),
        (watchers_group("8"), connection.channel_name),
    }, "renewed and re-joined with the socket's other groups"
    presence._local.leave("7", "specific.test!seven")
    presence._local.left.clear()  # offline now, as after the grace
    assert await service.on_connect(user) == {"users": {"7": False, "8": False}}
    assert await service.on_message(user, {"action": "unwatch", "data": {"users": ["8"]}}) == {
        "unwatched": ["8"]
    }
    assert not layer.local.groups.get(watchers_group("8"))
    assert await service.on_message(user, {"action": "unwatch"}) == {"unwatched": ["7"]}
    assert not membership.memberships() and not any(layer.local.groups.values())


@pytest.mark.django_db(transaction=True)
async def test_a_watch_whose_join_fails_joins_nothing(
    everyone: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    layer = InProcessChannelLayer()
    connection = FakeConnection(layer)
    service = PresenceService(connection)

    async def down(group: str, channel_name: str) -> None:
        raise ConnectionError("the layer is down")

    monkeypatch.setattr(layer, "group_add", down)
    with pytest.raises(GatewayError) as failed:
        await service.on_message(SimpleNamespace(pk=1), {"action": "watch", "data": {"users": ["7"]}})
    assert failed.value.code == "internal_error"
    assert not service.watching.users and connection.membership is not None
    assert not connection.membership.memberships()


# -- on sockets: the signals drive the pushes ----------------------------------------------------


@asynccontextmanager
async def opened(user: Any) -> AsyncIterator[Socket]:
    """A socket served the presence channel alone: its hello, and no presence frame (nothing watched)."""
    async with connected(user, read_connect_frames=False) as socket:
        hello = await socket.receive()
        assert hello["payload"]["services"] == ["presence"]
        yield socket


def watch(*ids: Any) -> dict[str, Any]:
    return {"users": list(ids)}


@pytest.mark.django_db(transaction=True)
async def test_a_watch_answers_at_once_then_online_and_offline_are_pushed(
    ann: Any, alice: Any, settings: Any
) -> None:
    settings.WSGATEWAY = {"SERVICES": [SERVICE], "PRESENCE_VISIBLE": EVERYONE, "PRESENCE_GRACE": 1}
    key = str(alice.pk)
    async with opened(ann) as watcher:
        assert await watcher.action("presence", "watch", watch(key)) == frame(
            "presence", {"users": {key: False}, "refused": []}, "req"
        )
        async with opened(alice):
            assert await watcher.receive() == frame("presence", {"user": key, "online": True})
            async with opened(alice):
                assert await watcher.receive_nothing(0.2), "a second socket is no change"
        # Offline only once the grace (1 s, and the check's margin) is over.
        assert await watcher.receive_nothing(0.7)
        assert await watcher.receive(within=3) == frame("presence", {"user": key, "online": False})
        assert await watcher.action("presence", "watch", watch(key), id=2) == frame(
            "presence", {"users": {key: False}, "refused": []}, 2
        ), "watching again answers again, and joins nothing twice"


@pytest.mark.django_db(transaction=True)
async def test_a_reload_within_the_grace_pushes_nothing(ann: Any, alice: Any, settings: Any) -> None:
    settings.WSGATEWAY = {"SERVICES": [SERVICE], "PRESENCE_VISIBLE": EVERYONE, "PRESENCE_GRACE": 1}
    key = str(alice.pk)
    async with opened(ann) as watcher:
        await watcher.action("presence", "watch", watch(key))
        async with opened(alice):
            assert await watcher.receive() == frame("presence", {"user": key, "online": True})
        async with opened(alice):  # the reloaded page
            assert await watcher.receive_nothing(1.6), "past the grace and its check: no flap"
        assert await watcher.receive(within=3) == frame("presence", {"user": key, "online": False})


@pytest.mark.django_db(transaction=True)
async def test_unwatch_stops_the_pushes_and_a_closed_watcher_leaves_its_groups(
    ann: Any, alice: Any, bob: Any, everyone: None
) -> None:
    layer = get_channel_layer()
    alice_key, bob_key = str(alice.pk), str(bob.pk)
    async with opened(ann) as watcher:
        await watcher.action("presence", "watch", watch(alice_key, bob_key))
        assert await watcher.action("presence", "unwatch", watch(alice_key), id=2) == frame(
            "presence", {"unwatched": [alice_key]}, 2
        )
        async with opened(alice), opened(bob):
            assert await watcher.receive() == frame("presence", {"user": bob_key, "online": True})
            assert await watcher.receive_nothing(0.2), "alice is no longer watched"
    assert not layer.local.groups.get(watchers_group(bob_key)), "left at the watcher's end"


@pytest.mark.django_db(transaction=True)
async def test_by_default_a_user_watches_only_themselves_and_staff_everyone(
    alice: Any, bob: Any, settings: Any
) -> None:
    settings.WSGATEWAY = {"SERVICES": [SERVICE]}
    staff = await create_user("carol", is_staff=True)
    alice_key, bob_key = str(alice.pk), str(bob.pk)
    async with opened(alice) as socket:
        reply = await socket.action("presence", "watch", watch(bob_key, alice_key))
        assert reply == frame("presence", {"users": {alice_key: True}, "refused": [bob_key]}, "req")
        async with opened(bob):
            assert await socket.receive_nothing(0.2), "no push about a refused user"
    async with opened(staff) as socket:
        reply = await socket.action("presence", "watch", watch(bob_key, alice_key))
        states = {bob_key: True, alice_key: True}  # both within the grace after their sockets
        assert reply == frame("presence", {"users": states, "refused": []}, "req")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("data", "code"),
    [
        ({"users": "42"}, "invalid_data"),
        ({"users": [42]}, "invalid_data"),
        ({"users": ["42", None]}, "invalid_data"),
        ({"users": ["x" * 200]}, "invalid_data"),
        ({"users": ["a b"]}, "invalid_data"),
        (None, "invalid_data"),
        ({"users": [str(n) for n in range(MAX_WATCHED + 1)]}, "limit_exceeded"),
    ],
)
async def test_bad_input_gets_its_code_joins_nothing_and_logs_no_traceback(
    ann: Any, everyone: None, data: Any, code: str, caplog: pytest.LogCaptureFixture
) -> None:
    layer = get_channel_layer()
    caplog.set_level(logging.DEBUG)
    async with opened(ann) as socket:
        assert await socket.action("presence", "watch", data) == error_frame("presence", code, "req")
        assert not any(
            group.startswith(watchers_group("")) for group, members in layer.local.groups.items() if members
        )
        await socket.assert_open()
    assert not [record for record in caplog.records if record.exc_info], "no traceback"


@pytest.mark.django_db(transaction=True)
async def test_past_the_bound_in_all_nothing_of_the_new_watch_is_joined(ann: Any, everyone: None) -> None:
    layer = get_channel_layer()
    async with opened(ann) as socket:
        first = [str(n) for n in range(1000, 1000 + MAX_WATCHED - 1)]
        reply = await socket.action("presence", "watch", watch(*first))
        assert reply["payload"]["users"] == dict.fromkeys(first, False)
        more = await socket.action("presence", "watch", watch("1", "2"), id=2)
        assert more == error_frame("presence", "limit_exceeded", 2)
        assert not layer.local.groups.get(watchers_group("1"))
        assert await socket.action("presence", "watch", watch("1"), id=3) == frame(
            "presence", {"users": {"1": False}, "refused": []}, 3
        ), "one more fits"


@pytest.mark.django_db(transaction=True)
async def test_a_watcher_whose_pushes_were_lost_is_sent_every_state_on_its_resync(
    ann: Any, alice: Any
) -> None:
    key = str(alice.pk)
    config = {"BACKEND": "wsgateway.layers.InProcessChannelLayer", "CONFIG": {"capacity": 5}}
    served = {"SERVICES": [SERVICE], "PRESENCE_VISIBLE": EVERYONE}
    with override_settings(CHANNEL_LAYERS={"default": config}, WSGATEWAY=served):
        try:
            async with opened(ann) as watcher:
                assert (await watcher.action("presence", "watch", watch(key)))["payload"]["users"] == {
                    key: False
                }
                presence._local.join(key, "specific.test!elsewhere")  # online, and its push lost
                # From a worker thread: the pushes reach the layer in one callback of the loop, so all
                # but the queue's 5 are dropped, and the socket resyncs.
                stale = push_event(channel.CHANNEL, {"user": key, "online": False})
                await database_sync_to_async(send_to_groups)([(watchers_group(key), stale)] * 20)
                live = [await watcher.receive() for _ in range(5)]
                assert all(pushed["payload"] == {"user": key, "online": False} for pushed in live)
                assert await watcher.receive() == frame("gateway", {"resync": True})
                assert await watcher.receive() == frame("presence", {"users": {key: True}})
        finally:
            channel_layers.backends.clear()


def test_the_receivers_are_connected_only_while_the_channel_is_served() -> None:
    """A signal with a receiver costs every connect that sends it a gather and three tasks: none
    where the site does not serve the channel, and they follow a change of the setting."""
    from wsgateway.signals import user_offline, user_online

    def connected_here() -> list[bool]:
        return [
            any(key[0] == uid for key, *_ in signal.receivers)
            for signal, uid in ((user_online, channel.ONLINE_UID), (user_offline, channel.OFFLINE_UID))
        ]

    assert connected_here() == [False, False], "the default SERVICES have no presence channel"
    with override_settings(WSGATEWAY={"SERVICES": [SERVICE]}):
        assert connected_here() == [True, True]
    assert connected_here() == [False, False]


async def test_nothing_is_pushed_when_the_site_does_not_serve_the_channel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[Any] = []

    async def record(items: Any) -> None:
        sent.append(items)

    monkeypatch.setattr(channel, "asend_to_groups", record)
    await channel.user_came_online(sender=None, user_id="5")
    assert sent == [], "the default SERVICES have no presence channel"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(channel, "served", lambda: True)
        await channel.user_went_offline(sender=None, user_id="5")
        await channel.user_came_online(sender=None, user_id="not a group name")
    [[(group, event)]] = sent
    assert group == watchers_group("5") and event["channel"] == "presence"
    assert '"payload":{"user":"5","online":false}' in event["text"]


async def test_the_batched_read_answers_for_each_user_once() -> None:
    presence._local.join("3", "specific.test!three")
    assert await presence.aonline_among([3, "4", "3"]) == {"3": True, "4": False}
    assert await asyncio.wait_for(presence.aonline_among([]), 1) == {}
