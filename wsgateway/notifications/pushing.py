"""Pushing stored notifications, and unread counts, to every socket of their recipients."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from .. import metrics
from ..groups import Push, push, push_many
from ..locks import user_push_lock
from ..models import Notification
from .unread import unread_state, unread_states_and_stored

#: The channel notifications are pushed on, and the notifier service answers on.
CHANNEL = "notifications"
#: Notifications pushed per query and layer call, to bound memory on a site-wide announcement.
PUSH_CHUNK = 1000
logger = logging.getLogger("wsgateway")


def push_saved_notifications(ids: Iterable[int]) -> None:
    """Push saved notifications, by id, to their recipients; run once the transaction commits.

    The rows are read again: ids of a rolled-back transaction may ride along, and they name no row.
    """
    ids = sorted(set(ids))
    for start in range(0, len(ids), PUSH_CHUNK):
        push_notifications(
            Notification.objects.select_related("created_by", "changed_by")
            .filter(pk__in=ids[start : start + PUSH_CHUNK])
            .order_by("id")
        )


def push_created_notifications(notifications: list[Notification]) -> None:
    """notify()'s commit hook: push the rows it inserted, from memory, but not those deleted since."""
    push_notifications(notifications, stored_only=True)


def push_notifications(notifications: Iterable[Notification], *, stored_only: bool = False) -> None:
    """Push committed notifications to their recipients, with each recipient's unread count.

    However many notifications and recipients, this is one query and one call
    to the channel layer per chunk (one pipeline on wsgateway's Redis layer).
    ``stored_only`` drops those no longer in the database (in the same query).
    A channel-layer failure is logged, not raised: the rows are stored, and
    sockets catch up through the resync after the layer returns, or on connect.
    """
    notifications = list(notifications)
    for start in range(0, len(notifications), PUSH_CHUNK):
        _push_chunk(notifications[start : start + PUSH_CHUNK], stored_only=stored_only)


def _push_chunk(chunk: list[Notification], *, stored_only: bool) -> None:
    recipients = {n.recipient_id for n in chunk}
    with user_push_lock(recipients):
        # Counted under the lock, so that pushes leave in the order their counts were taken.
        states, stored = unread_states_and_stored(recipients, [n.pk for n in chunk] if stored_only else [])
        pushes = [
            Push(n.recipient_id, CHANNEL, push_payload(n, states[n.recipient_id]["unread"]), n.seq)
            for n in chunk
            if not stored_only or n.pk in stored
        ]
        if not pushes:
            return
        try:
            push_many(pushes)
        except Exception as exc:
            metrics.increment(metrics.PUSH_FAILED, len(pushes))
            logger.warning("wsgateway: %d notification(s) stored but not pushed: %s", len(pushes), exc)


def push_payload(notification: Notification, unread: int) -> dict[str, Any]:
    """What a new notification is pushed as, with its recipient's unread count."""
    return {"category": notification.category_tag, "last": notification.to_wire(), "unread": unread}


def push_unread_state(user_id: Any) -> dict[str, Any]:
    """Push the unread count to every socket of the user, and return it."""
    with user_push_lock(user_id):
        state = unread_state(user_id)
        push([user_id], CHANNEL, state)
    return state
