"""The "notifications" channel: unread count on connect, live pushes, read state."""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from ..codes import ErrorCode
from ..conf import gateway_settings
from ..exceptions import GatewayError
from ..groups import apush
from ..locks import user_push_lock
from ..models import Notification, category_tag
from .base import ActionService

CHANNEL = "notifications"
logger = logging.getLogger("wsgateway")
MAX_PAGE_SIZE = 100


def unread_state(user_id: Any) -> dict[str, Any]:
    """``{"unread": N, "category": <tag of the newest unread or None>}``."""
    unread = Notification.objects.filter(recipient_id=user_id, is_read=False)
    newest = unread.order_by("-id").values_list("category", flat=True).first()
    return {"unread": unread.count(), "category": category_tag(newest) if newest is not None else None}


def notification_payload(notification: Notification) -> dict[str, Any]:
    """The frame every socket of the recipient gets when a notification is saved."""
    state = unread_state(notification.recipient_id)
    return {"category": notification.category_tag, "last": notification.to_wire(), "unread": state["unread"]}


def push_saved_notification(notification: Notification) -> None:
    """Push a saved notification to its recipient; called once the transaction commits.

    A channel-layer failure is logged, not raised: the row is stored, and sockets
    catch up through the resync that follows the layer's return (or on connect).
    """
    with user_push_lock(notification.recipient_id):
        fresh = Notification.objects.select_related("created_by", "changed_by").filter(pk=notification.pk).first()
        if fresh is None:  # deleted before the commit hook ran: nothing to announce
            return
        try:
            async_to_sync(apush)([fresh.recipient_id], CHANNEL, notification_payload(fresh))
        except Exception as exc:
            logger.warning("wsgateway: notification %s stored but not pushed: %s", fresh.pk, exc)


def push_unread_state(user_id: Any) -> dict[str, Any]:
    """Push the unread count to every socket of the user, and return it."""
    with user_push_lock(user_id):
        state = unread_state(user_id)
        async_to_sync(apush)([user_id], CHANNEL, state)
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

    async def on_connect(self, user: Any) -> Any:
        return await database_sync_to_async(unread_state)(user.pk)

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
            raise GatewayError(ErrorCode.INVALID_DATA, f'"limit" must be an integer from 1 to {MAX_PAGE_SIZE}.')
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
