"""The states of a notification: which rows each view of the inbox shows, and what each change does.

A notification is *visible* unless the user deleted it (a tombstone until pruning), it is snoozed, or
it expired. Visible ones are in the inbox, or archived. Each change (:class:`Transition`) names the
rows it applies to (those not in its state already: changing nothing takes no number) and what it
sets; :mod:`.changes` numbers and stores it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Q

from ..models import Change, Notification

#: The views ``list`` takes.
VIEWS = ("all", "unread", "archived")


def visible(now: datetime) -> Q:
    """Rows the user may see at ``now``: not deleted, not snoozed, not expired."""
    return Q(deleted_at__isnull=True, snoozed_until__isnull=True) & (
        Q(expires_at__isnull=True) | Q(expires_at__gt=now)
    )


def view(name: str, now: datetime) -> Q:
    """The rows of a view: ``all`` (the inbox, not archived), ``unread`` (of those), ``archived``."""
    if name == "archived":
        return visible(now) & Q(archived_at__isnull=False)
    inbox = visible(now) & Q(archived_at__isnull=True)
    return inbox & Q(is_read=False) if name == "unread" else inbox


@dataclass(frozen=True)
class Transition:
    """One kind of change: the rows it applies to, and what it sets on each (given ``now``, and the
    snooze's time for ``snoozed``)."""

    kind: Change
    pending: Callable[[datetime | None], Q]
    apply: Callable[[Notification, datetime, datetime | None], None]


def _read(row: Notification, now: datetime, until: datetime | None) -> None:
    row.is_read = True
    row.seen_at = row.seen_at or now  # what was read was shown


def _unread(row: Notification, now: datetime, until: datetime | None) -> None:
    row.is_read = False


def _seen(row: Notification, now: datetime, until: datetime | None) -> None:
    row.seen_at = now


def _archived(row: Notification, now: datetime, until: datetime | None) -> None:
    row.archived_at = now


def _unarchived(row: Notification, now: datetime, until: datetime | None) -> None:
    row.archived_at = None


def _deleted(row: Notification, now: datetime, until: datetime | None) -> None:
    row.deleted_at = now
    row.snoozed_until = None  # a tombstone is never woken


def _snoozed(row: Notification, now: datetime, until: datetime | None) -> None:
    row.snoozed_until = until


def _unsnoozed(row: Notification, now: datetime, until: datetime | None) -> None:
    # Back as new: unread and unseen, so the badge counts it again.
    row.snoozed_until = None
    row.is_read = False
    row.seen_at = None


def _always(until: datetime | None) -> Q:
    return Q()


TRANSITIONS: dict[Change, Transition] = {
    t.kind: t
    for t in (
        Transition(Change.READ, lambda until: Q(is_read=False), _read),
        Transition(Change.UNREAD, lambda until: Q(is_read=True), _unread),
        Transition(Change.SEEN, lambda until: Q(seen_at__isnull=True), _seen),
        Transition(Change.ARCHIVED, lambda until: Q(archived_at__isnull=True), _archived),
        Transition(Change.UNARCHIVED, lambda until: Q(archived_at__isnull=False), _unarchived),
        Transition(Change.DELETED, _always, _deleted),
        # Snoozed again to another time is a change; to the same time, none.
        Transition(
            Change.SNOOZED, lambda until: Q(snoozed_until__isnull=True) | ~Q(snoozed_until=until), _snoozed
        ),
        Transition(Change.UNSNOOZED, lambda until: Q(snoozed_until__isnull=False), _unsnoozed),
    )
}

#: The fields a change may set (with its number, its kind, and who changed it when).
CHANGED_FIELDS = [
    "is_read",
    "seen_at",
    "archived_at",
    "deleted_at",
    "snoozed_until",
    "version",
    "change",
    "changed",
    "changed_by",
]

#: Changes after which a tab may not have the notification's content (it was hidden there, or never
#: loaded): their change items carry the whole notification, not only its states.
BRINGS_BACK = frozenset({Change.UNSNOOZED, Change.UNARCHIVED, Change.UNREAD})

#: Changes of the notification's content (its text, count and actors after ``grouped``): every tab
#: needs the new content, as after a change that brings it back.
CARRIES_CONTENT = BRINGS_BACK | {Change.GROUPED}


def change_item(row: Notification) -> dict[str, Any]:
    """What a change push carries of a changed notification: its id, ``seq``, states and version,
    and the whole notification after a change that brings it back into a view or changes its content."""
    if row.change in CARRIES_CONTENT:
        return row.to_wire()
    return {"id": row.pk, "seq": row.seq, "is_read": row.is_read, **row.state_wire()}
