"""A user's notifications in the order they were created for them, from a cursor (``seq``)."""

from __future__ import annotations

from typing import Any

from ..models import Notification
from . import sizes


def since(user: Any, seq: int, limit: int) -> dict[str, Any]:
    """``{"notifications": [the user's with a seq over ``seq``, oldest first, at most ``limit``],
    "has_more": bool}``, cut short where a frame could carry no more (see :func:`sizes.page`)."""
    rows = list(
        Notification.objects.for_user(user)
        .filter(seq__gt=seq)
        .select_related("created_by", "changed_by")
        .order_by("seq")[: limit + 1]
    )
    found, has_more = sizes.page([row.to_wire() for row in rows], limit)
    return {"notifications": found, "has_more": has_more}
