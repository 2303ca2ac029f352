"""The e-mail of an unread notification: scheduled by notify() on the Tasks backend, re-checked and sent
once by its task, and the checks of what it needs (E017, E018, W009, W010).

The tasks are enqueued on Django's DummyBackend (tests/settings.py), which keeps them; a test runs one
by calling its function, as a worker would. tests/test_live_email.py runs them on real workers.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import django
import pytest
from asgiref.sync import async_to_sync
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend
from django.test import override_settings
from django.utils import timezone

from tests import settings as tests_settings
from tests.support.mail import use_mail_backend
from wsgateway import checks, connections, metrics, tasks
from wsgateway.groups import channel_layer
from wsgateway.models import Notification
from wsgateway.notifications import mailing, notify, preferences
from wsgateway.notifications.mailing import Skip

pytestmark = pytest.mark.django_db

KINDS = {
    "comment": {"label": "Comments", "email_after": 600},
    "mention": {"label": "Mentions", "email_after": 600},
    "security": {"label": "Security alerts", "required": True, "email_if_offline": True},
    "both": {"label": "Both", "email_after": 60, "email_if_offline": True},
    "quiet": {"label": "Quiet", "channels": ["inapp"]},
}
SITE = {"NOTIFICATION_KINDS": KINDS, "EMAIL_SITE_URL": "https://example.com"}


@pytest.fixture(autouse=True)
def site(settings: Any) -> None:
    settings.WSGATEWAY = SITE


@pytest.fixture
def enqueued() -> Iterator[list[Any]]:
    """The results the DummyBackend kept, emptied before and after the test."""
    backend: Any = tasks.backend()
    backend.clear()
    yield backend.results
    backend.clear()


@pytest.fixture
def make_user(django_user_model: Any) -> Callable[..., Any]:
    def make(name: str, email: str | None = None) -> Any:
        address = f"{name}@example.com" if email is None else email
        return django_user_model.objects.create_user(username=name, email=address, password="x")

    return make


def notify_committed(capture: Any, *args: Any, **kwargs: Any) -> list[Notification]:
    with capture(execute=True):
        return notify(*args, **kwargs)


# -- scheduling -------------------------------------------------------------------------------------


def test_an_email_after_kind_schedules_one_task_for_the_chunk_at_its_due_time(
    make_user: Any, enqueued: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    before = timezone.now()
    rows = notify_committed(
        django_capture_on_commit_callbacks, [alice, bob], "Alice commented", kind="comment"
    )
    assert len(enqueued) == 1
    result = enqueued[0]
    assert result.task.func is mailing.email_unread.func
    assert sorted(result.args[0]) == sorted(row.pk for row in rows) and result.args[1] is False
    due = Notification.objects.get(pk=rows[0].pk).email_due
    assert due is not None and before + timedelta(seconds=600) <= due <= timezone.now() + timedelta(
        seconds=600
    )
    assert result.task.run_after == due


def test_nothing_is_scheduled_before_the_commit_nor_for_a_kind_without_email(
    make_user: Any, enqueued: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    alice = make_user("alice")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        notify(alice, "Alice commented", kind="comment")
    assert enqueued == [] and len(callbacks) >= 1
    notify_committed(django_capture_on_commit_callbacks, alice, "Quiet", kind="quiet")
    notify_committed(django_capture_on_commit_callbacks, alice, "No kind")
    assert enqueued == []
    assert Notification.objects.filter(message__in=["Quiet", "No kind"], email_due__isnull=False).count() == 0


def test_a_user_with_the_kinds_email_off_has_no_due_time(
    make_user: Any, enqueued: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    preferences.set_choice(bob, "comment", "email", False)
    rows = notify_committed(django_capture_on_commit_callbacks, [alice, bob], "Hi", kind="comment")
    assert len(rows) == 2
    assert enqueued[0].args[0] == [row.pk for row in rows if row.recipient_id == alice.pk]
    assert Notification.objects.get(recipient=bob).email_due is None


def test_a_user_with_inapp_off_is_emailed_at_once_by_a_task_carrying_the_message(
    make_user: Any, enqueued: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    preferences.set_choice(bob, "comment", "inapp", False)
    rows = notify_committed(
        django_capture_on_commit_callbacks, [alice, bob], "Alice commented", kind="comment"
    )
    assert [row.recipient_id for row in rows] == [alice.pk]
    without_row = [r for r in enqueued if r.task.func is mailing.email_without_row.func]
    assert len(without_row) == 1
    assert without_row[0].args == ["comment", "Alice commented", [str(bob.pk)]]
    assert without_row[0].task.run_after is None
    assert mailing.email_users(*without_row[0].args) == {"sent": 1}
    assert mail.outbox[0].to == ["bob@example.com"] and mail.outbox[0].subject == "Alice commented"


def test_the_task_without_rows_rechecks_each_user(make_user: Any) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    preferences.set_choice(bob, "comment", "email", False)
    counts = mailing.email_users("comment", "Hi", [str(alice.pk), str(bob.pk), "999999"])
    assert counts == {"sent": 1, "turned_off": 1, "gone": 1}
    assert [m.to for m in mail.outbox] == [["alice@example.com"]]
    assert mailing.email_users("gone", "Hi", [str(alice.pk)]) == {"kind_gone": 1}


def test_email_if_offline_is_due_at_once_and_with_email_after_too_a_later_task(
    make_user: Any, enqueued: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    alice = make_user("alice")
    notify_committed(django_capture_on_commit_callbacks, alice, "Sign-in", kind="security")
    assert [(r.args[1], r.task.run_after) for r in enqueued] == [(True, None)]
    enqueued.clear()
    notify_committed(django_capture_on_commit_callbacks, alice, "Both", kind="both")
    assert [r.args[1] for r in enqueued] == [True, False]
    assert enqueued[0].task.run_after is None and enqueued[1].task.run_after is not None


def test_notify_overrides_the_kinds_delay(
    make_user: Any, enqueued: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    alice = make_user("alice")
    notify_committed(django_capture_on_commit_callbacks, alice, "Soon", kind="comment", email_after=5)
    row = Notification.objects.get(message="Soon")
    assert row.email_due is not None and row.email_due - row.created < timedelta(seconds=6)
    enqueued.clear()
    notify_committed(django_capture_on_commit_callbacks, alice, "Never", kind="comment", email_after=None)
    assert enqueued == [] and Notification.objects.get(message="Never").email_due is None


def test_a_backend_that_cannot_defer_schedules_nothing_and_says_so(
    make_user: Any, django_capture_on_commit_callbacks: Any, caplog: pytest.LogCaptureFixture
) -> None:
    alice = make_user("alice")
    # Django's own on 6.0 and later, the backport's before: the one the tasks were defined with.
    immediate = {
        "default": {"BACKEND": f"{tests_settings._TASKS_PACKAGE}.backends.immediate.ImmediateBackend"}
    }
    before = metrics.value(metrics.EMAIL_NOT_SCHEDULED)
    with override_settings(TASKS=immediate), caplog.at_level(logging.WARNING, "wsgateway"):
        notify_committed(django_capture_on_commit_callbacks, alice, "Hi", kind="comment")
        assert "wsgateway.W009" in [m.id for m in checks.check_email_fallback()]
    assert metrics.value(metrics.EMAIL_NOT_SCHEDULED) == before + 1
    assert "cannot defer" in caplog.text and mail.outbox == []


# -- the task ---------------------------------------------------------------------------------------


def scheduled(make_user: Any, capture: Any, name: str = "alice", **kwargs: Any) -> Notification:
    user = make_user(name)
    return notify_committed(capture, user, f"{name}: Bob commented on your draft", kind="comment", **kwargs)[
        0
    ]


def test_the_task_sends_one_templated_email_with_the_one_click_unsubscribe(
    make_user: Any, enqueued: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    row = scheduled(
        make_user, django_capture_on_commit_callbacks, actions=[{"label": "Open", "url": "/d/1/"}]
    )
    sent = metrics.value(metrics.EMAIL_SENT)
    assert mailing.email_unread_rows([row.pk], if_offline=False) == {"sent": 1}
    assert metrics.value(metrics.EMAIL_SENT) == sent + 1
    [email] = mail.outbox
    assert email.to == ["alice@example.com"]
    assert email.subject == "alice: Bob commented on your draft"
    assert "alice: Bob commented on your draft" in email.body and "https://example.com/d/1/" in email.body
    [(html, mimetype)] = email.alternatives  # type: ignore[attr-defined]
    assert mimetype == "text/html" and 'href="https://example.com/d/1/"' in html
    unsubscribe = email.extra_headers["List-Unsubscribe"]
    assert unsubscribe.startswith("<https://example.com/wsgateway/unsubscribe/") and unsubscribe.endswith(
        "/>"
    )
    assert email.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert Notification.objects.get(pk=row.pk).emailed_at is not None


def test_a_second_run_or_a_second_worker_sends_nothing(
    make_user: Any, enqueued: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    row = scheduled(make_user, django_capture_on_commit_callbacks)
    assert mailing.email_unread_rows([row.pk], if_offline=False) == {"sent": 1}
    skipped = metrics.value(f"{metrics.EMAIL_SKIPPED}.already_sent")
    assert mailing.email_unread.call([row.pk], False) == {"already_sent": 1}
    assert len(mail.outbox) == 1 and metrics.value(f"{metrics.EMAIL_SKIPPED}.already_sent") == skipped + 1


def test_a_row_claimed_between_the_read_and_the_claim_is_not_sent_twice(
    make_user: Any, enqueued: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    from collections import Counter

    row = scheduled(make_user, django_capture_on_commit_callbacks)
    stale = Notification.objects.get(pk=row.pk)  # read by this worker before another claims it
    Notification.objects.filter(pk=row.pk).update(emailed_at=timezone.now())
    counts: Counter[str] = Counter()
    mailing._send_claimed(stale, mailing._kind("comment"), counts)  # type: ignore[arg-type]
    assert counts == {"already_sent": 1} and mail.outbox == []


NOW = timezone.now


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"is_read": True}, Skip.READ),
        ({"seen_at": NOW}, Skip.SEEN),
        ({"archived_at": NOW}, Skip.ARCHIVED),
        ({"deleted_at": NOW}, Skip.DELETED),
        ({"expires_at": NOW}, Skip.EXPIRED),
        ({"snoozed_until": lambda: timezone.now() + timedelta(hours=1)}, Skip.SNOOZED),
    ],
)
def test_a_row_no_longer_unread_and_in_view_is_skipped(
    make_user: Any,
    enqueued: list[Any],
    django_capture_on_commit_callbacks: Any,
    caplog: pytest.LogCaptureFixture,
    change: dict[str, Any],
    reason: Skip,
) -> None:
    row = scheduled(make_user, django_capture_on_commit_callbacks)
    Notification.objects.filter(pk=row.pk).update(**{k: v() if callable(v) else v for k, v in change.items()})
    before = metrics.value(f"{metrics.EMAIL_SKIPPED}.{reason}")
    with caplog.at_level(logging.INFO, "wsgateway"):
        assert mailing.email_unread_rows([row.pk], if_offline=False) == {reason.value: 1}
    assert mail.outbox == [] and Notification.objects.get(pk=row.pk).emailed_at is None
    assert metrics.value(f"{metrics.EMAIL_SKIPPED}.{reason}") == before + 1
    assert f"notification {row.pk} not sent: {reason.value}" in caplog.text


def test_preferences_changed_after_scheduling_are_read_when_the_task_runs(
    make_user: Any, enqueued: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    row = scheduled(make_user, django_capture_on_commit_callbacks)
    preferences.set_choice(row.recipient, "comment", "email", False)
    assert mailing.email_unread_rows([row.pk], if_offline=False) == {"turned_off": 1}
    assert mail.outbox == []


def test_a_user_without_an_address_a_kind_no_longer_declared_and_a_pruned_row_are_skipped(
    make_user: Any, enqueued: list[Any], django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    nobody = make_user("nobody", email="")
    row = notify_committed(django_capture_on_commit_callbacks, nobody, "Hi", kind="comment")[0]
    assert mailing.email_unread_rows([row.pk], if_offline=False) == {"no_address": 1}
    other = scheduled(make_user, django_capture_on_commit_callbacks, "carol")
    settings.WSGATEWAY = {**SITE, "NOTIFICATION_KINDS": {"mention": KINDS["mention"]}}
    assert mailing.email_unread_rows([other.pk, 10**9], if_offline=False) == {"kind_gone": 1, "gone": 1}
    assert mail.outbox == []


def test_email_if_offline_skips_a_user_with_an_open_socket(
    make_user: Any, enqueued: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    alice = make_user("alice")
    row = notify_committed(django_capture_on_commit_callbacks, alice, "Sign-in", kind="security")[0]
    layer = channel_layer()
    assert async_to_sync(connections.register)(layer, str(alice.pk), "test.socket", 10)
    try:
        assert mailing.email_unread_rows([row.pk], if_offline=True) == {"online": 1}
    finally:
        async_to_sync(connections.unregister)(layer, str(alice.pk), "test.socket")
    assert mailing.email_unread_rows([row.pk], if_offline=True) == {"sent": 1}
    assert len(mail.outbox) == 1


class RefusingBackend(BaseEmailBackend):
    """An SMTP server that refuses everything."""

    def send_messages(self, email_messages: Any) -> int:
        raise ConnectionRefusedError(111, "Connection refused")


def test_a_failed_send_rolls_the_claim_back_and_logs_no_traceback(
    make_user: Any,
    enqueued: list[Any],
    django_capture_on_commit_callbacks: Any,
    settings: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    rows = [scheduled(make_user, django_capture_on_commit_callbacks, name) for name in ("alice", "bob")]
    failed = metrics.value(metrics.EMAIL_FAILED)
    use_mail_backend(settings, f"{__name__}.RefusingBackend")
    with caplog.at_level(logging.INFO, "wsgateway"):
        assert mailing.email_unread_rows([r.pk for r in rows], if_offline=False) == {"failed": 2}
    assert metrics.value(metrics.EMAIL_FAILED) == failed + 2
    assert Notification.objects.filter(pk__in=[r.pk for r in rows], emailed_at__isnull=False).count() == 0
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2 and all(r.exc_info is None for r in errors)
    assert "Connection refused" in errors[0].getMessage()
    use_mail_backend(settings, "django.core.mail.backends.locmem.EmailBackend")
    assert mailing.email_unread_rows([r.pk for r in rows], if_offline=False) == {"sent": 2}


class FlakyBackend(BaseEmailBackend):
    """A mail server whose first connection breaks on the first e-mail; it records its connections."""

    opened: list[str] = []

    def open(self) -> bool:
        if getattr(self, "is_open", False):
            return False
        self.is_open = True
        FlakyBackend.opened.append("open")
        return True

    def close(self) -> None:
        self.is_open = False

    def send_messages(self, email_messages: Any) -> int:
        if FlakyBackend.opened == ["open"] and not mail.outbox:
            raise ConnectionResetError(104, "Connection reset by peer")
        mail.outbox.extend(email_messages)
        return len(email_messages)


def test_a_task_sends_on_one_connection_and_opens_a_new_one_after_a_failure(
    make_user: Any, enqueued: list[Any], django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    rows = [scheduled(make_user, django_capture_on_commit_callbacks, name) for name in ("a", "b", "c", "d")]
    use_mail_backend(settings, f"{__name__}.FlakyBackend")
    FlakyBackend.opened = []
    assert mailing.email_unread_rows([r.pk for r in rows], if_offline=False) == {"failed": 1, "sent": 3}
    assert FlakyBackend.opened == ["open", "open"]  # the first, broken; one more for the three others
    assert [m.to for m in mail.outbox] == [["b@example.com"], ["c@example.com"], ["d@example.com"]]


def test_a_failed_send_is_tried_again_later_by_a_new_task_then_given_up(
    make_user: Any,
    enqueued: list[Any],
    django_capture_on_commit_callbacks: Any,
    settings: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    row = scheduled(make_user, django_capture_on_commit_callbacks)
    enqueued.clear()
    use_mail_backend(settings, f"{__name__}.RefusingBackend")
    for attempt, wait in enumerate(mailing.RETRY_AFTER):
        before = timezone.now()
        assert mailing.email_unread.call([row.pk], False, attempt) == {"failed": 1}
        [retry] = enqueued
        assert retry.args == [[row.pk], False, attempt + 1]
        assert (
            before + timedelta(seconds=wait)
            <= retry.task.run_after
            <= timezone.now() + timedelta(seconds=wait)
        )
        enqueued.clear()
    given_up = metrics.value(metrics.EMAIL_GIVEN_UP)
    with caplog.at_level(logging.ERROR, "wsgateway"):
        assert mailing.email_unread.call([row.pk], False, len(mailing.RETRY_AFTER)) == {"failed": 1}
    assert enqueued == [] and metrics.value(metrics.EMAIL_GIVEN_UP) == given_up + 1
    assert "given up after 4 tries" in caplog.text
    # The SMTP server back before the last try: the retry sends it.
    use_mail_backend(settings, "django.core.mail.backends.locmem.EmailBackend")
    assert mailing.email_unread.call([row.pk], False, 2) == {"sent": 1} and enqueued == []


def test_a_task_is_bounded_in_ids_and_reads_rows_in_slices(
    make_user: Any,
    enqueued: list[Any],
    django_capture_on_commit_callbacks: Any,
    django_assert_max_num_queries: Any,
) -> None:
    users = [make_user(f"u{n}") for n in range(5)]
    rows = notify_committed(django_capture_on_commit_callbacks, users, "Hi", kind="comment")
    ids = [row.pk for row in rows]
    for row in rows:
        Notification.objects.filter(pk=row.pk).update(is_read=True)
    # Two queries per slice (rows with their users, the users' choices), whatever the number of rows.
    with django_assert_max_num_queries(2):
        assert mailing.email_unread_rows(ids, if_offline=False) == {"read": 5}
    assert mailing.email_unread_rows(ids * 300, if_offline=False) == {"read": mailing.MAX_IDS_PER_TASK}


# -- checks -----------------------------------------------------------------------------------------


def ids(found: list[Any]) -> list[str]:
    return [message.id for message in found]


def test_no_check_fires_for_a_site_whose_kinds_do_not_email(settings: Any) -> None:
    settings.WSGATEWAY = {"NOTIFICATION_KINDS": {"quiet": KINDS["quiet"]}}
    assert checks.check_email_fallback() == []
    settings.WSGATEWAY = {}
    assert checks.check_email_fallback() == []


@pytest.mark.parametrize("site_url", ["", "example.com", "ftp://example.com", "https://example.com/app/", 7])
def test_e017_a_kind_emails_and_the_site_url_is_not_an_origin(settings: Any, site_url: Any) -> None:
    comment = {"comment": KINDS["comment"]}
    settings.WSGATEWAY = {**SITE, "NOTIFICATION_KINDS": comment, "EMAIL_SITE_URL": site_url}
    found = checks.check_email_fallback()
    assert ids(found) == ["wsgateway.E017"]
    assert "'comment'" in found[0].msg


def test_w011_an_http_site_url_while_debug_is_off(settings: Any) -> None:
    comment = {"comment": KINDS["comment"]}
    settings.WSGATEWAY = {**SITE, "NOTIFICATION_KINDS": comment, "EMAIL_SITE_URL": "http://example.com"}
    settings.DEBUG = False
    assert ids(checks.check_email_fallback()) == ["wsgateway.W011"]
    settings.DEBUG = True
    assert checks.check_email_fallback() == []
    settings.DEBUG = False
    settings.WSGATEWAY = {**SITE, "NOTIFICATION_KINDS": comment}
    assert checks.check_email_fallback() == []


def test_e018_the_tasks_backend_alias_is_missing(settings: Any) -> None:
    settings.WSGATEWAY = {**SITE, "EMAIL_TASK_BACKEND": "mail"}
    assert ids(checks.check_email_fallback()) == ["wsgateway.E018"]


REDIS = "wsgateway.layers.redis.RedisChannelLayer"


@pytest.mark.parametrize(
    ("layer", "expected"),
    [
        ("wsgateway.layers.InProcessChannelLayer", ["wsgateway.W010"]),
        ("channels_redis.core.RedisChannelLayer", ["wsgateway.W010"]),
        (REDIS, []),
    ],
)
def test_w010_email_if_offline_on_a_layer_that_counts_one_process(
    settings: Any, layer: str, expected: list[str]
) -> None:
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": layer, "CONFIG": {"hosts": ["redis://127.0.0.1:1"]}}}
    found = checks.check_email_fallback()
    assert ids(found) == expected
    if found:
        assert "'security', 'both'" in found[0].msg
    settings.WSGATEWAY = {**SITE, "NOTIFICATION_KINDS": {"comment": KINDS["comment"]}}
    assert checks.check_email_fallback() == []


#: A site whose TASKS names its backend otherwise than "default" ({tasks} and {wsgateway} filled in).
OTHER_ALIAS = """
import logging
from importlib.util import find_spec
import django
from django.conf import settings
package = "django.tasks" if find_spec("django.tasks") else "django_tasks"
dummy = {{"BACKEND": package + ".backends.dummy.DummyBackend"}}
settings.configure(
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "wsgateway"],
    DATABASES={{"default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}}},
    CHANNEL_LAYERS={{"default": {{"BACKEND": "wsgateway.layers.redis.RedisChannelLayer"}}}},
    TASKS={{{tasks!r}: dummy}},
    WSGATEWAY={{"NOTIFICATION_KINDS": {{"comment": {{"label": "C", "email_after": 60}}}},
               "EMAIL_SITE_URL": "https://example.com", **{wsgateway!r}}},
)
django.setup()
logging.basicConfig(level=logging.ERROR, format="%(message)s")
from datetime import timedelta
from django.utils import timezone
from wsgateway import checks, tasks
from wsgateway.notifications import fallback
print([message.id for message in checks.check_email_fallback()])
fallback._enqueue_rows([1], timezone.now() + timedelta(minutes=1), False)
print([(r.backend, r.args) for r in tasks.task_backends[{tasks!r}].results])
"""


@pytest.mark.parametrize(
    ("alias", "wsgateway", "expected"),
    [
        ("mail", {"EMAIL_TASK_BACKEND": "mail"}, ["[]", "[('mail', [[1], False])]"]),
        ("mail", {}, ["['wsgateway.E018']", "[]"]),
    ],
)
def test_a_tasks_setting_without_a_default_backend(
    alias: str, wsgateway: dict[str, str], expected: list[str]
) -> None:
    script = OTHER_ALIAS.format(tasks=alias, wsgateway=wsgateway)
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == expected
    if expected[1] == "[]":  # not defined for the "default" it names: logged, nothing raised
        assert "could not be scheduled" in result.stderr or "cannot be scheduled" in result.stderr
        assert "Traceback" not in result.stderr


#: A site on Django 5.2 without the backport: wsgateway loads, notify() works, and nothing is e-mailed.
WITHOUT_FRAMEWORK = """
import logging, sys
sys.modules["django_tasks"] = None  # not installed
import django
from django.conf import settings
settings.configure(
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "wsgateway"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    CHANNEL_LAYERS={"default": {"BACKEND": "wsgateway.layers.redis.RedisChannelLayer"}},
    WSGATEWAY={"NOTIFICATION_KINDS": {"comment": {"label": "C", "email_after": 60}},
               "EMAIL_SITE_URL": "https://example.com"},
)
django.setup()
logging.basicConfig(level=logging.ERROR, format="%(message)s")
from django.utils import timezone
from wsgateway import checks
from wsgateway.notifications import fallback
print([message.id for message in checks.check_email_fallback()])
fallback._enqueue_rows([1], timezone.now(), False)
print("stored, not scheduled")
"""


@pytest.mark.skipif(
    django.VERSION >= (6, 0),
    reason="Django 6.0 has the framework itself (django.tasks): no site is without it",
)
def test_without_the_tasks_framework_wsgateway_loads_and_e018_says_what_to_install() -> None:
    root = Path(__file__).resolve().parents[1]
    command = [sys.executable, "-c", WITHOUT_FRAMEWORK]
    result = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["['wsgateway.E018']", "stored, not scheduled"]
    assert "pip install 'wsgateway[tasks]'" in result.stderr and "Traceback" not in result.stderr
