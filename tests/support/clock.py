"""Clocks for the tests that wait for an expiry: a fake one a test moves, and the real one.

A layer of this process measures ``expiry`` and ``group_expiry`` on a clock it is given
(``wsgateway.layers.base.LocalDeliveryLayer``); a test that gives it a :class:`FakeClock` moves
time on with ``await clock.sleep(seconds)`` and does not wait. Redis keeps time on its own, so a
test on a Redis layer gets the :class:`RealClock`, whose ``sleep`` sleeps.
"""

from __future__ import annotations

import asyncio
import time


class FakeClock:
    """Seconds that pass only when a test says so; ``start`` defaults to the wall clock's now, so the
    same clock stands in for ``time.time`` (Channels' in-memory layer) and ``time.monotonic``."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def time(self) -> float:
        """``time.time``'s name, for a module that calls it through ``time``."""
        return self.now

    async def sleep(self, seconds: float) -> None:
        """Move on ``seconds``, and let the event loop run what was waiting (as a real sleep would)."""
        self.now += seconds
        await asyncio.sleep(0)


class RealClock:
    """The real monotonic clock, and a real sleep: for layers whose expiry is another process's."""

    def __call__(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


Clock = FakeClock | RealClock
