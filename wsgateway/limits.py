"""Inbound rate limits: a token bucket per socket, and one per user shared by that user's sockets.

A bucket holds at most ``burst`` tokens and gains ``rate`` a second; a client frame takes one
token from its socket's bucket and one from its user's, or is refused (``rate_limited``) without
being parsed for anything but its channel and id. The clock is :func:`time.monotonic`, or any
callable a test passes.

The user's bucket is per process: two daphnes each give a user ``USER_RATE_LIMIT``. It lives as
long as one of the user's sockets on this process holds it (a weak mapping), so a user with no
socket left costs nothing.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Hashable

Clock = Callable[[], float]


class TokenBucket:
    """``burst`` tokens at most, refilled at ``rate`` tokens a second; starts full."""

    __slots__ = ("__weakref__", "burst", "clock", "rate", "tokens", "updated")

    def __init__(self, rate: float, burst: float, clock: Clock = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.clock = clock
        self.updated = clock()

    def refill(self) -> float:
        """The tokens now, after adding what the time since the last refill earned."""
        now = self.clock()
        if now > self.updated:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        return self.tokens

    def wait(self) -> float:
        """Seconds until one token is there (0 when one is there now); call after :meth:`refill`."""
        return max(0.0, (1 - self.tokens) / self.rate)


def take(*buckets: TokenBucket) -> float:
    """Take one token from every bucket, or from none: 0.0 when taken, else the seconds to wait
    until every bucket has one."""
    for bucket in buckets:
        bucket.refill()
    wait = max(bucket.wait() for bucket in buckets)
    if wait == 0.0:
        for bucket in buckets:
            bucket.tokens -= 1
    return wait


class SharedBuckets:
    """One bucket per key (a user's pk), shared by whoever holds it, gone once nobody does."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self.buckets: weakref.WeakValueDictionary[Hashable, TokenBucket] = weakref.WeakValueDictionary()

    def get(self, key: Hashable, rate: float, burst: float) -> TokenBucket:
        """The key's bucket; the caller keeps a reference for as long as it should live."""
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = TokenBucket(rate, burst, self.clock)
        else:  # the settings may have changed since it was made (override_settings in tests)
            bucket.rate, bucket.burst = rate, burst
        return bucket


#: The per-user buckets of this process.
user_buckets = SharedBuckets()
