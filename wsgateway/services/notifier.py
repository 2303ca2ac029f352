"""The "notifications" channel: unread count on connect, live pushes, read state."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from channels.db import database_sync_to_async
from django.core.exceptions import ValidationError
from django.db import connections, router, transaction
from django.utils import timezone

from ..codes import ErrorCode
from ..conf import MAX_PAGE_SIZE, gateway_settings
from ..exceptions import GatewayError
from ..groups import push, push_many
from ..locks import user_push_lock
from ..models import Notification, category_tag
from .base import ActionService

CHANNEL = "notifications"
logger = logging.getLogger("wsgateway")
#: Notifications pushed per query and layer call, to bound memory on a site-wide announcement.
PUSH_CHUNK = 1000


def unread_state(user_id: Any) -> dict[str, Any]:
    """``{"unread": N, "category": <tag of the newest unread or None>}``."""
    return unread_states([user_id])[user_id]


def unread_states(user_ids: Iterable[Any]) -> dict[Any, dict[str, Any]]:
    """:func:`unread_state` of many users, in one query."""
    return _unread_states_and_stored(user_ids, [])[0]


def _unread_states_and_stored(
    user_ids: Iterable[Any], ids: list[int]
) -> tuple[dict[Any, dict[str, Any]], set[int]]:
    """The unread states of ``user_ids``, and which of the notifications ``ids`` exist, in one query.

    Plain SQL: this runs on every connect and every push, and building the
    equivalent ORM query (an aggregate with a correlated subquery) cost more
    than running it.
    """
    user_ids = list(user_ids)
    states: dict[Any, dict[str, Any]] = {user_id: {"unread": 0, "category": None} for user_id in user_ids}
    stored: set[int] = set()
    if not user_ids:
        return states, stored
    with connections[router.db_for_read(Notification)].cursor() as cursor:
        cursor.execute(_unread_sql(cursor.db, len(user_ids), len(ids)), [False, False, *user_ids, *ids])
        for recipient_id, unread, newest_category, stored_id in cursor.fetchall():
            if recipient_id is None:
                stored.add(stored_id)
            else:
                states[recipient_id] = {"unread": unread, "category": category_tag(newest_category)}
    return states, stored


def _unread_sql(db: Any, users: int, ids: int) -> str:
    qn = db.ops.quote_name
    meta = Notification._meta
    table, pk = qn(meta.db_table), qn(meta.pk.column)
    recipient, is_read = qn(meta.get_field("recipient").column), qn(meta.get_field("is_read").column)
    category = qn(meta.get_field("category").column)
    sql = (
        f"SELECT n.{recipient}, COUNT(*), "
        f"(SELECT m.{category} FROM {table} m WHERE m.{recipient} = n.{recipient} AND m.{is_read} = %s "
        f"ORDER BY m.{pk} DESC LIMIT 1), NULL "
        f"FROM {table} n WHERE n.{is_read} = %s AND n.{recipient} IN ({', '.join(['%s'] * users)}) "
        f"GROUP BY n.{recipient}"
    )
    if ids:
        # One round trip for the existence check too (see push_created_notifications).
        sql += (
            f" UNION ALL SELECT NULL, NULL, NULL, {pk} FROM {table} WHERE {pk} IN ({', '.join(['%s'] * ids)})"
        )
    return sql


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
        chunk = notifications[start : start + PUSH_CHUNK]
        recipients = {n.recipient_id for n in chunk}
        with user_push_lock(recipients):
            # Counted under the lock, so that pushes leave in the order their counts were taken.
            states, stored = _unread_states_and_stored(
                recipients, [n.pk for n in chunk] if stored_only else []
            )
            pushes = [
                (
                    n.recipient_id,
                    CHANNEL,
                    {
                        "category": n.category_tag,
                        "last": n.to_wire(),
                        "unread": states[n.recipient_id]["unread"],
                    },
                )
                for n in chunk
                if not stored_only or n.pk in stored
            ]
            if not pushes:
                continue
            try:
                push_many(pushes)
            except Exception as exc:
                logger.warning("wsgateway: %d notification(s) stored but not pushed: %s", len(pushes), exc)


def push_unread_state(user_id: Any) -> dict[str, Any]:
    """Push the unread count to every socket of the user, and return it."""
    with user_push_lock(user_id):
        state = unread_state(user_id)
        push([user_id], CHANNEL, state)
    return state


def _ids(data: Any) -> list[int]:
    if not isinstance(data, list) or not all(type(item) is int for item in data):
        raise GatewayError(ErrorCode.INVALID_DATA, "mark_read takes a list of notification ids.")
    return data


def _storable_pk(pk: int) -> bool:
    # An id out of the column's range names no row, and SQLite raises OverflowError on it.
    try:
        Notification._meta.pk.run_validators(pk)
    except ValidationError:
        return False
    return True


class NotifierService(ActionService):
    channel = CHANNEL

    def snapshot(self, user: Any) -> Any:
        return unread_state(user.pk)

    async def action_mark_read(self, user: Any, data: Any) -> Any:
        ids = set(_ids(data))
        return await database_sync_to_async(self._mark_read)(user, ids)

    async def action_mark_all_read(self, user: Any, data: Any) -> Any:
        return await database_sync_to_async(self._mark_read)(user, None)

    async def action_list(self, user: Any, data: Any) -> Any:
        return await database_sync_to_async(self._list)(user, {} if data is None else data)

    @staticmethod
    def _mark_read(user: Any, ids: set[int] | None) -> dict[str, Any]:
        with transaction.atomic():
            mine = Notification.objects.for_user(user)
            if ids is not None:
                storable = [pk for pk in ids if _storable_pk(pk)]
                found = set(mine.filter(pk__in=storable).values_list("pk", flat=True))
                if missing := sorted(ids - found):
                    raise GatewayError(ErrorCode.NOT_FOUND, f"No notifications of yours with ids {missing}.")
                mine = mine.filter(pk__in=ids)
            # update() rather than save(): a read-state change is not a new notification to push.
            mine.unread().update(is_read=True, changed=timezone.now(), changed_by=user)
        return push_unread_state(user.pk)

    @staticmethod
    def _list(user: Any, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise GatewayError(ErrorCode.INVALID_DATA, 'list takes {"before", "limit", "unread_only"}.')
        before = data.get("before")
        limit = data.get("limit", gateway_settings.NOTIFICATIONS_PAGE_SIZE)
        unread_only = data.get("unread_only", False)
        if before is not None and type(before) is not int:
            raise GatewayError(ErrorCode.INVALID_DATA, '"before" must be a notification id.')
        if type(limit) is not int or not 1 <= limit <= MAX_PAGE_SIZE:
            raise GatewayError(
                ErrorCode.INVALID_DATA, f'"limit" must be an integer from 1 to {MAX_PAGE_SIZE}.'
            )
        if not isinstance(unread_only, bool):
            raise GatewayError(ErrorCode.INVALID_DATA, '"unread_only" must be true or false.')
        query = Notification.objects.for_user(user).select_related("created_by", "changed_by").order_by("-id")
        if unread_only:
            query = query.unread()
        if before is not None:
            query = query.filter(pk__lt=before)
        page = list(query[: limit + 1])
        return {
            "notifications": [item.to_wire() for item in page[:limit]],
            "has_more": len(page) > limit,
            **unread_state(user.pk),
        }
