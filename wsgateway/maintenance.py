"""Maintenance mode: new sockets are told why and when to come back, and closed with 4503.

The state is one row in the database (:class:`wsgateway.models.Maintenance`), so that every process
and worker sees it, and a restart keeps it. :func:`enable`, :func:`disable` and :func:`current` are
the public API (``manage.py wsgateway_maintenance`` uses them); the consumer asks
:func:`in_effect` on each connect, which reads the row at most once per
``MAINTENANCE_CHECK_INTERVAL`` seconds per process: a connect storm costs no database work, and
``on`` and ``off`` take effect everywhere within that interval (at once in the process that
switched).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime

from channels.db import database_sync_to_async
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy

from . import metrics
from .broadcasts import close_sockets, valid_retry_after
from .codes import CloseCode, ErrorCode
from .conf import gateway_settings

logger = logging.getLogger("wsgateway")

__all__ = ["State", "current", "disable", "enable", "in_effect"]

#: What a refused client reads when the maintenance was switched on without a reason.
DEFAULT_MESSAGE = gettext_lazy("The site is down for maintenance. Please come back later.")


@dataclass(frozen=True)
class State:
    """A maintenance that is on: what refused clients are told, and since when."""

    #: What refused clients read; "" for the default message (see :func:`enable`).
    reason: str
    #: Seconds a refused client waits before it reconnects.
    retry_after: int
    since: datetime


def enable(
    reason: str | Promise = "", retry_after: int | None = None, *, close_existing: bool = False
) -> State:
    """Switch maintenance on (or change its reason and ``retry_after``); every process refuses new
    sockets within ``MAINTENANCE_CHECK_INTERVAL`` seconds.

    ``reason`` is what refused clients read, translated into a socket's language if the catalogs
    know it; none: "The site is down for maintenance. Please come back later.", translated.
    ``retry_after`` defaults to ``MAINTENANCE_RETRY_AFTER``; from 1 to :data:`MAX_RETRY_AFTER`, or
    ValueError. ``close_existing``: the sockets already open, on every process, are sent the same
    refusal and closed with 4503 too (:func:`wsgateway.broadcasts.close_sockets`); their clients come
    back after ``retry_after``, and are refused until the maintenance is off.
    """
    from .models import MAINTENANCE_ROW, Maintenance

    if retry_after is None:
        retry_after = gateway_settings.MAINTENANCE_RETRY_AFTER
    retry_after = valid_retry_after(retry_after)
    reason = str(reason).strip()
    row, _ = Maintenance.objects.update_or_create(
        pk=MAINTENANCE_ROW, defaults={"reason": reason, "retry_after": retry_after}
    )
    state = _state(row)
    _cache.remember(state)
    if close_existing:
        close_sockets(
            code=CloseCode.SERVICE_UNAVAILABLE,
            reason=state.reason or DEFAULT_MESSAGE,
            error=ErrorCode.MAINTENANCE,
            retry_after=state.retry_after,
        )
    return state


def disable() -> bool:
    """Switch maintenance off; False if it was off already. Every process accepts sockets again
    within ``MAINTENANCE_CHECK_INTERVAL`` seconds."""
    from .models import MAINTENANCE_ROW, Maintenance

    deleted, _ = Maintenance.objects.filter(pk=MAINTENANCE_ROW).delete()
    _cache.remember(None)
    return bool(deleted)


def current() -> State | None:
    """The maintenance as the database holds it now, or None when it is off. Reads the database:
    for a command or a view, not for every connect (see :func:`in_effect`)."""
    from .models import MAINTENANCE_ROW, Maintenance

    row = Maintenance.objects.filter(pk=MAINTENANCE_ROW).first()
    return _state(row) if row is not None else None


async def in_effect() -> State | None:
    """The maintenance this process knows of, read at most once per ``MAINTENANCE_CHECK_INTERVAL``."""
    return await _cache.get()


def refused(state: State) -> None:
    """Count a socket refused for ``state``, and log the first of each maintenance (the consumer)."""
    _cache.refused(state)


def forget() -> None:
    """Drop what this process knows, so that the next :func:`in_effect` reads the database (tests)."""
    _cache.read_at = None


def _state(row: object) -> State:
    return State(reason=row.reason, retry_after=row.retry_after, since=row.since)  # type: ignore[attr-defined]


class _Cache:
    """The state one process last read, and when. One read at a time: the connects that come while
    it runs wait for it rather than each starting their own."""

    def __init__(self) -> None:
        self.state: State | None = None
        #: time.monotonic() of the last read; None: never read (or forgotten).
        self.read_at: float | None = None
        self.reading: asyncio.Future[State | None] | None = None
        #: The maintenance this process last logged (since, reason): once per maintenance, not per connect.
        self.logged: tuple[datetime, str] | None = None

    def fresh(self) -> bool:
        interval = gateway_settings.MAINTENANCE_CHECK_INTERVAL
        return self.read_at is not None and time.monotonic() - self.read_at < interval

    async def get(self) -> State | None:
        if self.fresh():
            return self.state
        reading = self.reading
        # A read started on another event loop (a test's earlier loop) cannot be awaited from this one.
        if reading is None or reading.get_loop() is not asyncio.get_running_loop():
            reading = self.reading = asyncio.ensure_future(self.read())
        return await asyncio.shield(reading)

    async def read(self) -> State | None:
        try:
            state: State | None = await database_sync_to_async(current)()
        except Exception:
            # The database is down: keep what was known (the connect's own reads fail anyway), and
            # try again after the interval rather than on every connect.
            logger.exception("wsgateway: could not read the maintenance state; kept the last one known")
            state = self.state
        finally:
            self.reading = None
        self.remember(state)
        return state

    def remember(self, state: State | None) -> None:
        self.state, self.read_at = state, time.monotonic()
        if state is None and self.logged is not None:
            self.logged = None
            logger.warning("wsgateway: maintenance is off: new sockets are accepted again")

    def refused(self, state: State) -> None:
        """A socket was refused for ``state``: counted each time, logged once per maintenance."""
        metrics.increment(metrics.CONNECTIONS_MAINTENANCE)
        if self.logged != (state.since, state.reason):
            self.logged = (state.since, state.reason)
            logger.warning(
                "wsgateway: maintenance is on (since %s): new sockets are refused with 4503, "
                "retry after %d s: %s",
                state.since.isoformat(),
                state.retry_after,
                state.reason,
            )


_cache = _Cache()
