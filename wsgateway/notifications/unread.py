"""The unread state of a user: how many notifications are unread, and the category of the newest."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import connections, router

from ..models import Notification, NotificationSequence, category_tag


def unread_state(user_id: Any) -> dict[str, Any]:
    """``{"unread": N, "category": <tag of the newest unread or None>}``."""
    return unread_states([user_id])[user_id]


def connect_state(user_id: Any) -> dict[str, Any]:
    """:func:`unread_state` and the user's latest ``seq`` (see ``sequence.latest``): a connect frame.

    One statement, read on every connect: the two were a query each, and one snapshot of the
    database holds both, so the count never includes a notification past the ``seq``.
    """
    db = router.db_for_read(Notification)
    with connections[db].cursor() as cursor:
        cursor.execute(_connect_sql(cursor.db), [user_id, False, user_id, False, user_id])
        unread, newest_category, seq = cursor.fetchone()
    category = None if newest_category is None else category_tag(newest_category)
    return {"unread": unread, "category": category, "seq": seq or 0}


def unread_states(user_ids: Iterable[Any]) -> dict[Any, dict[str, Any]]:
    """:func:`unread_state` of many users, in one query."""
    return unread_states_and_stored(user_ids, [])[0]


def unread_states_and_stored(
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


def _connect_sql(db: Any) -> str:
    qn = db.ops.quote_name
    meta, sequence = Notification._meta, NotificationSequence._meta
    table, pk = qn(meta.db_table), qn(meta.pk.column)
    recipient, is_read = qn(meta.get_field("recipient").column), qn(meta.get_field("is_read").column)
    category = qn(meta.get_field("category").column)
    return (
        f"SELECT (SELECT COUNT(*) FROM {table} WHERE {recipient} = %s AND {is_read} = %s), "
        f"(SELECT {category} FROM {table} WHERE {recipient} = %s AND {is_read} = %s "
        f"ORDER BY {pk} DESC LIMIT 1), "
        f"(SELECT {qn(sequence.get_field('last').column)} FROM {qn(sequence.db_table)} "
        f"WHERE {qn(sequence.pk.column)} = %s)"
    )


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
        # One round trip for the existence check too (see pushing.push_created_notifications).
        sql += (
            f" UNION ALL SELECT NULL, NULL, NULL, {pk} FROM {table} WHERE {pk} IN ({', '.join(['%s'] * ids)})"
        )
    return sql
