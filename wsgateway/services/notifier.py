"""The "notifications" channel's service: the unread count on connect, read state, the list.

The pushes of new notifications are the domain's (:mod:`wsgateway.notifications`), not the service's.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from channels.db import database_sync_to_async
from django.db import transaction
from django.utils import timezone

from ..codes import ErrorCode
from ..columns import fits_column
from ..conf import MAX_PAGE_SIZE, gateway_settings
from ..exceptions import GatewayError
from ..models import Notification
from ..notifications import CHANNEL, push_unread_state, unread_state
from .base import ActionService


class NotifierService(ActionService):
    channel = CHANNEL

    def snapshot(self, user: Any) -> Any:
        return unread_state(user.pk)

    async def action_mark_read(self, user: Any, data: Any) -> Any:
        ids = set(_parse_ids(data))
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
                storable = [pk for pk in ids if fits_column(Notification._meta.pk, pk)]
                found = set(mine.filter(pk__in=storable).values_list("pk", flat=True))
                if missing := sorted(ids - found):
                    raise GatewayError(ErrorCode.NOT_FOUND, f"No notifications of yours with ids {missing}.")
                mine = mine.filter(pk__in=ids)
            # update() rather than save(): a read-state change is not a new notification to push.
            mine.unread().update(is_read=True, changed=timezone.now(), changed_by=user)
        return push_unread_state(user.pk)

    @staticmethod
    def _list(user: Any, data: Any) -> dict[str, Any]:
        page = _parse_page(data)
        query = Notification.objects.for_user(user).select_related("created_by", "changed_by").order_by("-id")
        if page.unread_only:
            query = query.unread()
        if page.before is not None:
            query = query.filter(pk__lt=page.before)
        rows = list(query[: page.limit + 1])
        return {
            "notifications": [item.to_wire() for item in rows[: page.limit]],
            "has_more": len(rows) > page.limit,
            **unread_state(user.pk),
        }


class _Page(NamedTuple):
    """A list request: up to ``limit`` notifications, newest first, with ids below ``before``."""

    before: int | None
    limit: int
    unread_only: bool


def _parse_page(data: Any) -> _Page:
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
    return _Page(before, limit, unread_only)


def _parse_ids(data: Any) -> list[int]:
    if not isinstance(data, list) or not all(type(item) is int for item in data):
        raise GatewayError(ErrorCode.INVALID_DATA, "mark_read takes a list of notification ids.")
    return data
