"""Each user's notifications are numbered 1, 2, 3, ... (``seq``), in the order they commit.

The number is the client's cursor: a client that has everything up to n asks for what is over n.
So numbers must be dense per user, and a number must never become visible after a greater one:
proven here with concurrent writer processes on a real PostgreSQL.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction

from tests.support.servers import ROOT
from wsgateway.models import Notification, NotificationSequence, number_notifications
from wsgateway.notifications import history, notify, sequence

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def ann() -> object:
    """Not tests/conftest.py's: made with the sync ORM, for the sync tests here."""
    return get_user_model().objects.create_user("ann")


@pytest.fixture
def bob() -> object:
    """Not tests/conftest.py's, as ``ann``."""
    return get_user_model().objects.create_user("bob")


def seqs(user: object) -> list[int]:
    return list(Notification.objects.filter(recipient=user).order_by("id").values_list("seq", flat=True))


def test_notify_numbers_each_users_notifications_from_one(ann: object, bob: object) -> None:
    notify([ann, bob, ann], "first")
    notify(ann, "second")
    assert seqs(ann) == [1, 2, 3]
    assert seqs(bob) == [1]
    assert sequence.latest([ann.pk, bob.pk]) == {ann.pk: 3, bob.pk: 1}  # type: ignore[attr-defined]


def test_create_and_bulk_create_number_too_and_saving_again_keeps_the_number(ann: object) -> None:
    notify(ann, "by notify")
    created = Notification.objects.create(recipient=ann, message="by create")
    Notification.objects.bulk_create([Notification(recipient=ann, message=f"bulk {n}") for n in range(2)])
    assert seqs(ann) == [1, 2, 3, 4]
    created.message = "edited"
    created.save()
    created.refresh_from_db()
    assert created.seq == 2
    assert seqs(ann) == [1, 2, 3, 4]


def test_a_user_with_no_notifications_is_at_zero(ann: object) -> None:
    assert sequence.latest([ann.pk]) == {ann.pk: 0}  # type: ignore[attr-defined]


def test_a_rolled_back_transaction_gives_its_numbers_back(ann: object) -> None:
    notify(ann, "kept")
    with pytest.raises(RuntimeError), transaction.atomic():
        notify([ann, ann], "taken back")
        raise RuntimeError
    notify(ann, "next")
    assert seqs(ann) == [1, 2]
    assert list(Notification.objects.order_by("seq").values_list("message", flat=True)) == ["kept", "next"]


def test_two_rows_of_one_user_cannot_share_a_number(ann: object) -> None:
    notify(ann, "one")
    with pytest.raises(IntegrityError), transaction.atomic():
        Notification.objects.create(recipient=ann, message="same number", seq=1)


def test_numbering_outside_the_inserting_transaction_is_refused(ann: object) -> None:
    with pytest.raises(RuntimeError, match="inside the inserting transaction"):
        number_notifications([Notification(recipient=ann, message="x")], "default")
    assert not NotificationSequence.objects.exists()


def test_history_pages_from_a_cursor_oldest_first(ann: object, bob: object) -> None:
    notify([ann] * 5, "a")
    notify(bob, "b")
    first = history.since(ann, 0, 2)
    assert [n["seq"] for n in first["notifications"]] == [1, 2] and first["has_more"]
    rest = history.since(ann, 2, 10)
    assert [n["seq"] for n in rest["notifications"]] == [3, 4, 5] and not rest["has_more"]
    assert history.since(ann, 5, 10) == {"notifications": [], "has_more": False}


# -- concurrent writers on PostgreSQL ---------------------------------------------------


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_concurrent_writers_never_let_a_cursor_step_over_a_late_commit(postgres_env: dict[str, str]) -> None:
    writers, each = 4, 30

    def start(*args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.support.sequence_race", *args],
            cwd=ROOT,
            env=postgres_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    reader = start("reader", "alice", str(writers * each))
    procs = [start("writer", "alice", str(each), str(seed)) for seed in range(writers)]
    for proc in procs:
        _, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err
    out, err = reader.communicate(timeout=90)
    assert reader.returncode == 0, err
    # Every number once, in order: no row committed late behind the reader's cursor.
    assert json.loads(out) == list(range(1, writers * each + 1))
