"""Pruning: removing expired notifications, and read, archived and deleted ones past their age.

:func:`prune` walks the table by primary key ranges of ``NOTIFICATIONS_PRUNE_BATCH`` ids, one short
transaction each, so no statement looks at more than that many rows or holds its locks for longer
than that takes (measured in bench/README.md); ``manage.py wsgateway_prune`` calls it, and so may a
site's scheduled task. Each range takes the numbering locks of the users it touches first, in the
order every change takes them (no deadlock with a change of the same rows), then deletes.

A removed row can no longer be replayed: the greatest ``version`` removed of each user is kept
(``NotificationSequence.pruned``), and a ``sync`` of changes from a cursor below it is answered
``reset`` (reload the inbox). Expired rows do not count there: a client hides them by their
``expires_at`` whether or not it was told of their last change.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import router, transaction
from django.db.models import Max, Min, Q
from django.utils import timezone

from ..conf import gateway_settings
from ..models import Notification, NotificationSequence
from .snoozing import wake_due

#: What :func:`prune` removes, by reason, in the order a row is counted (a deleted one that also
#: expired counts as deleted).
REASONS = ("deleted", "expired", "archived", "read")


@dataclass
class Pruned:
    """How many rows :func:`prune` removed, by reason; and the most a statement covered."""

    counts: Counter[str] = field(default_factory=Counter)
    #: Transactions run (one per range of ids with anything in it, and one look per range).
    ranges: int = 0

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _age(days: int | None, now: datetime) -> datetime | None:
    return None if days is None else now - timedelta(days=days)


def prunable(now: datetime) -> Q:
    """The rows pruning removes at ``now``, as the settings say."""
    condition = Q(expires_at__isnull=False, expires_at__lte=now)
    condition |= Q(
        deleted_at__isnull=False, deleted_at__lte=_age(gateway_settings.NOTIFICATIONS_KEEP_DELETED, now)
    )
    if (read := _age(gateway_settings.NOTIFICATIONS_KEEP_READ, now)) is not None:
        condition |= Q(is_read=True, changed__lte=read)
    if (archived := _age(gateway_settings.NOTIFICATIONS_KEEP_ARCHIVED, now)) is not None:
        condition |= Q(archived_at__isnull=False, changed__lte=archived)
    return condition


def prune(*, now: datetime | None = None, batch: int | None = None, wake: bool = True) -> Pruned:
    """Remove what :func:`prunable` names, ``batch`` ids (``NOTIFICATIONS_PRUNE_BATCH``) at a time.

    ``wake``: bring back due snoozed notifications first (see :mod:`.snoozing`).
    """
    now = now or timezone.now()
    batch = batch or gateway_settings.NOTIFICATIONS_PRUNE_BATCH
    if wake:
        while wake_due():
            pass
    using = router.db_for_write(Notification)
    rows = Notification.objects.using(using)
    bounds = rows.aggregate(low=Min("id"), high=Max("id"))
    result = Pruned()
    if bounds["low"] is None:
        return result
    condition = prunable(now)
    for start in range(bounds["low"], bounds["high"] + 1, batch):
        result.ranges += 1
        _prune_range(rows.filter(id__gte=start, id__lt=start + batch), condition, now, using, result)
    return result


def _prune_range(rows: Any, condition: Q, now: datetime, using: str, result: Pruned) -> None:
    # A first look without locks: most ranges of a big table hold nothing to prune.
    users = set(rows.filter(condition).values_list("recipient_id", flat=True))
    if not users:
        return
    with transaction.atomic(using=using):
        sequence = NotificationSequence.objects.using(using)
        sequence.reserve(dict.fromkeys(users, 0))  # the users' locks, in ascending order
        doomed = list(
            rows.filter(condition, recipient_id__in=users).values_list(
                "id", "recipient_id", "version", "deleted_at", "expires_at", "archived_at"
            )
        )
        if not doomed:
            return
        Notification.objects.using(using).filter(id__in=[row[0] for row in doomed]).delete()
        gone: dict[Any, int] = {}
        for _id, user_id, version, deleted_at, expires_at, archived_at in doomed:
            reason = _reason(deleted_at, expires_at, archived_at, now)
            result.counts[reason] += 1
            if reason != "expired":
                gone[user_id] = max(gone.get(user_id, 0), version)
        marks = list(sequence.filter(user_id__in=gone, pruned__lt=max(gone.values(), default=0)))
        for mark in marks:
            mark.pruned = max(mark.pruned, gone[mark.user_id])
        sequence.bulk_update(marks, ["pruned"])


def _reason(deleted_at: Any, expires_at: Any, archived_at: Any, now: datetime) -> str:
    if deleted_at is not None:
        return "deleted"
    if expires_at is not None and expires_at <= now:
        return "expired"
    return "archived" if archived_at is not None else "read"
