"""The digest: one e-mail per due user of what stayed unread since the last one, at most once a period."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core import mail
from django.core.management import call_command
from django.utils import timezone

from tests.support.mail import use_mail_backend
from wsgateway import metrics
from wsgateway.models import Digest, Notification, NotificationPreferences
from wsgateway.notifications import digests, notify

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def site(settings: Any) -> None:
    settings.WSGATEWAY = {"EMAIL_SITE_URL": "https://example.com"}


@pytest.fixture
def make_user(django_user_model: Any) -> Any:
    def make(name: str, digest: Digest = Digest.DAILY, email: str | None = None) -> Any:
        address = f"{name}@example.com" if email is None else email
        user = django_user_model.objects.create_user(name, address, "x")
        NotificationPreferences.objects.create(user_id=user.pk, digest=digest)
        return user

    return make


def test_a_due_user_gets_one_email_of_what_stayed_unread_and_a_second_run_sends_nothing(
    make_user: Any,
) -> None:
    alice = make_user("alice")
    rows = (
        notify(alice, "first") + notify(alice, "second") + notify(alice, "read") + notify(alice, "archived")
    )
    Notification.objects.filter(message="read").update(is_read=True)
    Notification.objects.filter(message="archived").update(archived_at=timezone.now())
    sent = metrics.value(metrics.DIGESTS_SENT)
    assert digests.send_due() == 1
    [email] = mail.outbox
    assert email.to == ["alice@example.com"] and email.subject == "2 unread notifications"
    assert "- second\n- first" in email.body and "read" not in email.body.replace("unread", "")
    assert "https://example.com/wsgateway/unsubscribe/" in email.extra_headers["List-Unsubscribe"]
    assert metrics.value(metrics.DIGESTS_SENT) == sent + 1
    assert digests.send_due() == 0 and len(mail.outbox) == 1
    assert len(rows) == 4


def test_the_next_digest_tells_only_of_what_came_since(make_user: Any) -> None:
    alice = make_user("alice")
    notify(alice, "old")
    assert digests.send_due() == 1
    notify(alice, "new")
    tomorrow = timezone.now() + timedelta(days=1)
    assert digests.send_due(tomorrow - timedelta(hours=2)) == 0  # not a period yet (less the slack)
    assert digests.send_due(tomorrow) == 1
    assert "- new" in mail.outbox[1].body and "old" not in mail.outbox[1].body


def test_weekly_users_are_due_a_week_after_their_last_digest(make_user: Any) -> None:
    weekly = make_user("wendy", Digest.WEEKLY)
    never = make_user("olaf", Digest.OFF)
    notify([weekly, never], "news")
    assert digests.send_due() == 1 and mail.outbox[0].to == [weekly.email]
    notify(weekly, "later")
    assert digests.send_due(timezone.now() + timedelta(days=3)) == 0
    assert digests.send_due(timezone.now() + timedelta(days=7)) == 1


def test_a_digest_lists_at_most_max_items_and_counts_the_rest(make_user: Any) -> None:
    alice = make_user("alice")
    for n in range(digests.MAX_ITEMS + 5):
        notify(alice, f"item {n}")
    assert digests.send_due() == 1
    body = mail.outbox[0].body
    assert body.count("- item") == digests.MAX_ITEMS and "and 5 more" in body
    assert f"item {digests.MAX_ITEMS + 4}" in body and "item 4\n" not in body  # the newest listed
    assert mail.outbox[0].subject == f"{digests.MAX_ITEMS + 5} unread notifications"


def test_nothing_unread_or_no_address_sends_nothing_until_the_next_period(make_user: Any) -> None:
    make_user("alice")
    nobody = make_user("nobody", email="")
    notify(nobody, "hello")
    assert digests.send_due() == 0 and mail.outbox == []
    assert NotificationPreferences.objects.filter(digest_sent_at__isnull=True).count() == 0


def test_a_run_that_lost_the_claim_sends_nothing(make_user: Any) -> None:
    alice = make_user("alice")
    notify(alice, "hi")
    prefs = NotificationPreferences.objects.get(user_id=alice.pk)  # read by this run
    NotificationPreferences.objects.filter(pk=prefs.pk).update(digest_sent_at=timezone.now())  # claimed
    assert digests.send_one(prefs, timezone.now()) is False and mail.outbox == []


def test_the_command_and_the_task_send_the_due_digests(make_user: Any) -> None:
    notify(make_user("alice"), "hi")
    out = StringIO()
    call_command("wsgateway_digest", stdout=out)
    assert out.getvalue() == "Sent 1 digest(s).\n" and len(mail.outbox) == 1
    notify(make_user("bob"), "hi")
    assert digests.send_digests.call() == 1 and len(mail.outbox) == 2


def test_a_failed_send_is_logged_and_the_user_stays_due(make_user: Any, settings: Any) -> None:
    notify(make_user("alice"), "hi")
    use_mail_backend(settings, "tests.test_fallback.RefusingBackend")
    failed = metrics.value(metrics.DIGESTS_FAILED)
    assert digests.send_due() == 0
    assert metrics.value(metrics.DIGESTS_FAILED) == failed + 1
    assert NotificationPreferences.objects.get().digest_sent_at is None
    use_mail_backend(settings, "django.core.mail.backends.locmem.EmailBackend")
    assert digests.send_due() == 1
