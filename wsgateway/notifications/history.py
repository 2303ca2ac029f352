"""A user's notifications in the order they were created for them, from a cursor (``seq``)."""

from __future__ import annotations

from typing import Any

from ..models import Notification


def since(user: Any, seq: int, limit: int) -> dict[str, Any]:
    """``{"notifications": [the user's with a seq over ``seq``, oldest first, at most ``limit``],
    "has_more": bool}``."""
    rows = list(
        Notification.objects.for_user(user)
        .filter(seq__gt=seq)
        .select_related("created_by", "changed_by")
        .order_by("seq")[: limit + 1]
    )
    return {"notifications": [row.to_wire() for row in rows[:limit]], "has_more": len(rows) > limit}
