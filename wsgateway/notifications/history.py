"""A user's notifications from a cursor: the new ones (``since``, by ``seq``, what ``sync`` always
gave), or every change (``changes_since``, by ``version``: new ones and changes to old ones alike)."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from ..models import Notification
from . import sizes
from .states import visible


def since(user: Any, seq: int, limit: int) -> dict[str, Any]:
    """``{"notifications": [the user's visible ones with a seq over ``seq``, oldest first, at most
    ``limit``], "has_more": bool}``, cut short where a frame could carry no more (see
    :func:`sizes.page`). Deleted, snoozed and expired ones are left out: a client of this form sees
    only new notifications, and those are not in its inbox."""
    rows = list(
        Notification.objects.for_user(user)
        .filter(visible(timezone.now()), seq__gt=seq)
        .select_related("created_by", "changed_by")
        .order_by("seq")[: limit + 1]
    )
    found, has_more = sizes.page([row.to_wire() for row in rows], limit)
    return {"notifications": found, "has_more": has_more}


def changes_since(user: Any, version: int, limit: int) -> dict[str, Any]:
    """``{"changes": [the user's notifications whose latest change is numbered over ``version``, in
    that order, at most ``limit``], "has_more": bool}``: one range of the (recipient, version) index.

    Each notification is there once, in its state now; one the user deleted is its tombstone (id,
    ``seq`` and states, ``"deleted": true``, no content).
    """
    rows = list(
        Notification.objects.for_user(user)
        .filter(version__gt=version)
        .select_related("created_by", "changed_by")
        .order_by("version")[: limit + 1]
    )
    found, has_more = sizes.page([_item(row) for row in rows], limit)
    return {"changes": found, "has_more": has_more}


def _item(row: Notification) -> dict[str, Any]:
    if row.deleted_at is not None:
        return {"id": row.pk, "seq": row.seq, "is_read": row.is_read, **row.state_wire()}
    return row.to_wire()
