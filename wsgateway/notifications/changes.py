"""Changing notifications: each change numbered in the recipient's sequence, stored, then pushed.

Every change of a notification (read, unread, seen, archived, unarchived, deleted, snoozed,
unsnoozed; its creation is numbered as it is inserted) takes the next number of the user's sequence,
the same one ``seq`` is drawn from, in the change's own transaction and under the user's numbering
lock (:class:`~wsgateway.models.NotificationSequence`): a greater number never commits before a
smaller one is visible, which is what lets a client's cursor say "every change after N". The row
keeps the number of its latest change (``version``) and what it was (``change``): storage stays one
row per notification, and "everything since N" is one range of an index, each row once, in its
latest state.

Work per call is bounded: at most :data:`BATCH` rows per transaction (the lock is held that long),
:data:`MAX_BATCHES` transactions per call, one push (or a few, by frame size) per transaction.
"""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Any, NamedTuple

from django.db import router, transaction
from django.db.models import Q
from django.utils import timezone

from ..columns import fits_column
from ..models import Change, Notification, NotificationSequence
from .pushing import push_changes
from .states import CHANGED_FIELDS, TRANSITIONS

#: Most ids one action may name.
MAX_IDS = 100
#: Rows changed per transaction: the numbering lock of the user is held for one batch.
BATCH = 500
#: Batches per call: a bulk change of more rows says so (``has_more``), and the client asks again.
MAX_BATCHES = 10


class NotFound(LookupError):
    """Ids that are not notifications of the user (or that the user deleted): nothing was changed."""

    def __init__(self, ids: list[Any]) -> None:
        super().__init__(f"No notifications of the user with ids {ids}")
        self.ids = ids


class Outcome(NamedTuple):
    """How many rows a call changed, and whether a bulk change left some for the next call."""

    changed: int
    has_more: bool


def change(
    user: Any,
    kind: Change,
    ids: list[int] | None = None,
    *,
    until: datetime | None = None,
    only: Q | None = None,
    actor: Any = None,
) -> Outcome:
    """Apply a change of ``kind`` to the user's notifications ``ids`` (all ids must be the user's
    and not deleted, else :class:`NotFound` and nothing changes), or, with ``ids`` None, to every
    notification of the user it applies to (and ``only`` allows), :data:`BATCH` at a time.

    Rows already in the state are left alone and take no number. Each batch is pushed once its
    transaction commits; with nothing changed, the counts alone are pushed (a client's request
    is always answered on every tab). ``actor`` becomes ``changed_by``; ``until`` is the snooze's time.
    """
    user_id = getattr(user, "pk", user)
    using = router.db_for_write(Notification)
    if ids is not None:
        _check_ids(user_id, ids, using)
    changed = 0
    for _ in range(MAX_BATCHES):
        rows, more = _batch(user_id, kind, ids, until, only, actor, using)
        changed += len(rows)
        if not more:
            return Outcome(changed, False)
    return Outcome(changed, True)


def _check_ids(user_id: Any, ids: list[int], using: str) -> None:
    if len(ids) > MAX_IDS:
        raise ValueError(f"At most {MAX_IDS} ids per change")
    storable = [pk for pk in ids if fits_column(Notification._meta.pk, pk)]
    found = set(
        Notification.objects.using(using)
        .filter(recipient_id=user_id, deleted_at__isnull=True, pk__in=storable)
        .values_list("pk", flat=True)
    )
    if missing := sorted(set(ids) - found):
        raise NotFound(missing)


def _batch(
    user_id: Any,
    kind: Change,
    ids: list[int] | None,
    until: datetime | None,
    only: Q | None,
    actor: Any,
    using: str,
) -> tuple[list[Notification], bool]:
    transition = TRANSITIONS[kind]
    now = timezone.now()
    with transaction.atomic(using=using):
        sequence = NotificationSequence.objects.using(using)
        # The user's lock first (adding nothing), then the read: what is read is committed, and no
        # other change of this user can number or commit until this one has.
        sequence.reserve({user_id: 0})
        query = Notification.objects.using(using).filter(
            Q(recipient_id=user_id, deleted_at__isnull=True) & transition.pending(until)
        )
        if ids is not None:
            query = query.filter(pk__in=ids)
        if only is not None:
            query = query.filter(only)
        rows = list(query.select_related("created_by", "changed_by").order_by("id")[: BATCH + 1])
        more, rows = len(rows) > BATCH, rows[:BATCH]
        if rows:
            last = sequence.reserve({user_id: len(rows)})[user_id]
            for number, row in enumerate(rows, last - len(rows) + 1):
                transition.apply(row, now, until)
                row.version, row.change, row.changed, row.changed_by = number, kind, now, actor
            Notification.objects.using(using).bulk_update(rows, CHANGED_FIELDS)
        # At commit, never before: a socket is never told of a change a rollback takes back.
        transaction.on_commit(partial(push_changes, user_id, rows), using=using)
    return rows, more
