"""The states of a notification: each change numbered in the user's sequence, pushed to every tab,
and replayed by ``sync`` with ``changes`` to a tab that was offline; the bulk forms; the counts; bad
input; snoozed ones coming back; pruning."""

from __future__ import annotations

import asyncio
import io
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone

from tests.support.communicators import Socket, connected, error_frame
from wsgateway.models import Change, Notification, NotificationSequence
from wsgateway.notifications import changes, history, prune, snoozing
from wsgateway.notifications.unread import connect_state, connect_state_and_found
from wsgateway.services.notifier import MAX_AHEAD, NotifierService

pytestmark = pytest.mark.django_db(transaction=True)


# The domain tests below are sync: their users are made with the sync ORM (the async fixtures'
# users would be made on another thread's connection).
@pytest.fixture
def ann_sync() -> Any:
    return get_user_model().objects.create_user("ann", password="x")


@pytest.fixture
def bob_sync() -> Any:
    return get_user_model().objects.create_user("bob", password="x")


async def make(user: Any, message: str = "m", **fields: Any) -> Notification:
    return await Notification.objects.acreate(recipient=user, message=message, **fields)


async def latest(user: Any) -> int:
    return (await NotificationSequence.objects.aget(user=user)).last


# -- the domain, without sockets --------------------------------------------------------------


def test_each_change_takes_the_next_number_and_a_row_keeps_its_latest(ann_sync: Any) -> None:
    rows = [Notification.objects.create(recipient=ann_sync, message=f"n{i}") for i in range(3)]
    assert [row.version for row in rows] == [1, 2, 3]  # a creation is a row's first change
    assert changes.change(ann_sync, Change.READ, [rows[0].pk, rows[2].pk]) == (2, False)
    assert changes.change(ann_sync, Change.READ, [rows[0].pk]) == (0, False)  # no change, no number
    changes.change(ann_sync, Change.ARCHIVED, [rows[0].pk])
    got = {row.pk: (row.version, row.change) for row in Notification.objects.all()}
    assert got == {
        rows[0].pk: (6, Change.ARCHIVED),
        rows[1].pk: (2, Change.CREATED),
        rows[2].pk: (5, Change.READ),
    }
    assert NotificationSequence.objects.get(user=ann_sync).last == 6
    # Everything after 3: each changed row once, in the order of its latest change.
    page = history.changes_since(ann_sync, 3, 100)
    assert [(item["id"], item["version"], item["change"]) for item in page["changes"]] == [
        (rows[2].pk, 5, "read"),
        (rows[0].pk, 6, "archived"),
    ]


def test_a_deletion_is_a_tombstone_that_sync_replays_without_content(ann_sync: Any) -> None:
    row = Notification.objects.create(recipient=ann_sync, message="secret", data={"a": 1})
    changes.change(ann_sync, Change.DELETED, [row.pk])
    (item,) = history.changes_since(ann_sync, 1, 100)["changes"]
    assert item["deleted"] is True and item["change"] == "deleted" and item["version"] == 2
    assert "label" not in item and "data" not in item
    # Deleted is gone for the user: naming it again is not_found, and nothing changes.
    with pytest.raises(changes.NotFound):
        changes.change(ann_sync, Change.READ, [row.pk])


def test_ids_of_someone_else_change_nothing_at_all(ann_sync: Any, bob_sync: Any) -> None:
    mine = Notification.objects.create(recipient=ann_sync, message="m")
    theirs = Notification.objects.create(recipient=bob_sync, message="t")
    with pytest.raises(changes.NotFound) as raised:
        changes.change(ann_sync, Change.READ, [mine.pk, theirs.pk, 2**70])
    assert raised.value.ids == sorted([theirs.pk, 2**70])
    assert not Notification.objects.filter(is_read=True).exists()
    assert NotificationSequence.objects.get(user=ann_sync).last == 1


def test_a_bulk_change_is_bounded_per_call_and_says_what_is_left(ann_sync: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(changes, "BATCH", 3)
    monkeypatch.setattr(changes, "MAX_BATCHES", 2)
    for i in range(8):
        Notification.objects.create(recipient=ann_sync, message=f"n{i}")
    assert changes.change(ann_sync, Change.READ) == (6, True)
    assert changes.change(ann_sync, Change.READ) == (2, False)
    versions = sorted(Notification.objects.values_list("version", flat=True))
    assert versions == list(range(9, 17))  # every row numbered, each number once


def test_the_record_of_what_a_socket_was_sent_takes_runs_of_numbers() -> None:
    service = NotifierService(_Connection())
    service.connect_frame_sent({"seq": 10})
    service.push_sent(15, 11)  # a batch of changes, 11 to 15
    assert (service.delivered, service.ahead) == (15, set())
    service.push_sent(20, 18)  # 16 and 17 not sent yet
    assert (service.delivered, service.ahead) == (15, {18, 19, 20})
    service.push_sent(17, 16)
    assert (service.delivered, service.ahead) == (20, set())
    service.push_sent(22 + MAX_AHEAD, 22)  # a run too long to keep past a gap: dropped, bounded
    assert (service.delivered, service.ahead) == (20, set())


class _Connection:
    channel_name = "test!socket"
    scope: dict[str, Any] = {}


# -- every tab, and a tab that was offline --------------------------------------------------


class Inbox:
    """What a tab shows, kept as a client keeps it: a list at connect, then changes applied by
    ``version`` from its cursor (pushes and ``sync`` pages alike), each once."""

    def __init__(self, cursor: int) -> None:
        self.cursor = cursor
        self.items: dict[int, dict[str, Any]] = {}

    def apply(self, item: dict[str, Any]) -> None:
        if item["version"] <= self.cursor:
            return
        self.cursor = item["version"]
        if item["deleted"]:
            self.items.pop(item["id"], None)
        else:
            self.items[item["id"]] = {**self.items.get(item["id"], {}), **item}

    def shown(self) -> dict[int, tuple[bool, bool, bool, str | None]]:
        return {
            pk: (item["is_read"], item["seen"], item["archived"], item["snoozed_until"])
            for pk, item in self.items.items()
            if item["snoozed_until"] is None
        }


async def sync_all(socket: Socket, inbox: Inbox) -> list[int]:
    """Page ``sync`` with changes from the inbox's cursor; the versions it brought, in order."""
    brought: list[int] = []
    while True:
        reply = await socket.action(
            "notifications", "sync", {"since": inbox.cursor, "changes": True, "limit": 2}, id="s"
        )
        payload = reply["payload"]
        assert "reset" not in payload
        for item in payload["changes"]:
            brought.append(item["version"])
            inbox.apply(item)
        inbox.cursor = max(inbox.cursor, payload["seq"])
        if not payload["has_more"]:
            return brought


async def everything(socket: Socket) -> Inbox:
    """An inbox loaded from scratch: the state a tab that never left must show."""
    inbox = Inbox(0)
    for view in ("all", "archived"):
        reply = await socket.action("notifications", "list", {"view": view, "limit": 100}, id="l")
        for item in reply["payload"]["notifications"]:
            inbox.items[item["id"]] = item
    return inbox


async def test_a_tab_offline_while_another_reads_archives_deletes_syncs_the_same_inbox(ann: Any) -> None:
    rows = [await make(ann, f"n{i}") for i in range(6)]
    async with connected(ann) as offline:
        cursor = offline.connect_frames[1]["payload"]["seq"]
        offline_inbox = await everything(offline)
        offline_inbox.cursor = cursor
    async with connected(ann) as online:
        watching = Inbox(online.connect_frames[1]["payload"]["seq"])
        steps = [
            ("mark_read", [rows[0].pk, rows[1].pk]),
            ("mark_unread", [rows[1].pk]),
            ("mark_seen", [rows[2].pk]),
            ("archive", [rows[3].pk]),
            ("delete", [rows[4].pk]),
            ("snooze", {"ids": [rows[5].pk], "until": (timezone.now() + timedelta(hours=1)).isoformat()}),
            ("mark_read", [rows[3].pk]),  # a second change of an archived one
        ]
        for action, data in steps:
            await online.action("notifications", action, data, id="a")
            push = (await online.receive())["payload"]
            for item in push["changes"]:
                watching.apply(item)
        await make(ann, "new while away")
        new_push = (await online.receive())["payload"]
        watching.apply(new_push["last"])
        reference = await everything(online)
    async with connected(ann) as back:
        brought = await sync_all(back, offline_inbox)
        # Nothing twice, in order, and nothing missing: the same inbox as a fresh load.
        assert brought == sorted(set(brought))
        assert offline_inbox.shown() == reference.shown()
        assert offline_inbox.cursor == await latest(ann)
        # The counts agree with the inbox.
        counts = back.connect_frames[1]["payload"]["counts"]
        shown = [item for item in reference.items.values() if not item["archived"]]
        assert counts["unread"] == sum(not item["is_read"] for item in shown)
        assert counts["archived"] == 1


async def test_each_change_reaches_every_tab_with_the_counts(ann: Any, bob: Any) -> None:
    row = await make(ann)
    async with connected(ann) as one, connected(ann) as two, connected(bob) as other:
        reply = await one.action("notifications", "mark_seen", [row.pk], id=1)
        assert reply["payload"]["counts"] == {"unread": 1, "unseen": 0, "archived": 0, "badge": 1}
        for socket in (one, two):
            push = (await socket.receive())["payload"]
            assert [(item["id"], item["change"], item["seen"]) for item in push["changes"]] == [
                (row.pk, "seen", True)
            ]
            assert "seq" not in push  # an older client must not take it for a connect frame
        assert await other.receive_nothing()


@override_settings(WSGATEWAY={"NOTIFICATIONS_BADGE": "unseen"})
async def test_the_badge_counts_what_the_site_chose(ann: Any) -> None:
    await make(ann)
    seen = await make(ann)
    async with connected(ann) as socket:
        await socket.action("notifications", "mark_seen", [seen.pk], id=1)
        push = (await socket.receive())["payload"]
        assert push["counts"] == {"unread": 2, "unseen": 1, "archived": 0, "badge": 1}


async def test_archive_all_read_and_mark_all_seen(ann: Any) -> None:
    read = await make(ann, is_read=True)
    unread = await make(ann)
    async with connected(ann) as socket:
        reply = await socket.action("notifications", "archive_all_read", None, id=1)
        assert (reply["payload"]["changed"], reply["payload"]["has_more"]) == (1, False)
        push = (await socket.receive())["payload"]
        assert [item["id"] for item in push["changes"]] == [read.pk]
        reply = await socket.action("notifications", "mark_all_seen", None, id=2)
        assert reply["payload"]["changed"] == 2  # seen_at is set on the archived one too
        await socket.receive()
        listed = await socket.action("notifications", "list", {"view": "archived"}, id=3)
        assert [item["id"] for item in listed["payload"]["notifications"]] == [read.pk]
        listed = await socket.action("notifications", "list", None, id=4)
        assert [item["id"] for item in listed["payload"]["notifications"]] == [unread.pk]


async def test_an_old_client_sync_brings_new_notifications_only_and_its_cursor_moves_past_changes(
    ann: Any,
) -> None:
    first = await make(ann)
    async with connected(ann) as socket:
        await socket.action("notifications", "mark_read", [first.pk], id=1)
        await socket.receive()
        await make(ann, "new")
        pushed = (await socket.receive())["payload"]["last"]
        assert pushed["seq"] == 3  # past the gap the read took: an old client syncs, as after a lost push
        reply = await socket.action("notifications", "sync", {"since": 1}, id=2)
        assert [item["seq"] for item in reply["payload"]["notifications"]] == [3]
        assert reply["payload"]["seq"] == 3


# -- bad input: a clear code, nothing stored ------------------------------------------------


@pytest.mark.parametrize(
    ("action", "data"),
    [
        ("archive", "1"),
        ("archive", [True]),
        ("archive", list(range(1, 102))),
        ("delete", None),
        ("snooze", [1]),
        ("snooze", {"ids": [1], "until": "tomorrow"}),
        ("snooze", {"ids": [1], "until": "2020-01-01T00:00:00+00:00"}),
        ("snooze", {"ids": [1], "until": "2999-01-01T00:00:00"}),  # no offset
        ("snooze", {"ids": [1], "until": "2999-01-01T00:00:00+00:00"}),  # too far
        ("snooze", {"ids": [1], "until": 5}),
        ("list", {"view": "trash"}),
        ("sync", {"since": 0, "changes": "yes"}),
    ],
)
async def test_bad_input_is_invalid_data_and_stores_nothing(ann: Any, action: str, data: Any) -> None:
    row = await make(ann)
    async with connected(ann) as socket:
        assert await socket.action("notifications", action, data, id=1) == error_frame(
            "notifications", "invalid_data", 1
        )
    assert (await Notification.objects.aget(pk=row.pk)).version == 1
    assert await latest(ann) == 1


async def test_a_deleted_notification_is_not_found_afterwards(ann: Any) -> None:
    row = await make(ann)
    async with connected(ann) as socket:
        await socket.action("notifications", "delete", [row.pk], id=1)
        await socket.receive()
        assert await socket.action("notifications", "unarchive", [row.pk], id=2) == error_frame(
            "notifications", "not_found", 2
        )


# -- snoozed ones come back -----------------------------------------------------------------


async def test_a_due_snooze_comes_back_as_new_on_every_tab(ann: Any) -> None:
    row = await make(ann, is_read=True)
    async with connected(ann) as one, connected(ann) as two:
        until = (timezone.now() + timedelta(minutes=5)).isoformat()
        await one.action("notifications", "snooze", {"ids": [row.pk], "until": until}, id=1)
        for socket in (one, two):
            assert (await socket.receive())["payload"]["changes"][0]["snoozed_until"] is not None
        listed = await one.action("notifications", "list", None, id=2)
        assert listed["payload"]["notifications"] == []  # hidden while snoozed
        await Notification.objects.filter(pk=row.pk).aupdate(
            snoozed_until=timezone.now() - timedelta(seconds=1)
        )
        assert await sync_to_async(snoozing.wake_due)() == 1
        for socket in (one, two):
            push = (await socket.receive())["payload"]
            (item,) = push["changes"]
            assert (item["change"], item["is_read"], item["seen"], item["label"]) == (
                "unsnoozed",
                False,
                False,
                "m",
            )
            assert push["unread"] == 1
        assert await sync_to_async(snoozing.wake_due)() == 0  # once


async def test_a_connect_wakes_what_is_due_and_counts_it_asked_in_the_statement_of_the_counts(
    ann: Any,
) -> None:
    due, later = await make(ann, "due"), await make(ann, "later")
    now = timezone.now()
    await Notification.objects.filter(pk=due.pk).aupdate(snoozed_until=now - timedelta(seconds=1))
    await Notification.objects.filter(pk=later.pk).aupdate(snoozed_until=now + timedelta(hours=1))
    async with connected(ann) as socket:
        state = socket.connect_frames[1]["payload"]
        # The due one came back before the counts were read; the other is still hidden.
        assert (state["unread"], state["counts"]["unseen"]) == (1, 1)
        assert state["seq"] == await latest(ann)
        # Woken as any wake is: a change pushed to the user's sockets, this one's too (it joined its
        # groups before the snapshot was read).
        (change,) = (await socket.receive())["payload"]["changes"]
        assert (change["id"], change["change"]) == (due.pk, "unsnoozed")
    assert (await Notification.objects.aget(pk=due.pk)).snoozed_until is None
    assert (await Notification.objects.aget(pk=later.pk)).snoozed_until is not None


def test_the_counts_statement_answers_whether_the_due_query_finds_a_row(ann_sync: Any) -> None:
    row = Notification.objects.create(recipient=ann_sync, message="m")
    query = snoozing.due_query(ann_sync.pk, "default")
    state, found = connect_state_and_found(ann_sync.pk, query)
    assert (state, found) == (connect_state(ann_sync.pk), False)
    Notification.objects.filter(pk=row.pk).update(snoozed_until=timezone.now() - timedelta(seconds=1))
    state, found = connect_state_and_found(ann_sync.pk, snoozing.due_query(ann_sync.pk, "default"))
    # Found, and the counts are those of the statement: the snoozed one is not counted until woken.
    assert (state["unread"], state["seq"], found) == (0, 1, True)
    assert connect_state_and_found(ann_sync.pk, None)[1] is False


@override_settings(WSGATEWAY={"NOTIFICATIONS_SNOOZE_CHECK_INTERVAL": 1})
async def test_the_clock_of_a_process_with_open_sockets_wakes_what_is_due(ann: Any) -> None:
    row = await make(ann)
    async with connected(ann) as socket:
        await Notification.objects.filter(pk=row.pk).aupdate(snoozed_until=timezone.now())
        push = await socket.receive(within=5)
        assert push["payload"]["changes"][0]["change"] == "unsnoozed"


# -- pruning ----------------------------------------------------------------------------------


def test_prune_removes_what_it_should_by_ranges_and_says_how_many(ann_sync: Any) -> None:
    now = timezone.now()
    old = now - timedelta(days=400)
    keep = [Notification.objects.create(recipient=ann_sync, message="fresh")]
    keep.append(
        Notification.objects.create(recipient=ann_sync, message="future", expires_at=now + timedelta(days=1))
    )
    gone = {
        "expired": Notification.objects.create(recipient=ann_sync, message="e", expires_at=now),
        "read": Notification.objects.create(recipient=ann_sync, message="r", is_read=True),
        "archived": Notification.objects.create(recipient=ann_sync, message="a", archived_at=old),
        "deleted": Notification.objects.create(recipient=ann_sync, message="d", deleted_at=old),
    }
    Notification.objects.filter(pk__in=[row.pk for row in gone.values()]).update(changed=old)
    keep.append(Notification.objects.create(recipient=ann_sync, message="read lately", is_read=True))
    out = io.StringIO()
    call_command("wsgateway_prune", "--batch", "2", stdout=out)
    assert out.getvalue().startswith("Removed 4 notification(s): 1 deleted, 1 expired, 1 archived, 1 read;")
    assert set(Notification.objects.values_list("pk", flat=True)) == {row.pk for row in keep}
    # The greatest number removed (not the expired one's: a client hides that one by itself).
    assert NotificationSequence.objects.get(user=ann_sync).pruned == gone["deleted"].version
    assert prune().total == 0


def test_the_prune_command_refuses_a_bad_batch() -> None:
    with pytest.raises(Exception, match="--batch must be from 1 to 10000"):
        call_command("wsgateway_prune", "--batch", "0")


async def test_a_sync_from_before_what_was_pruned_is_told_to_reload(ann: Any) -> None:
    row = await make(ann)
    await make(ann)
    await Notification.objects.filter(pk=row.pk).aupdate(deleted_at=timezone.now() - timedelta(days=400))
    await sync_to_async(prune)()
    async with connected(ann) as socket:
        reply = await socket.action("notifications", "sync", {"since": 0, "changes": True}, id=1)
        assert reply["payload"]["reset"] is True
        assert reply["payload"]["seq"] == 2
        reply = await socket.action("notifications", "sync", {"since": 1, "changes": True}, id=2)
        assert "reset" not in reply["payload"] and reply["payload"]["changes"][0]["seq"] == 2


async def test_no_clock_is_left_behind_when_the_last_socket_closes(ann: Any) -> None:
    async with connected(ann):
        clock = snoozing.clock()
        assert clock is not None and clock.timer is not None
    await asyncio.sleep(0)
    assert clock.timer is None and not clock.sockets
