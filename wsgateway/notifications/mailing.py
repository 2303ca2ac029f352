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
which is the better of the two losses.
"""

from __future__ import annotations

import enum
import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from .. import metrics, sockets
from ..models import Notification
from ..tasks import task
from . import emails, kinds, preferences
from .kinds import EMAIL, Kind

logger = logging.getLogger("wsgateway")

#: Most notification ids one task carries: one notify() chunk (sending.BATCH_SIZE), never more.
MAX_IDS_PER_TASK = 1000
#: Rows (or users) read per query while a task works through its ids.
ROWS_PER_QUERY = 100


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


def _send_claimed(row: Notification, kind: Kind, counts: Counter[str]) -> None:
    """Claim the row and send its e-mail in one transaction: the claim holds only if the send did."""
    what = f"notification {row.pk}"
    try:
        with transaction.atomic():
            claimed = Notification.objects.filter(pk=row.pk, emailed_at__isnull=True).update(
                emailed_at=timezone.now()
            )
            if not claimed:
                _skip(Skip.SENT, what, counts)
                return
            emails.notification_email(row.recipient, kind, row.message, row).send()
    except Exception as error:  # SMTP refused, unreachable, a template's error: the next row is sent
        logger.error("wsgateway: e-mail of %s failed, to be retried by a new task: %r", what, error)
        metrics.increment(metrics.EMAIL_FAILED)
        counts["failed"] += 1
        return
    logger.info("wsgateway: e-mail of %s sent to user %s", what, row.recipient_id)
    metrics.increment(metrics.EMAIL_SENT)
    counts["sent"] += 1


def email_unread_rows(ids: list[int], *, if_offline: bool) -> dict[str, int]:
    """E-mail each of the notifications ``ids`` still unread, at most once; what was done, counted."""
    counts: Counter[str] = Counter()
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
            elif kind is not None:
                _send_claimed(row, kind, counts)
    return dict(counts)


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


@task()
def email_unread(ids: list[int], if_offline: bool) -> dict[str, int]:
    """The task: :func:`email_unread_rows`."""
    return email_unread_rows(ids, if_offline=if_offline)


@task()
def email_without_row(kind: str, message: str, user_ids: list[Any]) -> dict[str, int]:
    """The task: :func:`email_users`."""
    return email_users(kind, message, user_ids)
