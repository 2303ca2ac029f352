"""Each user's notifications are numbered 1, 2, 3, ...: ``Notification.seq``, the client's cursor.

Why not the primary key: ids drawn from one sequence by concurrent transactions can commit out of
order (101 becomes visible after 102), so a client that has seen 102 and asks for "after 102" would
never get 101. A per-user number taken under a per-user lock cannot: the number is taken by an
upsert of the user's row in :class:`~wsgateway.models.NotificationSequence`, which locks that row
(PostgreSQL) or the database (SQLite) until the transaction ends, so the next number of the same
user is taken, inserted and committed after this one. Numbers of a rolled-back transaction are
given back with it. Rows of different users never wait for each other on PostgreSQL.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from itertools import islice
from typing import Any

from django.db import connections, router, transaction

from ..models import Notification, NotificationSequence

#: Users per upsert statement.
CHUNK = 500


def assign(notifications: Iterable[Notification], using: str) -> None:
    """Give each notification without a ``seq`` the next numbers of its recipient, in order.

    Must run inside the transaction that inserts them (it raises otherwise): the lock it takes is
    what keeps the numbers in commit order.
    """
    pending = [n for n in notifications if n.seq is None]
    if not pending:
        return
    if not transaction.get_connection(using).in_atomic_block:
        raise RuntimeError("wsgateway: notification numbers are taken inside the inserting transaction")
    counts = Counter(n.recipient_id for n in pending)
    last = reserve(counts, using)
    first = {user_id: last[user_id] - count + 1 for user_id, count in counts.items()}
    for notification in pending:
        notification.seq = first[notification.recipient_id]
        first[notification.recipient_id] += 1


def reserve(counts: dict[Any, int], using: str) -> dict[Any, int]:
    """Add ``counts[user_id]`` to each user's last number and return the new last numbers.

    Users are locked in ascending order, so two transactions that number overlapping sets of
    users never wait for each other in a circle.
    """
    user_ids = sorted(counts)
    connection = connections[using]
    if connection.vendor not in ("postgresql", "sqlite"):
        return _reserve_with_orm(counts, user_ids, using)
    qn = connection.ops.quote_name
    meta = NotificationSequence._meta
    table, user, last = qn(meta.db_table), qn(meta.pk.attname), qn(meta.get_field("last").attname)
    result: dict[Any, int] = {}
    iterator = iter(user_ids)
    with connection.cursor() as cursor:
        while chunk := list(islice(iterator, CHUNK)):
            cursor.execute(
                f"INSERT INTO {table} ({user}, {last}) VALUES {', '.join(['(%s, %s)'] * len(chunk))} "
                f"ON CONFLICT ({user}) DO UPDATE SET {last} = {table}.{last} + excluded.{last} "
                f"RETURNING {user}, {last}",
                [value for user_id in chunk for value in (user_id, counts[user_id])],
            )
            result.update(cursor.fetchall())
    return result


def _reserve_with_orm(counts: dict[Any, int], user_ids: list[Any], using: str) -> dict[Any, int]:
    # Any other database: three statements instead of one, the row lock by SELECT ... FOR UPDATE.
    manager = NotificationSequence.objects.using(using)
    manager.bulk_create(
        [NotificationSequence(user_id=user_id) for user_id in user_ids], ignore_conflicts=True
    )
    rows = list(manager.select_for_update().filter(user_id__in=user_ids).order_by("user_id"))
    for row in rows:
        row.last += counts[row.user_id]
    manager.bulk_update(rows, ["last"])
    return {row.user_id: row.last for row in rows}


def latest(user_ids: Iterable[Any]) -> dict[Any, int]:
    """Each user's last committed number (0 for a user with none): every notification up to it is
    committed or deleted, so a client at this number has everything."""
    user_ids = list(user_ids)
    found = dict(
        NotificationSequence.objects.using(router.db_for_read(NotificationSequence))
        .filter(user_id__in=user_ids)
        .values_list("user_id", "last")
    )
    return {user_id: found.get(user_id, 0) for user_id in user_ids}
