"""Grouping: while a user's notification of a group is unread, the next one of the group updates it.

The foundation: the group is checked and stored; the update in place is to be built (issue 22).
"""

from __future__ import annotations

from typing import Any

from ..models import Notification
from .delivery import after_bulk_insert

#: Longest group name: ``Notification.group``'s column.
MAX_GROUP_LENGTH = 100


def checked(group: Any) -> str:
    """``group`` if it can name a group (a string of at most :data:`MAX_GROUP_LENGTH`), else ValueError."""
    if not isinstance(group, str) or len(group) > MAX_GROUP_LENGTH:
        raise ValueError(f"A group is a string of at most {MAX_GROUP_LENGTH} characters, not {group!r}.")
    return group


def add(users: list[Any], fields: dict[str, Any], using: str) -> list[Notification]:
    """Store a notification of ``fields`` (with its group) for each of ``users``."""
    batch = Notification.objects.using(using).bulk_create(
        [Notification(recipient=user, **fields) for user in users]
    )
    after_bulk_insert(batch, using)
    return batch
