"""Notifying many users costs a handful of queries and one channel-layer call, not one per user."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models.signals import post_save
from django.test import override_settings

from wsgateway import notify
from wsgateway.layers import InProcessChannelLayer
from wsgateway.models import Notification

pytestmark = pytest.mark.django_db(transaction=True)

CALLS: list[tuple[str, int]] = []


class CountingLayer(InProcessChannelLayer):
    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        CALLS.append(("group_send", 1))
        await super().group_send(group, message)

    async def group_send_many(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        CALLS.append(("group_send_many", len(items)))
        for group, message in items:
            await super().group_send(group, message)

    def group_send_many_sync(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        # Sync callers (notify() here) hand the batch over without a loop: the same one call.
        CALLS.append(("group_send_many", len(items)))
        super().group_send_many_sync(items)


@pytest.fixture
def counting_layer() -> Any:
    CALLS.clear()
    with override_settings(CHANNEL_LAYERS={"default": {"BACKEND": "tests.test_batching.CountingLayer"}}):
        from channels.layers import channel_layers

        channel_layers.backends.clear()
        yield
        channel_layers.backends.clear()


def make_users(count: int) -> list[Any]:
    return [get_user_model().objects.create(username=f"user{n}") for n in range(count)]


def test_notify_to_many_users_is_one_layer_call_and_constant_queries(
    counting_layer: Any, django_assert_max_num_queries: Any
) -> None:
    users = make_users(120)
    with django_assert_max_num_queries(12):
        notify(users, "Maintenance at noon", category="warning")
    assert CALLS == [("group_send_many", 120)]
    assert Notification.objects.filter(message="Maintenance at noon").count() == 120


def test_a_site_wide_announcement_from_a_queryset_is_chunked_not_per_user(counting_layer: Any) -> None:
    make_users(30)
    notify(get_user_model().objects.all(), "Welcome to the new site")
    assert CALLS == [("group_send_many", 30)]


def test_saves_in_one_transaction_are_pushed_together_after_commit(counting_layer: Any) -> None:
    (user,) = make_users(1)
    with transaction.atomic():
        for n in range(5):
            Notification.objects.create(recipient=user, message=f"n{n}")
        assert CALLS == []
    assert CALLS == [("group_send_many", 5)]


def test_a_rolled_back_batch_is_never_pushed_even_by_the_next_transaction(counting_layer: Any) -> None:
    (user,) = make_users(1)
    with pytest.raises(RuntimeError), transaction.atomic():
        Notification.objects.create(recipient=user, message="rolled back")
        raise RuntimeError
    Notification.objects.create(recipient=user, message="kept")
    assert CALLS == [("group_send_many", 1)]


def test_notify_pushes_what_it_inserted_without_reading_it_back(
    counting_layer: Any, django_assert_num_queries: Any
) -> None:
    (user,) = make_users(1)
    notify(user, "warm up the connection")
    CALLS.clear()
    # BEGIN, the user's next number (wsgateway.notifications.sequence), the INSERT, COMMIT, then the
    # count with a check that the row is still there; no re-read.
    with django_assert_num_queries(5) as queries:
        notify(user, "Your export is ready")
    selects = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT")]
    assert not any("wsgateway_notification.message" in sql.replace('"', "") for sql in selects)
    assert CALLS == [("group_send_many", 1)]


def test_notify_in_a_rolled_back_savepoint_is_not_pushed_but_its_neighbour_is(counting_layer: Any) -> None:
    (user,) = make_users(1)
    with transaction.atomic():
        notify(user, "kept")
        with pytest.raises(RuntimeError), transaction.atomic():
            notify(user, "rolled back")
            raise RuntimeError
    assert CALLS == [("group_send_many", 1)]
    assert list(Notification.objects.values_list("message", flat=True)) == ["kept"]


def test_notify_deleted_before_commit_is_not_pushed(counting_layer: Any) -> None:
    (user,) = make_users(2)[:1]
    with transaction.atomic():
        (gone,) = notify(user, "gone before commit")
        gone.delete()
        notify(user, "kept")
    assert CALLS == [("group_send_many", 1)]


def test_a_notification_from_notify_saved_again_later_is_pushed_again(counting_layer: Any) -> None:
    (user,) = make_users(1)
    (notification,) = notify(user, "first")
    notification.message = "edited"
    notification.save()
    assert CALLS == [("group_send_many", 1), ("group_send_many", 1)]


def test_notify_sends_each_row_one_post_save_as_a_save_would_and_still_pushes_once(
    counting_layer: Any,
) -> None:
    users = make_users(3)
    seen: list[tuple[int, bool, bool]] = []

    def site_receiver(sender: Any, instance: Notification, created: bool, raw: bool, **kwargs: Any) -> None:
        seen.append((instance.recipient_id, created, raw))

    post_save.connect(site_receiver, sender=Notification)
    try:
        notify(users, "Deploy at 18:00")
    finally:
        post_save.disconnect(site_receiver, sender=Notification)
    assert seen == [(user.pk, True, False) for user in users]
    # The rows' own post_save did not queue a second push: notify() pushes them, from memory, once.
    assert CALLS == [("group_send_many", 3)]
