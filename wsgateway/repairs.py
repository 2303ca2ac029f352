"""Pushes that failed, repaired: the users whose sockets missed a push are told to catch up.

A push that fails leaves its rows stored and its users' sockets behind. An outage the watchdog sees
is repaired by its resync of the sockets it serves. A failure it does not see was repaired only by the
user's next push (a socket past a gap in ``seq`` asks for the rest) or next connect: a Redis blip
between two probes, a full pool of connections (``LayerBusy``, back-pressure, which is no outage),
or a push from a worker whose layer failed while the sockets' processes saw nothing.

So the users of a failed push are kept here, and once this process's layer takes a send again (its
next successful push, or the watchdog's next probe that passes, within ``PROBE_INTERVAL``) each
user's group gets one :data:`~wsgateway.events.RESYNC`: every socket of the user, on any process,
catches up from the database as after an overflow (the ``{"resync": true}`` frame, then the
on-connect frames with what it missed). A user is kept once however many of its pushes failed.

Bounded: at most ``WSGATEWAY["MAX_PENDING_REPAIRS"]`` users a process (10,000 by default). Past that
a user is counted (``push.unrepaired``) and logged once until the set empties; its sockets catch up on
their next push or connect, as before this module.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

from . import events, metrics
from .conf import gateway_settings
from .groups import asend_to_groups, send_to_groups, user_group

logger = logging.getLogger("wsgateway")


class PendingRepairs:
    """The users whose pushes failed and whose sockets have not been told yet, in order, each once.

    Shared by every thread of the process (a view's notify() runs in a worker thread, the watchdog in
    the event loop), hence the lock; each method holds it for a dict operation or a copy.
    """

    __slots__ = ("_full", "_limit", "_lock", "_users")

    def __init__(self, limit: int | None = None) -> None:
        #: None: the setting's, read at each add (override_settings changes it for a test).
        self._limit = limit
        self._users: dict[Any, None] = {}
        self._lock = threading.Lock()
        #: Whether a user was turned away since the set was last empty (logged once per episode).
        self._full = False

    @property
    def limit(self) -> int:
        """Users kept at most: the one given, else ``MAX_PENDING_REPAIRS``."""
        return gateway_settings.MAX_PENDING_REPAIRS if self._limit is None else self._limit

    def __len__(self) -> int:
        return len(self._users)

    def add(self, user_ids: Iterable[Any]) -> int:
        """Keep ``user_ids``; return how many new ones did not fit."""
        refused = 0
        limit = self.limit
        with self._lock:
            for user_id in user_ids:
                if user_id in self._users:
                    continue
                if len(self._users) >= limit:
                    refused += 1
                else:
                    self._users[user_id] = None
            first = refused and not self._full
            if refused:
                self._full = True
        if refused:
            metrics.increment(metrics.PUSH_UNREPAIRED, refused)
        if first:
            logger.warning(
                "wsgateway: %d user(s) past the %d whose failed pushes wait for repair: their sockets "
                "catch up on their next push or connect",
                refused,
                limit,
            )
        return refused

    def take(self) -> list[Any]:
        """Every user kept, in the order kept; the set is empty after."""
        with self._lock:
            users = list(self._users)
            self._users.clear()
            self._full = False
        return users


#: This process's users waiting for repair.
PENDING = PendingRepairs()


def push_failed(user_ids: Iterable[Any]) -> None:
    """The pushes to ``user_ids`` failed: repair them once the layer takes a send again."""
    PENDING.add(user_ids)


def _resync_items(users: list[Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(user_group(user_id), {"type": events.RESYNC}) for user_id in users]


def repair() -> int:
    """From sync code, after a send went through: tell the users kept to catch up. Returns how many
    were told; a send that fails keeps them for the next time (and raises nothing)."""
    users = PENDING.take() if PENDING else []
    if not users:
        return 0
    try:
        send_to_groups(_resync_items(users))
    except Exception as exc:
        return _kept(users, exc)
    return _told(users)


async def arepair() -> int:
    """:func:`repair` from async code (the watchdog, after a probe that passed)."""
    users = PENDING.take() if PENDING else []
    if not users:
        return 0
    try:
        await asend_to_groups(_resync_items(users))
    except Exception as exc:
        return _kept(users, exc)
    return _told(users)


def _kept(users: list[Any], exc: Exception) -> int:
    PENDING.add(users)
    logger.debug("wsgateway: repairs wait, the layer failed again: %r", exc)
    return 0


def _told(users: list[Any]) -> int:
    metrics.increment(metrics.PUSH_REPAIRED, len(users))
    return len(users)
