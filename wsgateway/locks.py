"""A per-user lock that orders "read the unread count, then push it".

Two writers that count and push concurrently can have their pushes arrive in
the opposite order to their counts, leaving a socket with a stale count. Holding
this lock from the count until the push is on the channel layer makes the order
of pushes the order of counts, across threads and, on PostgreSQL, processes.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from django.db import connection

_STRIPES = [threading.Lock() for _ in range(64)]
_ADVISORY_NAMESPACE = 0x5753  # "WS": keeps our advisory keys apart from a site's own


@contextmanager
def user_push_lock(user_ids: Any) -> Iterator[None]:
    """Hold the lock of one user, or of each of an iterable of users.

    Users share stripes (64 of them), so a batch for any number of users takes
    at most 64 locks, always in the same order, which rules out deadlocks.
    """
    if isinstance(user_ids, (str, int)):
        user_ids = [user_ids]
    stripes = sorted({zlib.crc32(str(user_id).encode()) % len(_STRIPES) for user_id in user_ids})
    with ExitStack() as held:
        for stripe in stripes:
            held.enter_context(_STRIPES[stripe])
        if connection.vendor != "postgresql":
            yield
        elif connection.in_atomic_block:
            # Released at commit, after the push has been handed to the layer.
            with connection.cursor() as cursor:
                for stripe in stripes:
                    cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_ADVISORY_NAMESPACE, stripe])
            yield
        else:
            # In autocommit (a commit hook, the usual case) a session lock spares the
            # BEGIN and COMMIT around the count: two round trips of every push.
            with connection.cursor() as cursor:
                for stripe in stripes:
                    cursor.execute("SELECT pg_advisory_lock(%s, %s)", [_ADVISORY_NAMESPACE, stripe])
                try:
                    yield
                finally:
                    for stripe in reversed(stripes):
                        cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [_ADVISORY_NAMESPACE, stripe])
