"""The "notifications" channel's service: the counts on connect, the states' actions, the list, sync.

It maps each action to a call of the domain (:mod:`wsgateway.notifications`): the states, their
numbering, the pushes and the snooze clock are the domain's, not the service's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from channels.db import database_sync_to_async
from django.db import router
from django.db.models import Q
from django.utils import timezone
from django.utils.functional import Promise
from django.utils.translation import gettext, pgettext, pgettext_lazy

from .. import metrics
from ..bounds import MAX_PAGE_SIZE
from ..codes import ErrorCode
from ..conf import gateway_settings
from ..exceptions import GatewayError, InvalidData
from ..models import Change, Notification
from ..notifications import CHANNEL, history, sequence, sizes, snoozing, unread_state
from ..notifications.changes import MAX_IDS, NotFound, change
from ..notifications.states import VIEWS, view, visible
from ..notifications.unread import connect_state, connect_state_and_found, connect_states_and_due
from .base import ActionService, Connection, Service

#: Latest time a notification may be snoozed until, from now.
MAX_SNOOZE = timedelta(days=366)

#: Most pushes a socket may have been sent ahead of a gap before its record of them is dropped
#: (the next resync then resends a little more, and the client drops what it has).
MAX_AHEAD = 1000
#: What ``ahead`` is without a gap, which is nearly always: shared, where an empty set per socket
#: would cost every socket 216 bytes.
NOTHING_AHEAD: frozenset[int] = frozenset()


class NotifierService(ActionService):
    __slots__ = ("ahead", "delivered")

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
        # What is due comes back before the counts are read. Whether anything is due is asked in the
        # statement of the counts (one query a connect less): only when it is (rare) is it woken, and
        # the counts it changed read again.
        using = router.db_for_read(Notification)
        state, due = connect_state_and_found(user.pk, snoozing.due_query(user.pk, using))
        if due:
            snoozing.wake_user(user.pk)
            state = connect_state(user.pk)
        return self._caught_up(user, state)

    @classmethod
    def snapshots(cls, sockets: Sequence[tuple[Service, Any]]) -> list[Any]:
        # The connects of a trip: their users' counts, numbers and whether a snooze is due, in one
        # statement; then as snapshot() does for each user due (rare), and for each socket.
        using = router.db_for_read(Notification)
        user_ids = list(dict.fromkeys(user.pk for _, user in sockets))
        states, due = connect_states_and_due(user_ids, snoozing.due_among_query(user_ids, using))
        for user_id in due:
            snoozing.wake_user(user_id)
            states[user_id] = connect_state(user_id)
        payloads = []
        for service, user in sockets:
            assert isinstance(service, NotifierService)
            state = states[user.pk]  # each socket its own copy: a user may have two in the trip
            payloads.append(service._caught_up(user, {**state, "counts": dict(state["counts"])}))
        return payloads

    def _caught_up(self, user: Any, state: dict[str, Any]) -> dict[str, Any]:
        """``state``, with what a resync missed when this socket had been sent some already."""
        if self.delivered is not None and self.delivered < state["seq"]:
            # A resync: what this socket was not sent while the layer was down or its queue was full.
            page = history.since(user, self.delivered, MAX_PAGE_SIZE)
            state["missed"], state["has_more"] = page["notifications"], page["has_more"]
            metrics.increment(metrics.CATCHUP_RESYNC)
        return state

    def connect_frame_sent(self, payload: Any) -> None:
        if (clock := snoozing.clock()) is not None:
            clock.register(self)
        missed = payload.get("missed")
        # With more to come, the client pages on with "sync"; the next resync starts after this page.
        self.delivered = missed[-1]["seq"] if missed and payload.get("has_more") else payload["seq"]
        self.ahead = {seq for seq in self.ahead if seq > self.delivered} or NOTHING_AHEAD

    async def on_disconnect(self, user: Any) -> None:
        if (clock := snoozing.clock()) is not None:
            clock.unregister(self)

    def push_sent(self, seq: int, first_seq: int | None = None) -> None:
        first = seq if first_seq is None else first_seq
        if self.delivered is None or seq <= self.delivered:
            return  # before the connect frame (which covers it), or a notification saved again
        if first <= self.delivered + 1 and not self.ahead:
            self.delivered = seq  # the next ones, with no gap before them
            return
        ahead = self.ahead if isinstance(self.ahead, set) else set()
        if seq - first >= MAX_AHEAD:
            self.ahead = NOTHING_AHEAD  # too many to keep: the next resync resends a little more
            return
        ahead.update(range(max(first, self.delivered + 1), seq + 1))
        while self.delivered + 1 in ahead:
            self.delivered += 1
            ahead.discard(self.delivered)
        self.ahead = ahead if ahead and len(ahead) <= MAX_AHEAD else NOTHING_AHEAD

    # -- the states, one notification or a few ----------------------------------------------

    async def action_mark_read(self, user: Any, data: Any) -> Any:
        return await self._change(user, Change.READ, _parse_ids(data, "mark_read"))

    async def action_mark_unread(self, user: Any, data: Any) -> Any:
        return await self._change(user, Change.UNREAD, _parse_ids(data, "mark_unread"))

    async def action_mark_seen(self, user: Any, data: Any) -> Any:
        return await self._change(user, Change.SEEN, _parse_ids(data, "mark_seen"))

    async def action_archive(self, user: Any, data: Any) -> Any:
        return await self._change(user, Change.ARCHIVED, _parse_ids(data, "archive"))

    async def action_unarchive(self, user: Any, data: Any) -> Any:
        return await self._change(user, Change.UNARCHIVED, _parse_ids(data, "unarchive"))

    async def action_delete(self, user: Any, data: Any) -> Any:
        return await self._change(user, Change.DELETED, _parse_ids(data, "delete"))

    async def action_snooze(self, user: Any, data: Any) -> Any:
        ids, until = _parse_snooze(data)
        return await self._change(user, Change.SNOOZED, ids, until=until)

    async def action_unsnooze(self, user: Any, data: Any) -> Any:
        return await self._change(user, Change.UNSNOOZED, _parse_ids(data, "unsnooze"))

    # -- the bulk forms: bounded work per call, "has_more" while some are left -----------------

    async def action_mark_all_read(self, user: Any, data: Any) -> Any:
        return await self._bulk(user, Change.READ, lambda now: visible(now))

    async def action_mark_all_seen(self, user: Any, data: Any) -> Any:
        return await self._bulk(user, Change.SEEN, lambda now: visible(now))

    async def action_archive_all_read(self, user: Any, data: Any) -> Any:
        return await self._bulk(user, Change.ARCHIVED, lambda now: visible(now) & Q(is_read=True))

    async def _change(
        self, user: Any, kind: Change, ids: list[int], *, until: datetime | None = None
    ) -> dict[str, Any]:
        state: dict[str, Any] = await database_sync_to_async(_changed)(user, kind, ids, until)
        return state

    async def _bulk(self, user: Any, kind: Change, only: Callable[[datetime], Q]) -> dict[str, Any]:
        state: dict[str, Any] = await database_sync_to_async(_changed_all)(user, kind, only(timezone.now()))
        return state

    # -- reading ---------------------------------------------------------------------------

    async def action_list(self, user: Any, data: Any) -> Any:
        return await database_sync_to_async(self._list)(user, {} if data is None else data)

    async def action_sync(self, user: Any, data: Any) -> Any:
        since, limit, changes = _parse_sync(data)
        page = await database_sync_to_async(self._sync)(user, since, limit, changes)
        metrics.increment(metrics.CATCHUP_SYNC)  # served: bad data raised before it
        return page

    @staticmethod
    def _sync(user: Any, since: int, limit: int, changes: bool) -> dict[str, Any]:
        snoozing.wake_user(user.pk)
        # The latest number first: every row up to it is then committed, and the page, read after,
        # holds all of them that it has room for.
        latest = sequence.latest([user.pk])[user.pk]
        if changes:
            page = history.changes_since(user, since, limit)
            found, key = page["changes"], "version"
            # After the page: a prune that took a row the page lacks has marked it by then.
            if since < sequence.pruned(user.pk):
                return {
                    "changes": [],
                    "has_more": False,
                    "reset": True,
                    "seq": latest,
                    **unread_state(user.pk),
                }
        else:
            page = history.since(user, since, limit)
            found, key = page["notifications"], "seq"
        # Where the client's cursor may move: past this page, or, with nothing more, to the
        # latest number (past rows deleted, and changes numbered, since).
        cursor = found[-1][key] if page["has_more"] else max([latest, since, *(n[key] for n in found[-1:])])
        return {**page, "seq": cursor, **unread_state(user.pk)}

    @staticmethod
    def _list(user: Any, data: Any) -> dict[str, Any]:
        page = _parse_page(data)
        snoozing.wake_user(user.pk)
        query = (
            Notification.objects.for_user(user)
            .filter(view(page.view, timezone.now()))
            .select_related("created_by", "changed_by")
            .order_by("-id")
        )
        if page.before is not None:
            query = query.filter(pk__lt=page.before)
        found, has_more = sizes.page([row.to_wire() for row in query[: page.limit + 1]], page.limit)
        return {"notifications": found, "has_more": has_more, **unread_state(user.pk)}


def _changed(user: Any, kind: Change, ids: list[int], until: datetime | None) -> dict[str, Any]:
    try:
        change(user, kind, ids, until=until, actor=user)
    except NotFound as exc:
        raise GatewayError(
            ErrorCode.NOT_FOUND,
            gettext("No notifications of yours with ids %(ids)s.") % {"ids": exc.ids},
        ) from None
    return unread_state(user.pk)


def _changed_all(user: Any, kind: Change, only: Q) -> dict[str, Any]:
    outcome = change(user, kind, only=only, actor=user)
    return {**unread_state(user.pk), "changed": outcome.changed, "has_more": outcome.has_more}


class _Page(NamedTuple):
    """A list request: up to ``limit`` notifications, newest first, with ids below ``before``."""

    before: int | None
    limit: int
    view: str


#: What "list" and "sync" take, said when their data is not an object (rendered in the socket's language).
LIST_TAKES = pgettext_lazy(
    "JSON names of the protocol: kept as they are", 'list takes {"before", "limit", "view", "unread_only"}.'
)
SYNC_TAKES = pgettext_lazy(
    "JSON names of the protocol: kept as they are",
    'sync takes {"since": <the last seq you have>, "limit", "changes"}.',
)
SNOOZE_TAKES = pgettext_lazy(
    "JSON names of the protocol: kept as they are",
    'snooze takes {"ids": [notification ids], "until": <an ISO 8601 time with its offset, in the future>}.',
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
    chosen = data.get("view", "unread" if unread_only is True else "all")
    if before is not None and type(before) is not int:
        raise InvalidData(
            pgettext("JSON names of the protocol: kept as they are", '"before" must be a notification id.')
        )
    _check_limit(limit)
    if not isinstance(unread_only, bool):
        raise InvalidData(
            pgettext("JSON names of the protocol: kept as they are", '"unread_only" must be true or false.')
        )
    if chosen not in VIEWS:
        raise InvalidData(
            pgettext(
                "JSON names of the protocol: kept as they are",
                '"view" must be "all", "unread" or "archived".',
            )
        )
    return _Page(before, limit, chosen)


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


def _parse_sync(data: Any) -> tuple[int, int, bool]:
    data = _fields(data, SYNC_TAKES)
    since = data.get("since")
    limit = data.get("limit", MAX_PAGE_SIZE)
    changes = data.get("changes", False)
    if not isinstance(changes, bool):
        raise InvalidData(
            pgettext("JSON names of the protocol: kept as they are", '"changes" must be true or false.')
        )
    if type(since) is not int or since < 0:
        raise InvalidData(
            pgettext(
                "JSON names of the protocol: kept as they are",
                '"since" must be the seq of the last notification you have, or 0.',
            ),
        )
    _check_limit(limit)
    return since, limit, changes


def _parse_ids(data: Any, action: str) -> list[int]:
    """A list of at most MAX_IDS notification ids, else ``invalid_data``."""
    if not isinstance(data, list) or len(data) > MAX_IDS or not all(type(item) is int for item in data):
        raise InvalidData(
            pgettext(
                "JSON names of the protocol: kept as they are",
                "%(action)s takes a list of at most %(most)d notification ids.",
            )
            % {"action": action, "most": MAX_IDS},
        )
    return list(dict.fromkeys(data))


def _parse_snooze(data: Any) -> tuple[list[int], datetime]:
    data = _fields(data, SNOOZE_TAKES)
    ids = _parse_ids(data.get("ids"), "snooze")
    until = data.get("until")
    try:
        when = datetime.fromisoformat(until) if isinstance(until, str) and len(until) <= 64 else None
    except ValueError:
        when = None
    now = timezone.now()
    if when is None or when.tzinfo is None or not now < when <= now + MAX_SNOOZE:
        raise InvalidData(
            pgettext(
                "JSON names of the protocol: kept as they are",
                '"until" must be an ISO 8601 time with its offset, in the future, '
                "at most %(days)d days ahead.",
            )
            % {"days": MAX_SNOOZE.days},
        )
    return ids, when
