"""Grouping: notify(..., group=...) updates the user's open row of the group (count, newest text,
actors newest first) as a numbered change, pushed to every tab and replayed once by ``sync``; a row
read, deleted, archived or snoozed is not reopened; two writers at once end with one row."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.support.communicators import connected, create_user
from tests.support.servers import ROOT
from wsgateway.exceptions import FrameTooLarge
from wsgateway.models import Change, Notification, NotificationSequence
from wsgateway.notifications import changes, grouping, history, notify
from wsgateway.notifications.states import change_item

pytestmark = pytest.mark.django_db(transaction=True)


def make_user(username: str, **fields: Any) -> Any:
    """A user made with the sync ORM, for the sync tests (the async fixtures' users are another thread's)."""
    return get_user_model().objects.create_user(username, **fields)


@pytest.fixture
def ann_sync() -> Any:
    return make_user("ann")


@pytest.fixture
def senders() -> list[Any]:
    return [make_user(f"user{i}", first_name=f"Sender{i}") for i in range(5)]


def rows_of(user: Any) -> list[Notification]:
    return list(Notification.objects.filter(recipient=user).order_by("id"))


# -- the parts, without a database ------------------------------------------------------------


def test_actors_are_newest_first_unique_and_few() -> None:
    assert grouping.with_actor([], "Ann") == ["Ann"]
    assert grouping.with_actor(["Bob", "Ann"], "Ann") == ["Ann", "Bob"]  # once, moved to the front
    assert grouping.with_actor(["C", "B", "A"], "D") == ["D", "C", "B"]  # at most MAX_ACTORS
    assert grouping.with_actor(["B"], None) == ["B"]  # no sender: the actors stay
    assert grouping.with_actor("not a list", "A") == ["A"]  # a stored value of another shape counts as none
    assert grouping.with_actor([1, "B"], "A") == ["A", "B"]


def test_an_actor_is_the_full_name_else_the_username_and_short() -> None:
    model = get_user_model()
    assert grouping.actor_name(model(username="ann", first_name="Ann", last_name="Lee")) == "Ann Lee"
    assert grouping.actor_name(model(username="ann")) == "ann"
    long = grouping.actor_name(model(username="x" * 150))
    assert long is not None and len(long) == grouping.MAX_ACTOR_LENGTH and long.endswith("…")
    assert grouping.actor_name(None) is None


def test_a_group_name_is_a_short_string() -> None:
    assert grouping.checked("doc-42") == "doc-42"
    for bad in (42, None, "x" * (grouping.MAX_GROUP_LENGTH + 1)):
        with pytest.raises(ValueError, match="A group is a string"):
            grouping.checked(bad)


# -- notify() with a group ----------------------------------------------------------------------


def test_twenty_notifications_of_one_group_while_unread_are_one_row(
    ann_sync: Any, senders: list[Any]
) -> None:
    for i in range(20):
        notify(ann_sync, f"comment {i}", group="doc-42", sender=senders[i % 5], data={"n": i})
    (row,) = rows_of(ann_sync)
    assert row.count == 20 and row.message == "comment 19" and row.data == {"n": 19}
    assert row.actors == ["Sender4", "Sender3", "Sender2"]  # newest first, each once
    assert row.change == Change.GROUPED and row.seq == 1 and row.version == 20
    assert row.created_by == senders[0] and row.changed_by == senders[4]
    assert NotificationSequence.objects.get(user=ann_sync).last == 20  # each grouping took one number
    # Read: the group is closed, and the next one of it is a row of its own.
    changes.change(ann_sync, Change.READ, [row.pk])
    notify(ann_sync, "comment 20", group="doc-42", sender=senders[0])
    old, new = rows_of(ann_sync)
    assert (old.count, old.is_read) == (20, True)
    assert (new.count, new.actors, new.change, new.seq) == (1, ["Sender0"], Change.CREATED, 22)


def test_the_newest_wins_and_new_activity_is_unseen_again(ann_sync: Any) -> None:
    (row,) = notify(ann_sync, "first", group="g", category="info", actions=[{"label": "Open", "url": "/a/"}])
    changes.change(ann_sync, Change.SEEN, [row.pk])
    later = timezone.now() + timedelta(days=1)
    notify(ann_sync, "second", group="g", category="warning", expires_at=later)
    (row,) = rows_of(ann_sync)
    assert (row.message, row.category_tag, row.actions, row.expires_at) == ("second", "warning", [], later)
    assert row.seen_at is None and row.actors == []  # no sender, no actor


def test_groups_are_per_user_and_per_name(ann_sync: Any, senders: list[Any]) -> None:
    bob = make_user("bob")
    notify([ann_sync, bob], "a", group="doc-1", sender=senders[0])
    notify(ann_sync, "b", group="doc-1", sender=senders[1])
    notify(ann_sync, "c", group="doc-2")
    notify(ann_sync, "d")  # no group: never grouped
    notify(ann_sync, "e")
    assert [(row.group, row.count) for row in rows_of(ann_sync)] == [
        ("doc-1", 2),
        ("doc-2", 1),
        ("", 1),
        ("", 1),
    ]
    assert [(row.count, row.actors) for row in rows_of(bob)] == [(1, ["Sender0"])]


@pytest.mark.parametrize(
    "change",
    [Change.READ, Change.DELETED, Change.ARCHIVED, Change.SNOOZED],
    ids=lambda change: Change(change).label,
)
def test_a_row_put_away_is_not_reopened(ann_sync: Any, change: Change) -> None:
    (row,) = notify(ann_sync, "first", group="g")
    until = timezone.now() + timedelta(hours=1) if change == Change.SNOOZED else None
    changes.change(ann_sync, change, [row.pk], until=until)
    notify(ann_sync, "second", group="g")
    old, new = rows_of(ann_sync)
    assert (old.count, old.message, old.change) == (1, "first", change)
    assert (new.count, new.message) == (1, "second")


def test_an_expired_row_is_not_reopened(ann_sync: Any) -> None:
    notify(ann_sync, "first", group="g", expires_at=timezone.now() - timedelta(seconds=1))
    notify(ann_sync, "second", group="g")
    assert [row.count for row in rows_of(ann_sync)] == [1, 1]


def test_a_user_named_twice_counts_twice_in_one_row(ann_sync: Any) -> None:
    notify([ann_sync, ann_sync], "a", group="g")
    (row,) = rows_of(ann_sync)
    assert row.count == 2
    notify([ann_sync, ann_sync], "b", group="g")
    (row,) = rows_of(ann_sync)
    assert row.count == 4


def test_a_rollback_takes_the_grouping_back(ann_sync: Any) -> None:
    notify(ann_sync, "first", group="g")
    with pytest.raises(RuntimeError), transaction.atomic():
        notify(ann_sync, "second", group="g")
        raise RuntimeError
    (row,) = rows_of(ann_sync)
    assert (row.count, row.message, row.version) == (1, "first", 1)


def test_a_chunk_costs_one_lookup_two_updates_and_one_push_pass(ann_sync: Any) -> None:
    users = [ann_sync, *(make_user(f"u{i}") for i in range(9))]
    notify(users[:5], "first", group="g")
    with CaptureQueriesContext(connection) as queries:
        stored = notify(users, "second", group="g")  # five grouped, five new
    assert len(stored) == 10
    sql = [q["sql"] for q in queries.captured_queries]
    (lookup,) = [q for q in sql if q.startswith("SELECT") and '"group"' in q]  # the open rows
    with connection.cursor() as cursor:  # by the partial index made for it
        cursor.execute(f"EXPLAIN QUERY PLAN {lookup}")
        assert "USING INDEX wsgw_notif_group_idx" in str(cursor.fetchall())
    # The newest content of all five in one UPDATE; their counts, actors and versions in one more.
    assert len([q for q in sql if q.startswith("UPDATE")]) == 2
    # At commit, the counts once for the five grouped rows' pushes and once for the five new rows'.
    assert len([q for q in sql if "SUM(CASE" in q]) == 2
    assert sorted(row.count for row in Notification.objects.all()) == [1] * 5 + [2] * 5


def test_a_group_whose_fullest_row_would_not_fit_a_frame_is_refused_and_nothing_is_stored(
    ann_sync: Any, settings: Any
) -> None:
    settings.WSGATEWAY = {"MAX_SEND_SIZE": 4096}
    # Fits a new row (notify() measures one with no actors), not the same row with three long actors.
    message = "x" * 1900
    notify(ann_sync, message)
    with pytest.raises(FrameTooLarge):
        notify(ann_sync, message, group="g")
    assert Notification.objects.count() == 1


def test_a_grouped_change_item_carries_the_whole_notification(ann_sync: Any) -> None:
    notify(ann_sync, "first", group="g", data={"doc": 42})
    (row,) = notify(ann_sync, "second", group="g", data={"doc": 42})
    item = change_item(row)
    assert item == {**row.to_wire(), "change": "grouped"}
    assert (item["label"], item["count"], item["data"], item["version"]) == ("second", 2, {"doc": 42}, 2)


# -- every tab, and a tab that was offline -------------------------------------------------------


async def test_each_grouped_notification_is_a_change_push_with_a_greater_version(ann: Any) -> None:
    sam = await create_user("sam", first_name="Sam")
    async with connected(ann) as socket, connected(ann) as other:
        await sync_to_async(notify)(ann, "c0", group="doc-42", sender=sam)
        for tab in (socket, other):
            first = (await tab.receive())["payload"]
            assert first["last"]["count"] == 1 and first["last"]["actors"] == ["Sam"]
        versions = []
        for i in range(1, 20):
            await sync_to_async(notify)(ann, f"c{i}", group="doc-42", sender=sam)
            for tab in (socket, other):
                push = (await tab.receive())["payload"]
                (item,) = push["changes"]
                assert item["id"] == first["last"]["id"] and item["change"] == "grouped"
                assert (item["label"], item["count"], item["actors"]) == (f"c{i}", i + 1, ["Sam"])
                assert item["seen"] is False and push["unread"] == 1
            versions.append(item["version"])
        assert versions == list(range(2, 21))


async def test_a_tab_that_syncs_gets_the_grouped_row_once_in_its_latest_state(ann: Any) -> None:
    async with connected(ann) as tab:
        cursor = tab.connect_frames[1]["payload"]["seq"]
    for i in range(5):
        await sync_to_async(notify)(ann, f"c{i}", group="doc-42")
    await sync_to_async(notify)(ann, "other")
    async with connected(ann) as back:
        reply = await back.action("notifications", "sync", {"since": cursor, "changes": True}, id="s")
        payload = reply["payload"]
        assert [(item["label"], item["count"], item["change"]) for item in payload["changes"]] == [
            ("c4", 5, "grouped"),
            ("other", 1, "created"),
        ]
        assert payload["has_more"] is False
    # The same from the domain, from each cursor a tab may hold: the row once, newest.
    for since in range(7):
        found = (await sync_to_async(history.changes_since)(ann, since, 100))["changes"]
        assert [item["version"] for item in found] == [v for v in (5, 6) if v > since]


# -- two writers at once -----------------------------------------------------------------------

RACER = """
import json, sys, time
from django.contrib.auth import get_user_model
from django.db import transaction
from wsgateway.notifications import notify
start, name = float(sys.argv[1]), sys.argv[2]
User = get_user_model()
alice, sender = User.objects.get(username="alice"), User.objects.get(username=name)
time.sleep(max(0.0, start - time.time()))
with transaction.atomic():
    notify(alice, "from " + name, group="doc-42", sender=sender)
    time.sleep(0.3)  # holds its transaction open while the other one tries
"""


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_two_writers_of_one_group_at_once_end_with_one_row_of_count_two(postgres_env: dict[str, str]) -> None:
    start = f"{time.time() + 3:.3f}"  # both processes loaded and waiting by then
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", f"import django; django.setup(); exec({RACER!r})", start, name],
            cwd=ROOT,
            env=postgres_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("alice", "bob")
    ]
    for racer in racers:
        _, err = racer.communicate(timeout=60)
        assert racer.returncode == 0, err
    check = (
        "import django, json; django.setup()\n"
        "from wsgateway.models import Notification\n"
        "print(json.dumps(list(Notification.objects.filter(recipient__username='alice')"
        ".values_list('count', 'version', 'actors'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", check], cwd=ROOT, env=postgres_env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    ((count, version, actors),) = json.loads(out.stdout)
    assert (count, version, sorted(actors)) == (2, 2, ["alice", "bob"])
