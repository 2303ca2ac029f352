"""When stored notifications are pushed: after their transaction commits, each exactly once."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction

from wsgateway.models import Notification
from wsgateway.notifications import notify, pushing

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def pushed(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """(id, seq) of each notification handed to the channel layer, in order."""
    sent: list[tuple[int, int]] = []

    def record(pushes: Any) -> None:
        for push in pushes:
            sent.append((push.payload["last"]["id"], push.seq))

    monkeypatch.setattr(pushing, "push_many", record)
    return sent


@pytest.fixture
def ann() -> Any:
    """Not tests/conftest.py's: made with the sync ORM, for the sync tests here."""
    return get_user_model().objects.create_user("ann")


def test_each_save_of_one_transaction_is_pushed_once_after_the_commit(ann: Any, pushed: list[Any]) -> None:
    with transaction.atomic():
        first = Notification.objects.create(recipient=ann, message="one")
        second = Notification.objects.create(recipient=ann, message="two")
        first.save()  # saved again in the same transaction: still one push of it
        assert pushed == []
    assert pushed == [(first.pk, 1), (second.pk, 2)]


def test_a_rolled_back_save_is_never_pushed_even_when_its_id_is_reused(ann: Any, pushed: list[Any]) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        lost = Notification.objects.create(recipient=ann, message="rolled back")
        raise RuntimeError
    # SQLite gives the next row the same id; notify() pushes it itself, at its own commit.
    (kept,) = notify(ann, "kept")
    assert kept.pk == lost.pk
    other = Notification.objects.create(recipient=ann, message="a later save")
    assert pushed == [(kept.pk, 1), (other.pk, 2)]


def test_a_save_in_a_rolled_back_savepoint_is_not_pushed(ann: Any, pushed: list[Any]) -> None:
    with transaction.atomic():
        kept = Notification.objects.create(recipient=ann, message="kept")
        with pytest.raises(RuntimeError), transaction.atomic():
            Notification.objects.create(recipient=ann, message="rolled back")
            raise RuntimeError
    assert pushed == [(kept.pk, 1)]


def test_a_save_in_autocommit_is_pushed_at_once(ann: Any, pushed: list[Any]) -> None:
    notification = Notification.objects.create(recipient=ann, message="now")
    assert pushed == [(notification.pk, 1)]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), object()], ids=["nan", "infinity", "object"])
def test_notify_refuses_data_the_protocol_cannot_write_and_stores_nothing(
    ann: Any, pushed: list[Any], value: Any
) -> None:
    with pytest.raises(ValueError, match="JSON"):
        notify(ann, "bad data", data={"value": value})
    assert not Notification.objects.exists()
    assert pushed == []


def test_a_push_the_layer_refuses_is_logged_and_counted_and_the_row_stays(
    ann: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from wsgateway import metrics

    def layer_down(pushes: Any) -> None:
        list(pushes)
        raise ConnectionError("Redis is down")

    monkeypatch.setattr(pushing, "push_many", layer_down)
    before = metrics.value(metrics.PUSH_FAILED)
    notify([ann, ann], "stored anyway")
    assert metrics.value(metrics.PUSH_FAILED) - before == 2
    assert "2 notification(s) stored but not pushed: Redis is down" in caplog.text
    assert Notification.objects.count() == 2
