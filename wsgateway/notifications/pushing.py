"""Pushing stored notifications, and unread counts, to every socket of their recipients."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from .. import frames, metrics, repairs
from ..conf import gateway_settings
from ..groups import Push, push, push_many
from ..locks import user_push_lock
from ..models import Notification
from .states import change_item
from .unread import unread_state, unread_states, unread_states_and_stored

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
    A channel-layer failure is logged and counted, not raised: the rows are stored, and the users'
    sockets are told to catch up once the layer takes a send again (wsgateway.repairs).
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
            Push(n.recipient_id, CHANNEL, push_payload(n, states[n.recipient_id]), n.version)
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
            repairs.push_failed(recipients)
            return
    repairs.repair()  # the layer took this: users whose pushes failed before catch up now


def push_payload(notification: Notification, state: dict[str, Any]) -> dict[str, Any]:
    """What a new notification is pushed as, with its recipient's unread count and counts."""
    return {
        "category": notification.category_tag,
        "last": notification.to_wire(),
        "unread": state["unread"],
        "counts": state["counts"],
    }


#: Bytes a change push puts around its items: the counts, the category and the keys.
CHANGES_MARGIN = 1024


def push_changes(user_id: Any, rows: list[Notification]) -> None:
    """Push changed notifications (numbered one after another, oldest first) to every socket of
    their recipient, with the counts after them; run once their transaction commits.

    As few frames as ``MAX_SEND_SIZE`` allows, each carrying a run of consecutive numbers (its
    ``first_seq`` to its ``seq``, so that a socket knows what it was sent). Nothing changed: the
    counts alone, as a read-state push always was.
    """
    push_changes_of_users({user_id: rows})


def push_changes_of_users(changed: dict[Any, list[Notification]]) -> None:
    """:func:`push_changes` for many users at once (notify() grouping a chunk of recipients' rows):
    one query for their counts and one call to the channel layer, under their push locks."""
    with user_push_lock(list(changed)):
        states = unread_states(changed)
        pushes: list[Push] = []
        for user_id, rows in changed.items():
            pushes.extend(_changes_pushes(user_id, rows, states[user_id]))
        _send(pushes)


def _changes_pushes(user_id: Any, rows: list[Notification], state: dict[str, Any]) -> list[Push]:
    if not rows:
        return [Push(user_id, CHANNEL, state)]
    budget = gateway_settings.MAX_SEND_SIZE - CHANGES_MARGIN
    pushes: list[Push] = []
    run: list[dict[str, Any]] = []
    room = budget
    for row in rows:
        item = change_item(row)
        cost = frames.size(frames.encode(item)) + 1
        if run and cost > room:
            pushes.append(_changes_push(user_id, run, state))
            run, room = [], budget
        run.append(item)
        room -= cost
    pushes.append(_changes_push(user_id, run, state))
    return pushes


def _changes_push(user_id: Any, items: list[dict[str, Any]], state: dict[str, Any]) -> Push:
    return Push(user_id, CHANNEL, {"changes": items, **state}, items[-1]["version"], items[0]["version"])


def _send(pushes: list[Push]) -> None:
    try:
        push_many(pushes)
    except Exception as exc:
        metrics.increment(metrics.PUSH_FAILED, len(pushes))
        logger.warning("wsgateway: %d change push(es) stored but not sent: %s", len(pushes), exc)
        repairs.push_failed(push.user_id for push in pushes)
        return
    repairs.repair()


def push_unread_state(user_id: Any) -> dict[str, Any]:
    """Push the unread count to every socket of the user, and return it."""
    with user_push_lock(user_id):
        state = unread_state(user_id)
        push([user_id], CHANNEL, state)
    return state
