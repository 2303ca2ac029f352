"""The e-mail of a notification that stayed unread: the task that re-checks each row and sends it once.

Scheduled by :func:`wsgateway.notifications.fallback.schedule`, run by any Tasks backend's worker when
due (or later: a worker that was down runs what is due when it comes back, and the re-check skips what
was read meanwhile). For each row, in this order, a reason not to send (:class:`Skip`), else the e-mail.

"Seen" counts as read here: the inbox marks seen what it showed the user, and the e-mail is for the
user who did not look. A snoozed notification is skipped too: the user chose to be reminded later,
and is, when it comes back. At most once: the row is claimed by a conditional UPDATE (``emailed_at`` from
NULL to now) in the transaction that sends; a failed send rolls the claim back (logged and counted),
and a second worker, or a retry, finds the row claimed and sends nothing. The one window left: the
SMTP server accepted the e-mail and the commit then failed; the e-mail is then sent again by a retry,
which is the better of the two losses. A failed send is tried again by a new task, later
(:data:`RETRY_AFTER`), then given up (logged, and counted as ``email.given_up``).
"""

from __future__ import annotations

import enum
import logging
import smtplib
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import suppress
from datetime import timedelta
from itertools import islice
from typing import Any

from django.contrib.auth import get_user_model
from django.core.mail.backends.base import BaseEmailBackend
from django.db import transaction
from django.utils import timezone

from .. import metrics, sockets, tasks
from ..models import Notification
from ..tasks import define
from . import emails, kinds, preferences
from .kinds import EMAIL, Kind

logger = logging.getLogger("wsgateway")

#: Most notification ids one task carries: one notify() chunk (sending.BATCH_SIZE), never more.
MAX_IDS_PER_TASK = 1000
#: Rows (or users) read per query while a task works through its ids.
ROWS_PER_QUERY = 100
#: Seconds after which the rows whose send failed are tried again, one new task per try: a minute, five,
#: twenty-five (an SMTP server restarted, a network outage); after the last, the e-mail is given up.
RETRY_AFTER = (60, 300, 1500)


class Skip(enum.StrEnum):
    """Why an e-mail was not sent; each is logged, and counted as ``email.skipped.<value>``."""

    GONE = "gone"  # the row was pruned, or the user deleted
    SENT = "already_sent"  # claimed by another worker or an earlier run
    READ = "read"
    SEEN = "seen"
    ARCHIVED = "archived"
    DELETED = "deleted"
    EXPIRED = "expired"
    SNOOZED = "snoozed"
    KIND_GONE = "kind_gone"  # the site no longer declares its kind, or its e-mail
    TURNED_OFF = "turned_off"  # the user's preferences now say no e-mail for the kind
    NO_ADDRESS = "no_address"  # no e-mail address, or an inactive user
    ONLINE = "online"  # "e-mail if offline", and the user has a socket open


def _slices(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _skip(reason: Skip, what: str, counts: Counter[str]) -> None:
    logger.info("wsgateway: e-mail of %s not sent: %s", what, reason.value)
    metrics.increment(f"{metrics.EMAIL_SKIPPED}.{reason.value}")
    counts[reason.value] += 1


def _kind(name: str) -> Kind | None:
    try:
        kind = kinds.get(name)
    except ValueError:
        return None
    return kind if kind.allows(EMAIL) else None


def _row_state(row: Notification, now: Any) -> Skip | None:
    """What of the row's own state rules the e-mail out."""
    if row.emailed_at is not None:
        return Skip.SENT
    if row.is_read:
        return Skip.READ
    if row.deleted_at is not None:
        return Skip.DELETED
    if row.archived_at is not None:
        return Skip.ARCHIVED
    if row.expires_at is not None and row.expires_at <= now:
        return Skip.EXPIRED
    if row.snoozed_until is not None and row.snoozed_until > now:
        return Skip.SNOOZED
    if row.seen_at is not None:
        return Skip.SEEN
    return None


def _user_state(
    user: Any, kind: Kind | None, choices: dict[str, Any] | None, if_offline: bool
) -> Skip | None:
    """What of the user (now) rules the e-mail out: preferences, address, open sockets."""
    if kind is None:
        return Skip.KIND_GONE
    if not preferences.effective(kind, EMAIL, choices):
        return Skip.TURNED_OFF
    if not emails.address(user) or not getattr(user, "is_active", True):
        return Skip.NO_ADDRESS
    if if_offline and sockets.user_sockets(user):
        return Skip.ONLINE
    return None


def _send_claimed(
    row: Notification, kind: Kind, counts: Counter[str], connection: BaseEmailBackend | None = None
) -> bool:
    """Claim the row and send its e-mail in one transaction: the claim holds only if the send did.
    ``connection``: the task's one connection to the mail server (else one is opened for this e-mail)."""
    what = f"notification {row.pk}"
    try:
        with transaction.atomic():
            claimed = Notification.objects.filter(pk=row.pk, emailed_at__isnull=True).update(
                emailed_at=timezone.now()
            )
            if not claimed:
                _skip(Skip.SENT, what, counts)
                return True
            email = emails.notification_email(row.recipient, kind, row.message, row)
            if connection is None:
                email.send()
            else:
                connection.open()  # once: a connection the backend opened itself, it closes after the send
                # Handed the message, not set on it: Django 6.1 deprecates EmailMessage.connection.
                connection.send_messages([email])
    except Exception as error:  # SMTP refused, unreachable, a template's error: the next row is sent
        logger.error("wsgateway: e-mail of %s failed: %r", what, error)
        if connection is not None:
            # Dropped, so that the next send opens a fresh one instead of writing to a broken socket.
            with suppress(smtplib.SMTPException, OSError):
                connection.close()
        metrics.increment(metrics.EMAIL_FAILED)
        counts["failed"] += 1
        return False
    logger.info("wsgateway: e-mail of %s sent to user %s", what, row.recipient_id)
    metrics.increment(metrics.EMAIL_SENT)
    counts["sent"] += 1
    return True


def email_unread_rows(ids: list[int], *, if_offline: bool, failed: list[int] | None = None) -> dict[str, int]:
    """E-mail each of the notifications ``ids`` still unread, at most once; what was done, counted.
    The ids whose send failed are added to ``failed``."""
    counts: Counter[str] = Counter()
    # One connection to the mail server for the task's e-mails, opened at the first send (a server that is
    # down fails that row, not the task): measured with aiosmtpd on 127.0.0.1, one task of 1000 e-mails
    # took about 27 s with a connection each, about 3 s with one (tests/support/mail.py's sink).
    connection = emails.connection()
    try:
        _email_rows(ids, if_offline, failed, counts, connection)
    finally:
        with suppress(smtplib.SMTPException, OSError):
            connection.close()
    return dict(counts)


def _email_rows(
    ids: list[int],
    if_offline: bool,
    failed: list[int] | None,
    counts: Counter[str],
    connection: BaseEmailBackend,
) -> None:
    for chunk in _slices(ids[:MAX_IDS_PER_TASK], ROWS_PER_QUERY):
        rows = {row.pk: row for row in Notification.objects.filter(pk__in=chunk).select_related("recipient")}
        stored = preferences.stored_choices({row.recipient_id for row in rows.values()})
        now = timezone.now()
        for pk in chunk:
            row = rows.get(pk)
            if row is None:
                _skip(Skip.GONE, f"notification {pk}", counts)
                continue
            kind = _kind(row.kind)
            reason = _row_state(row, now) or _user_state(
                row.recipient, kind, stored.get(row.recipient_id), if_offline
            )
            if reason is not None:
                _skip(reason, f"notification {pk}", counts)
            elif kind is not None and not _send_claimed(row, kind, counts, connection) and failed is not None:
                failed.append(pk)


def retry(ids: list[int], if_offline: bool, attempt: int) -> None:
    """Enqueue the ids whose send failed on try ``attempt`` (0: the first) for the next, or give up."""
    if attempt >= len(RETRY_AFTER):
        logger.error(
            "wsgateway: e-mail of %d notification(s) given up after %d tries (ids %s...)",
            len(ids),
            attempt + 1,
            ids[:10],
        )
        metrics.increment(metrics.EMAIL_GIVEN_UP, len(ids))
        return
    try:
        backend = tasks.backend()
        later = timezone.now() + timedelta(seconds=RETRY_AFTER[attempt])
        run_after = later if backend.supports_defer else None
        email_unread.using(backend=backend.alias, run_after=run_after).enqueue(ids, if_offline, attempt + 1)
    except Exception as error:  # the backend's database or broker is down too
        logger.error("wsgateway: e-mail of %d notification(s) not retried: %r", len(ids), error)
        metrics.increment(metrics.EMAIL_GIVEN_UP, len(ids))


def email_users(kind_name: str, message: str, user_ids: list[Any]) -> dict[str, int]:
    """E-mail ``message`` to users who have no row to read (their in-app channel of the kind is off).

    At once: there is nothing to wait for. Without a row there is nothing to claim either, so a retry of
    this task would send again; the task is not retried by wsgateway, and a failure is logged.
    """
    counts: Counter[str] = Counter()
    kind = _kind(kind_name)
    users = get_user_model()._default_manager
    for chunk in _slices(user_ids[:MAX_IDS_PER_TASK], ROWS_PER_QUERY):
        found = {str(user.pk): user for user in users.filter(pk__in=chunk)}
        stored = preferences.stored_choices([user.pk for user in found.values()])
        for user_id in chunk:
            what = f"a {kind_name!r} notification to user {user_id}"
            user = found.get(str(user_id))
            reason = Skip.GONE if user is None else _user_state(user, kind, stored.get(user.pk), False)
            if reason is not None or user is None or kind is None:  # (the last two: reason is set then)
                _skip(reason or Skip.GONE, what, counts)
                continue
            try:
                emails.notification_email(user, kind, message).send()
            except Exception as error:
                logger.error("wsgateway: e-mail of %s failed: %r", what, error)
                metrics.increment(metrics.EMAIL_FAILED)
                counts["failed"] += 1
                continue
            metrics.increment(metrics.EMAIL_SENT)
            counts["sent"] += 1
    return dict(counts)


@define
def email_unread(ids: list[int], if_offline: bool, attempt: int = 0) -> dict[str, int]:
    """The task: :func:`email_unread_rows`, and a later try of those whose send failed."""
    failed: list[int] = []
    counts = email_unread_rows(ids, if_offline=if_offline, failed=failed)
    if failed:
        retry(failed, if_offline, attempt)
    return counts


@define
def email_without_row(kind: str, message: str, user_ids: list[Any]) -> dict[str, int]:
    """The task: :func:`email_users`."""
    return email_users(kind, message, user_ids)
