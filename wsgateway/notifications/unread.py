"""What a user's inbox counts: the unread, the unseen and the archived, the badge, and the category of
the newest unread notification. Counted among the visible ones (see :mod:`.states`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import connections, router
from django.utils import timezone

from ..conf import gateway_settings
from ..models import Notification, NotificationSequence, category_tag


def unread_state(user_id: Any) -> dict[str, Any]:
    """``{"unread": N, "category": <tag of the newest unread or None>, "counts": {...}}``; ``counts``
    has ``unread``, ``unseen`` and ``archived``, and ``badge``: one of the first two
    (``NOTIFICATIONS_BADGE``)."""
    return unread_states([user_id])[user_id]


def connect_state(user_id: Any) -> dict[str, Any]:
    """:func:`unread_state` and the user's latest number (see ``sequence.latest``): a connect frame.

    Both in one statement, so one snapshot of the database: every change counted is at or below the
    number (a number is taken under the user's lock and committed with its change), and every change
    at or below it is counted, so a client that syncs from the number is told of nothing the counts
    already hold twice, and misses nothing. One query a connect, not two.
    """
    return connect_state_and_found(user_id, None)[0]


def connect_state_and_found(user_id: Any, query: tuple[str, list[Any]] | None) -> tuple[dict[str, Any], bool]:
    """:func:`connect_state`, and whether ``query`` (SQL and its parameters: a ``SELECT`` of the same
    database, of any columns) finds a row, in the same statement: a connect's question asked in the
    round trip of the counts, not one of its own (the notifications' snapshot: whether a snoozed
    notification is due, wsgateway.notifications.snoozing.due_query). False when ``query`` is None.
    """
    with connections[router.db_for_read(Notification)].cursor() as cursor:
        sql, params = _counts_sql(cursor.db, [user_id], [])
        qn = cursor.db.ops.quote_name
        sequence = NotificationSequence._meta
        # The number as a row of its own, told apart by its NULL recipient (as the stored ids below).
        sql += (
            f" UNION ALL SELECT NULL, NULL, NULL, NULL, NULL, {qn(sequence.get_field('last').column)}"
            f" FROM {qn(sequence.db_table)} WHERE {qn(sequence.pk.column)} = %s"
        )
        params.append(user_id)
        if query is not None:
            # A row of its own when the query finds one: a NULL recipient too, and 1 where the
            # number's row has NULL. A derived table, so that the query may have its own LIMIT.
            sql += f" UNION ALL SELECT NULL, 1, NULL, NULL, NULL, NULL FROM ({query[0]}) {qn('found')}"
            params += query[1]
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    latest = next((row[-1] for row in rows if row[0] is None and row[1] is None), None)
    found = any(row[0] is None and row[1] is not None for row in rows)
    state = _states([user_id], [row for row in rows if row[0] is not None])[user_id]
    return {**state, "seq": latest or 0}, found


def connect_states_and_due(
    user_ids: list[Any], due: tuple[str, list[Any]]
) -> tuple[dict[Any, dict[str, Any]], set[Any]]:
    """:func:`connect_state` of many users (the connects of a trip), and which of them ``due`` finds, in
    one statement, one snapshot of the database for them all: ``due`` is SQL and its parameters, a
    ``SELECT`` of the notifications' recipient column (wsgateway.notifications.snoozing.due_among_query).
    """
    with connections[router.db_for_read(Notification)].cursor() as cursor:
        sql, params = _counts_sql(cursor.db, user_ids, [])
        qn = cursor.db.ops.quote_name
        sequence = NotificationSequence._meta
        recipient = qn(Notification._meta.get_field("recipient").column)
        # Each number a row of its own, told apart by its NULL counts and its number; a user due, by
        # its NULL counts, a 1 and no number. Derived tables, so that ``due`` may be any SELECT.
        sql += (
            f" UNION ALL SELECT {qn(sequence.pk.column)}, NULL, NULL, NULL, NULL,"
            f" {qn(sequence.get_field('last').column)} FROM {qn(sequence.db_table)}"
            f" WHERE {qn(sequence.pk.column)} IN ({', '.join(['%s'] * len(user_ids))})"
            f" UNION ALL SELECT {qn('due')}.{recipient}, NULL, 1, NULL, NULL, NULL"
            f" FROM ({due[0]}) {qn('due')}"
        )
        params += [*user_ids, *due[1]]
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    latest = {row[0]: row[5] for row in rows if row[1] is None and row[5] is not None}
    found = {row[0] for row in rows if row[1] is None and row[5] is None}
    states = _states(user_ids, [row for row in rows if row[1] is not None])
    return {user_id: {**state, "seq": latest.get(user_id) or 0} for user_id, state in states.items()}, found


def unread_states(user_ids: Iterable[Any]) -> dict[Any, dict[str, Any]]:
    """:func:`unread_state` of many users, in one query."""
    return unread_states_and_stored(user_ids, [])[0]


def unread_states_and_stored(
    user_ids: Iterable[Any], ids: list[int]
) -> tuple[dict[Any, dict[str, Any]], set[int]]:
    """The states of ``user_ids``, and which of the notifications ``ids`` exist, in one query.

    Plain SQL: this runs on every connect and every push, and building the
    equivalent ORM query (an aggregate with a correlated subquery) cost more
    than running it.
    """
    user_ids = list(user_ids)
    if not user_ids:
        return {}, set()
    with connections[router.db_for_read(Notification)].cursor() as cursor:
        sql, params = _counts_sql(cursor.db, user_ids, ids)
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    stored = {row[-1] for row in rows if row[0] is None}
    return _states(user_ids, [row for row in rows if row[0] is not None]), stored


def _states(user_ids: list[Any], rows: list[tuple[Any, ...]]) -> dict[Any, dict[str, Any]]:
    badge = gateway_settings.NOTIFICATIONS_BADGE
    states = {user_id: _state(0, 0, 0, None, badge) for user_id in user_ids}
    for recipient_id, unread, unseen, archived, newest_category, _stored in rows:
        states[recipient_id] = _state(unread or 0, unseen or 0, archived or 0, newest_category, badge)
    return states


def _state(unread: int, unseen: int, archived: int, category: int | None, badge: str) -> dict[str, Any]:
    counts = {"unread": unread, "unseen": unseen, "archived": archived}
    return {
        "unread": unread,
        "category": None if category is None or not unread else category_tag(category),
        "counts": {**counts, "badge": counts.get(badge, unread)},
    }


def _counts_sql(db: Any, user_ids: list[Any], ids: list[int]) -> tuple[str, list[Any]]:
    qn = db.ops.quote_name
    meta = Notification._meta
    table, pk = qn(meta.db_table), qn(meta.pk.column)
    col = {
        name: qn(meta.get_field(name).column)  # type: ignore[union-attr]
        for name in (
            "recipient",
            "is_read",
            "category",
            "seen_at",
            "archived_at",
            "deleted_at",
            "snoozed_until",
            "expires_at",
        )
    }
    now = db.ops.adapt_datetimefield_value(timezone.now())

    def visible(alias: str) -> str:
        return (
            f"{alias}.{col['deleted_at']} IS NULL AND {alias}.{col['snoozed_until']} IS NULL "
            f"AND ({alias}.{col['expires_at']} IS NULL OR {alias}.{col['expires_at']} > %s)"
        )

    inbox_unread = f"n.{col['archived_at']} IS NULL AND n.{col['is_read']} = %s"
    sql = (
        f"SELECT n.{col['recipient']}, "
        f"SUM(CASE WHEN {inbox_unread} THEN 1 ELSE 0 END), "
        f"SUM(CASE WHEN {inbox_unread} AND n.{col['seen_at']} IS NULL THEN 1 ELSE 0 END), "
        f"SUM(CASE WHEN n.{col['archived_at']} IS NOT NULL THEN 1 ELSE 0 END), "
        f"(SELECT m.{col['category']} FROM {table} m WHERE m.{col['recipient']} = n.{col['recipient']} "
        f"AND m.{col['is_read']} = %s AND m.{col['archived_at']} IS NULL AND {visible('m')} "
        f"ORDER BY m.{pk} DESC LIMIT 1), NULL "
        f"FROM {table} n WHERE n.{col['recipient']} IN ({', '.join(['%s'] * len(user_ids))}) "
        f"AND {visible('n')} GROUP BY n.{col['recipient']}"
    )
    params: list[Any] = [False, False, False, now, *user_ids, now]
    if ids:
        # One round trip for the existence check too (see pushing.push_created_notifications).
        sql += (
            f" UNION ALL SELECT NULL, NULL, NULL, NULL, NULL, {pk} FROM {table} "
            f"WHERE {pk} IN ({', '.join(['%s'] * len(ids))})"
        )
        params += ids
    return sql, params
