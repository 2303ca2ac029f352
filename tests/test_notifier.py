"""The "notifications" channel: unread state on connect, pushes on save, read state, the list, notify()."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.messages import constants as levels
from django.db import transaction
from django.test import Client, override_settings

from tests.support.communicators import connected, create_user, error_frame, frame
from wsgateway import anotify, notify
from wsgateway.models import Notification

pytestmark = pytest.mark.django_db(transaction=True)


async def stored(pk: int) -> Notification:
    return await Notification.objects.select_related("created_by", "changed_by").aget(pk=pk)


async def wire(pk: int) -> dict[str, Any]:
    """What the client must see for a stored notification, spelled out field by field."""
    n = await stored(pk)
    return {
        "id": n.pk,
        "seq": n.seq,
        "category": {10: "debug", 20: "info", 25: "success", 30: "warning", 40: "error"}[n.category],
        "label": n.message,
        "is_read": n.is_read,
        "version": n.version,
        "change": n.get_change_display(),
        "seen": n.seen_at is not None or n.is_read,
        "archived": n.archived_at is not None,
        "deleted": n.deleted_at is not None,
        "snoozed_until": n.snoozed_until.isoformat() if n.snoozed_until else None,
        "expires_at": n.expires_at.isoformat() if n.expires_at else None,
        "kind": n.kind,
        "group": n.group,
        "count": n.count,
        "actors": n.actors,
        "data": n.data,
        "actions": n.actions,
        "metainfo": {
            "createdDatetime": n.created.isoformat(),
            "changedDatetime": n.changed.isoformat(),
            "createdUser": n.created_by.username if n.created_by else None,
            "changedUser": n.changed_by.username if n.changed_by else None,
        },
    }


def counts(unread: int, unseen: int | None = None, archived: int = 0) -> dict[str, int]:
    """The counts a frame carries (the badge counts the unread, the default); ``unseen`` defaults
    to ``unread``: nothing seen but what was read."""
    unseen = unread if unseen is None else unseen
    return {"unread": unread, "unseen": unseen, "archived": archived, "badge": unread}


async def pushed(pk: int, unread: int, unseen: int | None = None) -> dict[str, Any]:
    """The frame every socket of the recipient gets when notification ``pk`` is saved."""
    last = await wire(pk)
    return frame(
        "notifications",
        {"category": last["category"], "last": last, "unread": unread, "counts": counts(unread, unseen)},
    )


def state(unread: int, category: str | None, unseen: int | None = None) -> dict[str, Any]:
    return frame("notifications", {"unread": unread, "category": category, "counts": counts(unread, unseen)})


def connect_state(unread: int, category: str | None, seq: int, unseen: int | None = None) -> dict[str, Any]:
    """The connect frame: the counts, and the user's latest number (the client's cursor)."""
    return frame(
        "notifications",
        {"unread": unread, "category": category, "counts": counts(unread, unseen), "seq": seq},
    )


async def changed(
    ids: list[int], unread: int, category: str | None, unseen: int | None = None
) -> dict[str, Any]:
    """The push of a change of the notifications ``ids`` (as stored now, in the order of their
    numbers), with the counts after it."""
    items = []
    for pk in ids:
        n = await stored(pk)
        items.append({"id": pk, "seq": n.seq, "is_read": n.is_read, **n.state_wire()})
    items.sort(key=lambda item: item["version"])
    payload = {"changes": items, "unread": unread, "category": category, "counts": counts(unread, unseen)}
    return frame("notifications", payload)


async def make(user: Any, message: str = "m", **fields: Any) -> Notification:
    """A stored notification, made without anyone listening."""
    return await Notification.objects.acreate(recipient=user, message=message, **fields)


# -- on connect -------------------------------------------------------------------------


async def test_connect_frame_has_no_unread_and_no_category_for_a_new_user(ann: Any) -> None:
    async with connected(ann) as socket:
        assert socket.connect_frames[1] == connect_state(0, None, 0)


async def test_connect_frame_has_unread_count_and_category_of_newest_unread(ann: Any, bob: Any) -> None:
    await make(ann, category=levels.WARNING)
    await make(ann, category=levels.SUCCESS)
    await make(ann, category=levels.ERROR, is_read=True)
    await make(bob, category=levels.DEBUG)
    async with connected(ann) as socket:
        assert socket.connect_frames[1] == connect_state(2, "success", 3)


# -- pushes -----------------------------------------------------------------------------


async def test_notify_from_sync_code_reaches_every_socket_of_the_user_and_no_one_else(
    ann: Any, bob: Any
) -> None:
    async with connected(ann) as first, connected(ann) as second, connected(bob) as other:
        (notification,) = await sync_to_async(notify)(ann, "Report ready")
        expected = await pushed(notification.pk, unread=1)
        assert await first.receive() == expected
        assert await second.receive() == expected
        assert await other.receive_nothing()


async def test_anotify_reaches_every_socket_of_the_user_and_no_one_else(ann: Any, bob: Any) -> None:
    async with connected(ann) as first, connected(ann) as second, connected(bob) as other:
        (notification,) = await anotify(ann, "Report ready", category="success")
        expected = await pushed(notification.pk, unread=1)
        assert await first.receive() == expected
        assert await second.receive() == expected
        assert await other.receive_nothing()


async def test_push_frame_has_exactly_the_documented_shape(ann: Any) -> None:
    sender = await create_user("sam")
    async with connected(ann) as socket:
        (notification,) = await anotify(
            ann,
            "Export finished",
            category="warning",
            data={"export": 7, "rows": [1, 2]},
            actions=[{"label": "Download", "url": "/exports/7/"}],
            sender=sender,
        )
        n = await stored(notification.pk)
        assert await socket.receive() == {
            "channel": "notifications",
            "payload": {
                "category": "warning",
                "last": {
                    "id": n.pk,
                    "seq": 1,
                    "category": "warning",
                    "label": "Export finished",
                    "is_read": False,
                    "version": 1,
                    "change": "created",
                    "seen": False,
                    "archived": False,
                    "deleted": False,
                    "snoozed_until": None,
                    "expires_at": None,
                    "kind": "",
                    "group": "",
                    "count": 1,
                    "actors": [],
                    "data": {"export": 7, "rows": [1, 2]},
                    "actions": [{"label": "Download", "url": "/exports/7/"}],
                    "metainfo": {
                        "createdDatetime": n.created.isoformat(),
                        "changedDatetime": n.changed.isoformat(),
                        "createdUser": "sam",
                        "changedUser": "sam",
                    },
                },
                "unread": 1,
                "counts": {"unread": 1, "unseen": 1, "archived": 0, "badge": 1},
            },
        }


async def test_push_carries_the_unread_count_after_the_save(ann: Any) -> None:
    await make(ann)
    await make(ann, is_read=True)
    async with connected(ann) as socket:
        (notification,) = await anotify(ann, "third")
        assert await socket.receive() == await pushed(notification.pk, unread=2)


async def test_objects_create_pushes(ann: Any) -> None:
    async with connected(ann) as socket:
        notification = await sync_to_async(Notification.objects.create)(
            recipient=ann, message="made directly", category=levels.ERROR
        )
        assert await socket.receive() == await pushed(notification.pk, unread=1)


async def test_saving_an_existing_notification_pushes_it_again(ann: Any) -> None:
    notification = await make(ann, "edited later")
    async with connected(ann) as socket:
        notification.message = "edited"
        notification.is_read = True
        await sync_to_async(notification.save)()
        assert await socket.receive() == await pushed(notification.pk, unread=0)


async def test_save_in_a_rolled_back_transaction_is_not_pushed(ann: Any) -> None:
    @sync_to_async
    def create_and_roll_back() -> None:
        with transaction.atomic():
            notify(ann, "never happened")
            Notification.objects.create(recipient=ann, message="neither did this")
            transaction.set_rollback(True)

    async with connected(ann) as socket:
        await create_and_roll_back()
        assert await socket.receive_nothing(0.3)
    assert await Notification.objects.acount() == 0


async def test_save_is_pushed_only_when_the_transaction_commits(ann: Any) -> None:
    async with connected(ann) as socket:

        @sync_to_async
        def create_in_a_transaction() -> Notification:
            with transaction.atomic():
                notification = Notification.objects.create(recipient=ann, message="after commit")
                # Still inside the transaction: the socket must not have heard of the row yet.
                assert async_to_sync(socket.receive_nothing)(0.2)
            return notification

        notification = await create_in_a_transaction()
        assert await socket.receive() == await pushed(notification.pk, unread=1)


async def test_notification_deleted_before_commit_is_not_pushed(ann: Any) -> None:
    @sync_to_async
    def create_then_delete() -> None:
        with transaction.atomic():
            Notification.objects.create(recipient=ann, message="gone").delete()

    async with connected(ann) as socket:
        await create_then_delete()
        assert await socket.receive_nothing(0.3)


async def test_notify_to_a_list_of_users_stores_and_pushes_one_each(ann: Any, bob: Any) -> None:
    await make(bob)
    async with connected(ann) as ann_socket, connected(bob) as bob_socket:
        for_ann, for_bob = await anotify([ann, bob], "Maintenance at noon", category="info")
        assert for_ann.recipient_id == ann.pk and for_bob.recipient_id == bob.pk
        assert await ann_socket.receive() == await pushed(for_ann.pk, unread=1)
        assert await bob_socket.receive() == await pushed(for_bob.pk, unread=2)
        assert await ann_socket.receive_nothing()
    assert await Notification.objects.filter(message="Maintenance at noon").acount() == 2


async def test_notify_accepts_a_queryset_of_users(ann: Any, bob: Any) -> None:
    sent = await sync_to_async(lambda: notify(get_user_model().objects.order_by("pk"), "to all"))()
    assert [n.recipient_id for n in sent] == [ann.pk, bob.pk]


@pytest.mark.parametrize(
    ("category", "level", "tag"),
    [("debug", 10, "debug"), ("success", 25, "success"), (levels.WARNING, 30, "warning"), (40, 40, "error")],
)
async def test_category_is_a_message_tag_or_level(ann: Any, category: Any, level: int, tag: str) -> None:
    async with connected(ann) as socket:
        (notification,) = await anotify(ann, "m", category=category)
        assert (await stored(notification.pk)).category == level
        assert (await socket.receive())["payload"]["category"] == tag


async def test_category_follows_the_message_tags_setting(ann: Any) -> None:
    with override_settings(MESSAGE_TAGS={levels.ERROR: "danger"}):
        async with connected(ann) as socket:
            (notification,) = await anotify(ann, "m", category="danger")
            assert (await stored(notification.pk)).category == levels.ERROR
            assert (await socket.receive())["payload"]["category"] == "danger"


@pytest.mark.parametrize("category", ["loud", "ERROR", "", 99, True, None, 25.0])
async def test_unknown_category_is_a_value_error_and_nothing_is_stored(ann: Any, category: Any) -> None:
    with pytest.raises(ValueError, match="category"):
        await sync_to_async(notify)(ann, "m", category=category)
    assert await Notification.objects.acount() == 0


@pytest.mark.parametrize(
    "actions",
    [[{"label": "Open"}], [{"url": "/"}], ["/"], [[("label", "Open"), ("url", "/")]], "/", [None]],
    ids=["no url", "no label", "a string", "pairs", "not a list", "null"],
)
async def test_bad_actions_are_a_value_error_and_nothing_is_stored(ann: Any, actions: Any) -> None:
    with pytest.raises(ValueError, match="action"):
        await anotify(ann, "m", actions=actions)
    assert await Notification.objects.acount() == 0


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(document.cookie)",
        "JavaScript:alert(1)",
        " javascript:alert(1)",
        "java\tscript:alert(1)",
        "java\nscript:alert(1)",
        "\x00javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
        "file:///etc/passwd",
        "/x/ ",
        "http://[::1",
    ],
    ids=repr,
)
async def test_an_action_url_that_is_not_http_or_relative_is_a_value_error_and_nothing_is_stored(
    ann: Any, url: str
) -> None:
    with pytest.raises(ValueError, match="url"):
        await anotify(ann, "m", actions=[{"label": "Fine", "url": "/ok/"}, {"label": "Open", "url": url}])
    assert await Notification.objects.acount() == 0


@pytest.mark.parametrize(
    "url",
    [
        "/exports/7/",
        "exports/7",
        "?page=2",
        "#top",
        "",
        "https://example.com/a?b#c",
        "HTTP://example.com",
        "//cdn.example.com/file",
        "/files/my report.pdf",
    ],
    ids=repr,
)
async def test_http_and_relative_action_urls_are_stored_as_given(ann: Any, url: str) -> None:
    (notification,) = await anotify(ann, "m", actions=[{"label": "Open", "url": url}])
    assert (await stored(notification.pk)).actions == [{"label": "Open", "url": url}]


async def test_actions_keep_only_label_and_url(ann: Any) -> None:
    (notification,) = await anotify(
        ann, "m", actions=[{"label": "Open", "url": "/x/", "onclick": "alert(1)"}]
    )
    assert (await stored(notification.pk)).actions == [{"label": "Open", "url": "/x/"}]


# -- mark_read and mark_all_read --------------------------------------------------------


async def test_mark_read_answers_with_the_new_state_and_pushes_it_to_every_socket(ann: Any) -> None:
    older = await make(ann, category=levels.WARNING)
    newer = await make(ann, category=levels.ERROR)
    async with connected(ann) as asker, connected(ann) as other:
        reply = await asker.request("notifications", {"action": "mark_read", "data": [newer.pk]}, "r1")
        assert reply == frame(
            "notifications", {"unread": 1, "category": "warning", "counts": counts(1)}, "r1"
        )
        # Every socket, the asker's too, gets the change itself (so a tab shows it read) and the counts.
        push = await changed([newer.pk], 1, "warning")
        assert await asker.receive() == push
        assert await other.receive() == push
    assert (await stored(newer.pk)).is_read
    assert not (await stored(older.pk)).is_read


async def test_mark_read_records_who_changed_it(ann: Any) -> None:
    notification = await make(ann)
    before = (await stored(notification.pk)).changed
    async with connected(ann) as socket:
        await socket.action("notifications", "mark_read", [notification.pk], id=1)
        assert await socket.receive() == await changed([notification.pk], 0, None)
    after = await stored(notification.pk)
    assert after.changed_by_id == ann.pk
    assert after.changed > before


async def test_mark_read_of_many_ids_at_once(ann: Any) -> None:
    first, _, third = [await make(ann) for _ in range(3)]
    async with connected(ann) as socket:
        reply = await socket.action("notifications", "mark_read", [first.pk, third.pk, first.pk], id=2)
        assert reply == frame("notifications", {"unread": 1, "category": "info", "counts": counts(1)}, 2)
        assert await socket.receive() == await changed([first.pk, third.pk], 1, "info")
    assert [n.is_read async for n in Notification.objects.order_by("pk")] == [True, False, True]


async def test_mark_read_of_an_already_read_notification_is_fine(ann: Any) -> None:
    notification = await make(ann, is_read=True)
    async with connected(ann) as socket:
        assert await socket.action("notifications", "mark_read", [notification.pk], id=3) == frame(
            "notifications", {"unread": 0, "category": None, "counts": counts(0)}, 3
        )
        # Nothing changed (no number taken): the counts alone, as before.
        assert await socket.receive() == state(0, None)


async def test_mark_read_of_another_users_notification_is_not_found_and_changes_nothing(
    ann: Any, bob: Any
) -> None:
    mine = await make(ann)
    theirs = await make(bob)
    async with connected(ann) as socket, connected(bob) as bob_socket:
        reply = await socket.action("notifications", "mark_read", [mine.pk, theirs.pk], id="x")
        assert reply == error_frame("notifications", "not_found", "x")
        assert await socket.receive_nothing()
        assert await bob_socket.receive_nothing()
        await socket.assert_open()
    assert not (await stored(mine.pk)).is_read
    assert not (await stored(theirs.pk)).is_read


@pytest.mark.parametrize("missing", [10**6, -1, 0, 2**63 - 1, 2**63, 2**70, -(2**70)])
async def test_mark_read_of_an_id_that_does_not_exist_is_not_found(ann: Any, missing: int) -> None:
    mine = await make(ann)
    async with connected(ann) as socket:
        reply = await socket.action("notifications", "mark_read", [mine.pk, missing], id=5)
        assert reply == error_frame("notifications", "not_found", 5)
        await socket.assert_open()
    assert not (await stored(mine.pk)).is_read


async def test_mark_all_read_marks_only_the_users_own(ann: Any, bob: Any) -> None:
    first = await make(ann)
    second = await make(ann, category=levels.ERROR)
    await make(bob)
    async with connected(ann) as asker, connected(ann) as other, connected(bob) as bob_socket:
        assert await asker.action("notifications", "mark_all_read", id=1) == frame(
            "notifications",
            {"unread": 0, "category": None, "counts": counts(0), "changed": 2, "has_more": False},
            1,
        )
        push = await changed([first.pk, second.pk], 0, None)
        assert await asker.receive() == push
        assert await other.receive() == push
        assert await bob_socket.receive_nothing()
    assert await Notification.objects.filter(recipient=ann, is_read=False).acount() == 0
    assert await Notification.objects.filter(recipient=bob, is_read=False).acount() == 1


async def test_mark_all_read_ignores_its_data(ann: Any) -> None:
    only = await make(ann)
    async with connected(ann) as socket:
        reply = await socket.request("notifications", {"action": "mark_all_read", "data": [12345]}, 1)
        assert reply == frame(
            "notifications",
            {"unread": 0, "category": None, "counts": counts(0), "changed": 1, "has_more": False},
            1,
        )
        assert await socket.receive() == await changed([only.pk], 0, None)


# -- list -------------------------------------------------------------------------------


async def listed(socket: Any, data: Any, id: str | int = "l") -> dict[str, Any]:
    reply = await socket.action("notifications", "list", data, id=id)
    assert reply["id"] == id and reply["channel"] == "notifications", reply
    return reply["payload"]  # type: ignore[no-any-return]


async def test_list_is_newest_first_with_full_entries_and_unread_state(ann: Any, bob: Any) -> None:
    first = await make(ann, "first")
    second = await make(ann, "second", category=levels.WARNING, is_read=True)
    third = await make(ann, "third", category=levels.ERROR)
    await make(bob, "not ann's")
    async with connected(ann) as socket:
        assert await listed(socket, None) == {
            "notifications": [await wire(third.pk), await wire(second.pk), await wire(first.pk)],
            "has_more": False,
            "unread": 2,
            "category": "error",
            "counts": counts(2),
        }


async def test_list_limit_and_has_more_and_before_page_through_everything(ann: Any) -> None:
    made = [await make(ann, f"n{i}") for i in range(5)]
    async with connected(ann) as socket:
        page = await listed(socket, {"limit": 2})
        assert [n["label"] for n in page["notifications"]] == ["n4", "n3"] and page["has_more"] is True
        page = await listed(socket, {"limit": 2, "before": page["notifications"][-1]["id"]})
        assert [n["label"] for n in page["notifications"]] == ["n2", "n1"] and page["has_more"] is True
        page = await listed(socket, {"limit": 2, "before": page["notifications"][-1]["id"]})
        assert [n["label"] for n in page["notifications"]] == ["n0"] and page["has_more"] is False
        page = await listed(socket, {"limit": 2, "before": made[0].pk})
        assert page["notifications"] == [] and page["has_more"] is False


async def test_list_with_exactly_limit_items_has_no_more(ann: Any) -> None:
    for i in range(3):
        await make(ann, f"n{i}")
    async with connected(ann) as socket:
        assert (await listed(socket, {"limit": 3}))["has_more"] is False


async def test_list_unread_only(ann: Any) -> None:
    await make(ann, "read", is_read=True)
    await make(ann, "unread")
    await make(ann, "read too", is_read=True)
    async with connected(ann) as socket:
        page = await listed(socket, {"unread_only": True})
        assert [n["label"] for n in page["notifications"]] == ["unread"]
        page = await listed(socket, {"unread_only": False})
        assert [n["label"] for n in page["notifications"]] == ["read too", "unread", "read"]


async def test_list_page_size_defaults_to_the_setting(ann: Any) -> None:
    for i in range(3):
        await make(ann, f"n{i}")
    with override_settings(WSGATEWAY={"NOTIFICATIONS_PAGE_SIZE": 2}):
        async with connected(ann) as socket:
            page = await listed(socket, {})
            assert len(page["notifications"]) == 2 and page["has_more"] is True


async def test_list_limit_of_100_is_allowed(ann: Any) -> None:
    await Notification.objects.abulk_create(
        [Notification(recipient=ann, message=f"n{i}") for i in range(101)]
    )
    async with connected(ann) as socket:
        page = await listed(socket, {"limit": 100})
        assert len(page["notifications"]) == 100 and page["has_more"] is True


@pytest.mark.parametrize("limit", [101, 0, -1, 10**9, True, 2.0, "10", None])
async def test_list_limit_outside_1_to_100_is_invalid_data(ann: Any, limit: Any) -> None:
    async with connected(ann) as socket:
        assert await socket.action("notifications", "list", {"limit": limit}, id=7) == error_frame(
            "notifications", "invalid_data", 7
        )
        await socket.assert_open()


async def test_list_with_a_before_beyond_any_id_lists_from_the_newest(ann: Any) -> None:
    await make(ann, "only")
    async with connected(ann) as socket:
        page = await listed(socket, {"before": 2**70})
        assert [n["label"] for n in page["notifications"]] == ["only"]


async def test_list_changes_nothing_and_pushes_nothing(ann: Any) -> None:
    await make(ann)
    async with connected(ann) as socket, connected(ann) as other:
        await listed(socket, {})
        assert await other.receive_nothing()
    assert await Notification.objects.filter(is_read=False).acount() == 1


# -- the admin --------------------------------------------------------------------------


async def test_notification_added_in_the_admin_is_pushed(ann: Any) -> None:
    admin = await create_user("root", is_staff=True, is_superuser=True)

    @sync_to_async
    def add_in_admin() -> int:
        client = Client()
        client.force_login(admin)
        response = client.post(
            "/admin/wsgateway/notification/add/",
            {
                "recipient": ann.pk,
                "category": levels.SUCCESS,
                "message": "Added by an admin",
                "data": '{"from": "admin"}',
                "actions": '[{"label": "Open", "url": "/"}]',
                "_save": "Save",
            },
        )
        assert response.status_code == 302, response.content.decode()[:2000]
        return response.status_code

    async with connected(ann) as socket:
        await add_in_admin()
        notification = await Notification.objects.aget()
        frame_ = await socket.receive()
        assert frame_ == await pushed(notification.pk, unread=1)
        assert frame_["payload"]["last"]["metainfo"]["createdUser"] == "root"
        assert frame_["payload"]["last"]["data"] == {"from": "admin"}


# -- what a socket was sent, for the resync's "missed" ----------------------------------


class _Connection:
    channel_name = "test!socket"
    scope: dict[str, Any] = {}


def test_the_record_of_what_a_socket_was_sent_moves_over_crossed_pushes_and_stays_bounded() -> None:
    from wsgateway.services.notifier import MAX_AHEAD, NotifierService

    service = NotifierService(_Connection())
    service.push_sent(5)  # before the connect frame: covered by it
    assert service.delivered is None
    service.connect_frame_sent({"unread": 0, "category": None, "seq": 10})
    service.push_sent(12)  # 11 not sent yet: two writers' pushes crossed
    assert (service.delivered, service.ahead) == (10, {12})
    service.push_sent(11)
    assert (service.delivered, service.ahead) == (12, set())
    service.push_sent(7)  # a notification saved again: nothing moves
    assert service.delivered == 12
    # Past a gap that never fills, the record of what came after it is bounded, then dropped: the
    # next resync resends from the gap, and the client drops what it has.
    for seq in range(14, 14 + MAX_AHEAD + 1):
        service.push_sent(seq)
    assert service.delivered == 12
    assert service.ahead == set()
    service.connect_frame_sent({"seq": 30, "missed": [{"seq": 13}, {"seq": 20}], "has_more": True})
    assert service.delivered == 20  # the client pages on with sync from there
