"""Each user's last notification number: where a client's cursor (``Notification.seq``) stands.

The numbers are taken with the model as rows are inserted (see
:class:`~wsgateway.models.NotificationSequence`, which says why they are not the primary key);
the domain only reads them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import router

from ..models import NotificationSequence


def latest(user_ids: Iterable[Any]) -> dict[Any, int]:
    """Each user's last committed number (0 for a user with none): every notification up to it is
    committed or deleted, so a client at this number has everything."""
    user_ids = list(user_ids)
    found = dict(
        NotificationSequence.objects.using(router.db_for_read(NotificationSequence))
        .filter(user_id__in=user_ids)
        .values_list("user_id", "last")
    )
    return {user_id: found.get(user_id, 0) for user_id in user_ids}


def pruned(user_id: Any) -> int:
    """The greatest number of a change of the user that pruning removed (0: none): a client whose
    cursor is below it cannot be told everything since, and reloads (see :mod:`.pruning`)."""
    found = (
        NotificationSequence.objects.using(router.db_for_read(NotificationSequence))
        .filter(user_id=user_id)
        .values_list("pruned", flat=True)
        .first()
    )
    return found or 0
