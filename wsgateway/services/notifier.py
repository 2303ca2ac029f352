"""The "notifications" channel's service: the unread count on connect, read state, the list.

The pushes of new notifications are the domain's (:mod:`wsgateway.notifications`), not the service's.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from channels.db import database_sync_to_async
from django.db import transaction
from django.utils import timezone
from django.utils.functional import Promise
from django.utils.translation import gettext, pgettext, pgettext_lazy

from ..codes import ErrorCode
from ..columns import fits_column
from ..conf import MAX_PAGE_SIZE, gateway_settings
from ..exceptions import GatewayError, InvalidData
from ..models import Notification
from ..notifications import CHANNEL, history, push_unread_state, sequence, sizes, unread_state
from ..notifications.unread import connect_state
from .base import ActionService, Connection

#: Most pushes a socket may have been sent ahead of a gap before its record of them is dropped
#: (the next resync then resends a little more, and the client drops what it has).
MAX_AHEAD = 1000
#: What ``ahead`` is without a gap, which is nearly always: shared, where an empty set per socket
#: would cost every socket 216 bytes.
NOTHING_AHEAD: frozenset[int] = frozenset()


class NotifierService(ActionService):
    channel = CHANNEL

    def __init__(self, connection: Connection) -> None:
        super().__init__(connection)
        #: Every notification up to this seq was sent to this socket (None: nothing yet, not even
        #: the connect frame); a resync resends what came after it.
        self.delivered: int | None = None
        #: Seqs sent past a gap (pushes of concurrent writers can cross): they move ``delivered``
        #: on once the gap is filled.
        self.ahead: set[int] | frozenset[int] = NOTHING_AHEAD

    def snapshot(self, user: Any) -> Any:
        state = connect_state(user.pk)
        if self.delivered is not None and self.delivered < state["seq"]:
            # A resync: what this socket was not sent while the layer was down or its queue was full.
            page = history.since(user, self.delivered, MAX_PAGE_SIZE)
            state["missed"], state["has_more"] = page["notifications"], page["has_more"]
        return state

    def connect_frame_sent(self, payload: Any) -> None:
        missed = payload.get("missed")
        # With more to come, the client pages on with "sync"; the next resync starts after this page.
        self.delivered = missed[-1]["seq"] if missed and payload.get("has_more") else payload["seq"]
        self.ahead = {seq for seq in self.ahead if seq > self.delivered} or NOTHING_AHEAD

    def push_sent(self, seq: int) -> None:
        if self.delivered is None or seq <= self.delivered:
            return  # before the connect frame (which covers it), or a notification saved again
        if seq == self.delivered + 1 and not self.ahead:
            self.delivered = seq  # the next one, with no gap before it
            return
        ahead = self.ahead if isinstance(self.ahead, set) else set()
        ahead.add(seq)
        while self.delivered + 1 in ahead:
            self.delivered += 1
            ahead.discard(self.delivered)
        self.ahead = ahead if ahead and len(ahead) <= MAX_AHEAD else NOTHING_AHEAD

    async def action_mark_read(self, user: Any, data: Any) -> Any:
        ids = set(_parse_ids(data))
        return await database_sync_to_async(self._mark_read)(user, ids)

    async def action_mark_all_read(self, user: Any, data: Any) -> Any:
        return await database_sync_to_async(self._mark_read)(user, None)

    async def action_list(self, user: Any, data: Any) -> Any:
        return await database_sync_to_async(self._list)(user, {} if data is None else data)

    async def action_sync(self, user: Any, data: Any) -> Any:
        since, limit = _parse_sync(data)
        return await database_sync_to_async(self._sync)(user, since, limit)

    @staticmethod
    def _sync(user: Any, since: int, limit: int) -> dict[str, Any]:
        # The latest seq first: every row up to it is then committed, and the page, read after,
        # holds all of them that it has room for.
        latest = sequence.latest([user.pk])[user.pk]
        page = history.since(user, since, limit)
        found = page["notifications"]
        # Where the client's cursor may move: past this page, or, with nothing more, to the
        # latest seq (past rows deleted since they were numbered).
        cursor = (
            found[-1]["seq"] if page["has_more"] else max([latest, since, *(n["seq"] for n in found[-1:])])
        )
        return {**page, "seq": cursor, **unread_state(user.pk)}

    @staticmethod
    def _mark_read(user: Any, ids: set[int] | None) -> dict[str, Any]:
        with transaction.atomic():
            mine = Notification.objects.for_user(user)
            if ids is not None:
                storable = [pk for pk in ids if fits_column(Notification._meta.pk, pk)]
                found = set(mine.filter(pk__in=storable).values_list("pk", flat=True))
                if missing := sorted(ids - found):
                    raise GatewayError(
                        ErrorCode.NOT_FOUND,
                        gettext("No notifications of yours with ids %(ids)s.") % {"ids": missing},
                    )
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
        found, has_more = sizes.page([row.to_wire() for row in query[: page.limit + 1]], page.limit)
        return {"notifications": found, "has_more": has_more, **unread_state(user.pk)}


class _Page(NamedTuple):
    """A list request: up to ``limit`` notifications, newest first, with ids below ``before``."""

    before: int | None
    limit: int
    unread_only: bool


#: What "list" and "sync" take, said when their data is not an object (rendered in the socket's language).
LIST_TAKES = pgettext_lazy(
    "JSON names of the protocol: kept as they are", 'list takes {"before", "limit", "unread_only"}.'
)
SYNC_TAKES = pgettext_lazy(
    "JSON names of the protocol: kept as they are", 'sync takes {"since": <the last seq you have>, "limit"}.'
)


def _fields(data: Any, takes: Promise) -> dict[str, Any]:
    """``data`` if it is an object; else ``invalid_data``, saying what the action ``takes``."""
    if not isinstance(data, dict):
        raise InvalidData(takes)
    return data


def _parse_page(data: Any) -> _Page:
    data = _fields(data, LIST_TAKES)
    before = data.get("before")
    limit = data.get("limit", gateway_settings.NOTIFICATIONS_PAGE_SIZE)
    unread_only = data.get("unread_only", False)
    if before is not None and type(before) is not int:
        raise InvalidData(
            pgettext("JSON names of the protocol: kept as they are", '"before" must be a notification id.')
        )
    _check_limit(limit)
    if not isinstance(unread_only, bool):
        raise InvalidData(
            pgettext("JSON names of the protocol: kept as they are", '"unread_only" must be true or false.')
        )
    return _Page(before, limit, unread_only)


def _check_limit(limit: Any) -> None:
    """A page's ``limit``, for ``list`` and ``sync`` alike: INVALID_DATA unless 1 to MAX_PAGE_SIZE."""
    if type(limit) is not int or not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidData(
            pgettext(
                "JSON names of the protocol: kept as they are",
                '"limit" must be an integer from 1 to %(max)d.',
            )
            % {"max": MAX_PAGE_SIZE},
        )


def _parse_sync(data: Any) -> tuple[int, int]:
    data = _fields(data, SYNC_TAKES)
    since = data.get("since")
    limit = data.get("limit", MAX_PAGE_SIZE)
    if type(since) is not int or since < 0:
        raise InvalidData(
            pgettext(
                "JSON names of the protocol: kept as they are",
                '"since" must be the seq of the last notification you have, or 0.',
            ),
        )
    _check_limit(limit)
    return since, limit


def _parse_ids(data: Any) -> list[int]:
    if not isinstance(data, list) or not all(type(item) is int for item in data):
        raise InvalidData(
            pgettext(
                "JSON names of the protocol: kept as they are", "mark_read takes a list of notification ids."
            ),
        )
    return data
