"""The e-mail sent when a notification stays unread: planned by notify(), scheduled on Django's Tasks.

:func:`plan` reads a notify() call's e-mail fallback over its kind's; :func:`schedule` marks each row
whose recipient has the kind's e-mail on (``email_due``) and enqueues, once the transaction commits,
one task per notify() chunk (its rows' ids, never one task per row) to run when they are due. The
task (:mod:`wsgateway.notifications.mailing`) re-checks each row then, and sends each e-mail at most once.

"E-mail if offline" is due at once, and skipped by the task if the user has a socket open; with an
``email_after`` as well, a second task e-mails it then if it is still unread (only one is ever sent).
A user whose in-app channel of the kind is off has no row to read or wait for, and is e-mailed at once.

A Tasks backend that cannot defer (Django's ImmediateBackend) cannot wait ``email_after``: such an
e-mail is not scheduled, and that is logged and counted; check wsgateway.W009 says so at start-up.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Final

from django.db import transaction
from django.utils import timezone

from .. import metrics, tasks
from ..models import Notification
from . import mailing
from .kinds import Kind

logger = logging.getLogger("wsgateway")


class Unset:
    """The type of :data:`UNSET`: notify() was given no value, and the kind's own applies."""


UNSET: Final = Unset()


@dataclass(frozen=True, slots=True)
class EmailPlan:
    """When a notify() call's notifications are e-mailed if still unread."""

    after: int | None
    if_offline: bool


def plan(kind: Kind, after: int | Unset | None, if_offline: bool | Unset) -> EmailPlan | None:
    """The e-mail fallback of a notify() call: its own values over the kind's; None: no e-mail."""
    after = kind.email_after if isinstance(after, Unset) else after
    if_offline = kind.email_if_offline if isinstance(if_offline, Unset) else if_offline
    if after is None and not if_offline:
        return None
    return EmailPlan(after, bool(if_offline))


def schedule(
    email: EmailPlan | None, rows: list[Notification], chosen: Any, fields: dict[str, Any], using: str
) -> None:
    """Mark the e-mail of ``rows`` due and enqueue it at commit (see the module's docstring).

    ``chosen`` is the chunk's :class:`~wsgateway.notifications.preferences.Choice`: only its ``email``
    users are e-mailed. A grouped row already due (``email_due`` set) keeps the task it has.
    """
    if email is None or not chosen.email:
        return
    now = timezone.now()
    due = [r for r in rows if r.recipient_id in chosen.email and r.email_due is None and r.emailed_at is None]
    if due:
        first = now if email.if_offline else now + timedelta(seconds=email.after or 0)
        Notification.objects.using(using).filter(pk__in=[row.pk for row in due]).update(email_due=first)
        ids = []
        for row in due:
            row.email_due = first
            ids.append(row.pk)
        if email.if_offline:
            transaction.on_commit(partial(_enqueue_rows, ids, now, True), using=using)
        if email.after is not None:
            later = now + timedelta(seconds=email.after)
            transaction.on_commit(partial(_enqueue_rows, ids, later, False), using=using)
    inapp = {getattr(user, "pk", user) for user in chosen.inapp}
    if without_row := sorted(str(pk) for pk in chosen.email - inapp):
        enqueue = partial(_enqueue_users, fields["kind"], fields["message"], without_row)
        transaction.on_commit(enqueue, using=using)


def _backend() -> tasks.BaseTaskBackend | None:
    try:
        return tasks.backend()
    except Exception as error:  # no framework, or no such alias (E018): the rows are stored all the same
        logger.error("wsgateway: e-mails cannot be scheduled: %s", error)
        return None


def _enqueue_rows(ids: list[int], due: datetime, if_offline: bool) -> None:
    backend = _backend()
    if backend is None:
        metrics.increment(metrics.EMAIL_NOT_SCHEDULED, len(ids))
        return
    wait = due > timezone.now()
    if wait and not backend.supports_defer:
        logger.warning(
            "wsgateway: the e-mail of %d notification(s) is not scheduled: the Tasks backend %r cannot "
            "defer (run_after); see check wsgateway.W009",
            len(ids),
            backend.alias,
        )
        metrics.increment(metrics.EMAIL_NOT_SCHEDULED, len(ids))
        return
    options = {"backend": backend.alias, "run_after": due if wait else None}
    for part in _parts(ids):
        _enqueue(mailing.email_unread, options, (part, if_offline), len(part))


def _enqueue_users(kind: str, message: str, user_ids: list[str]) -> None:
    backend = _backend()
    if backend is None:
        metrics.increment(metrics.EMAIL_NOT_SCHEDULED, len(user_ids))
        return
    for part in _parts(user_ids):
        _enqueue(mailing.email_without_row, {"backend": backend.alias}, (kind, message, part), len(part))


def _parts(items: list[Any]) -> list[list[Any]]:
    size = mailing.MAX_IDS_PER_TASK
    return [items[start : start + size] for start in range(0, len(items), size)]


def _enqueue(task: Any, options: dict[str, Any], args: tuple[Any, ...], count: int) -> None:
    # After the commit: the notifications are stored whatever happens here, and notify() has returned.
    try:
        task.using(**options).enqueue(*args)
    except Exception as error:  # the backend's database or broker is down, or the task was not defined
        logger.error("wsgateway: %d e-mail(s) could not be scheduled: %r", count, error)
        metrics.increment(metrics.EMAIL_NOT_SCHEDULED, count)
