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
from contextlib import contextmanager
from typing import Any

from django.db import connection, transaction

_STRIPES = [threading.Lock() for _ in range(64)]
_ADVISORY_NAMESPACE = 0x5753  # "WS": keeps our advisory keys apart from a site's own


@contextmanager
def user_push_lock(user_id: Any) -> Iterator[None]:
    key = zlib.crc32(str(user_id).encode())
    with _STRIPES[key % len(_STRIPES)]:
        if connection.vendor == "postgresql":
            with transaction.atomic():
                with connection.cursor() as cursor:
                    # Released at commit, after the push has been handed to the layer.
                    cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_ADVISORY_NAMESPACE, key - 2**31])
                yield
        else:
            yield
