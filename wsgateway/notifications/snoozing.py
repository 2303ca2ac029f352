"""Snoozed notifications coming back: what is due, and the clock that wakes them on every process.

A snoozed notification is hidden until ``snoozed_until``; then it comes back as new (unread, unseen),
a change numbered and pushed to every tab of its user like any other (:func:`wake_due`).

What fires: nothing a site must add. Every process that serves notification sockets runs one
:class:`SnoozeClock` on its event loop while it has any, which calls :func:`wake_due` every
``NOTIFICATIONS_SNOOZE_CHECK_INTERVAL`` seconds: one query of an index that holds only the snoozed
rows. Several processes may look at once: each wake is a change under the user's numbering lock that
applies only to rows still snoozed and due, so the second finds nothing and a notification comes
back once. With no socket open anywhere no push is needed; the next connect, ``list`` or ``sync``
of the user wakes what is due first (:func:`wake_user`), and ``manage.py wsgateway_prune`` wakes
everything due too, for a site that has no socket open for long.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from functools import lru_cache
from typing import Any

from channels.db import database_sync_to_async
from django.db import connections, models, router
from django.db.models import Q
from django.utils import timezone

from ..conf import gateway_settings
from ..models import Change, Notification
from .changes import change

#: Users woken per look: a backlog (the clock was stopped for a day) is worked off look by look.
USERS_PER_LOOK = 100

logger = logging.getLogger("wsgateway")


def _due() -> Q:
    return Q(snoozed_until__isnull=False, snoozed_until__lte=timezone.now(), deleted_at__isnull=True)


def wake_due(users: int = USERS_PER_LOOK) -> int:
    """Bring back every due snoozed notification of up to ``users`` users; how many came back."""
    using = router.db_for_write(Notification)
    user_ids = list(
        Notification.objects.using(using)
        .filter(_due())
        .order_by()
        .values_list("recipient_id", flat=True)
        .distinct()[:users]
    )
    return sum(change(user_id, Change.UNSNOOZED, only=_due()).changed for user_id in user_ids)


def wake_user(user_id: Any) -> int:
    """Bring back the user's due snoozed notifications (before reading the user's inbox)."""
    if not _has_due(user_id, router.db_for_read(Notification)):
        return 0  # the common case: one indexed look, no lock
    return change(user_id, Change.UNSNOOZED, only=_due()).changed


def _field(name: str) -> models.Field[Any, Any]:
    field = Notification._meta.get_field(name)
    assert isinstance(field, models.Field) and field.column
    return field


@lru_cache(maxsize=8)
def _due_sql(using: str) -> str:
    connection = connections[using]
    qn = connection.ops.quote_name
    recipient, until, deleted = (
        qn(str(_field(name).column)) for name in ("recipient", "snoozed_until", "deleted_at")
    )
    return (
        f"SELECT 1 FROM {qn(Notification._meta.db_table)} WHERE {recipient} = %s AND {until} IS NOT NULL"
        f" AND {until} <= %s AND {deleted} IS NULL {connection.ops.limit_offset_sql(0, 1)}"
    )


def due_query(user_id: Any, using: str) -> tuple[str, list[Any]]:
    """A query that finds a row when ``user_id`` has a due snoozed notification (:func:`_due`), as plain
    SQL built once, and its parameters. Every connect asks it (the notifications' snapshot, in the
    statement that reads the counts: wsgateway.notifications.unread.connect_state_and_found);
    through the ORM, building the query cost about ten times running it (1 ms against 0.1, measured
    on SQLite), in the thread every socket's database work shares (see wsgateway.reads)."""
    connection = connections[using]
    params = [
        _field("recipient").get_db_prep_value(user_id, connection),
        _field("snoozed_until").get_db_prep_value(timezone.now(), connection),
    ]
    return _due_sql(using), params


def due_among_query(user_ids: list[Any], using: str) -> tuple[str, list[Any]]:
    """:func:`due_query` for many users (the connects of a trip): a query of the recipient column,
    a row for each of ``user_ids`` with a due snoozed notification, and its parameters."""
    connection = connections[using]
    qn = connection.ops.quote_name
    recipient, until, deleted = (
        qn(str(_field(name).column)) for name in ("recipient", "snoozed_until", "deleted_at")
    )
    sql = (
        f"SELECT DISTINCT {recipient} FROM {qn(Notification._meta.db_table)}"
        f" WHERE {recipient} IN ({', '.join(['%s'] * len(user_ids))}) AND {until} IS NOT NULL"
        f" AND {until} <= %s AND {deleted} IS NULL"
    )
    params = [_field("recipient").get_db_prep_value(user_id, connection) for user_id in user_ids]
    return sql, [*params, _field("snoozed_until").get_db_prep_value(timezone.now(), connection)]


def _has_due(user_id: Any, using: str) -> bool:
    """Whether ``user_id`` has a due snoozed notification (:func:`due_query`)."""
    sql, params = due_query(user_id, using)
    with connections[using].cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone() is not None


class SnoozeClock:
    """Calls :func:`wake_due` every interval while one of this event loop's sockets is registered.

    A timer, not a sleeping task: the last socket's unregister cancels it, and nothing is left
    pending on a loop that closes.
    """

    __slots__ = ("looking", "sockets", "timer")

    def __init__(self) -> None:
        self.sockets: weakref.WeakSet[Any] = weakref.WeakSet()
        self.timer: asyncio.TimerHandle | None = None
        self.looking: asyncio.Task[None] | None = None

    def register(self, socket: Any) -> None:
        self.sockets.add(socket)
        if self.timer is None and self.looking is None:
            self._schedule()

    def unregister(self, socket: Any) -> None:
        self.sockets.discard(socket)
        if not self.sockets and self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _schedule(self) -> None:
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(gateway_settings.NOTIFICATIONS_SNOOZE_CHECK_INTERVAL, self._fire)

    def _fire(self) -> None:
        self.timer = None
        if self.sockets:
            self.looking = asyncio.get_running_loop().create_task(self.look(), name="wsgateway-snooze-clock")

    async def look(self) -> None:
        try:
            await database_sync_to_async(wake_due)()
        except Exception as exc:
            # The database is away for a moment: the next look tries again.
            logger.warning("wsgateway: snoozed notifications not woken this time: %s", exc)
        finally:
            self.looking = None
            if self.sockets:
                self._schedule()


_clocks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SnoozeClock] = weakref.WeakKeyDictionary()


def clock() -> SnoozeClock | None:
    """The running event loop's clock (one per process under daphne; one per test loop in tests);
    None outside an event loop (a service driven by a unit test)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    found = _clocks.get(loop)
    if found is None:
        found = _clocks[loop] = SnoozeClock()
    return found
