"""Inbound rate limits: a token bucket per socket, and one per user shared by that user's sockets.

A bucket holds at most ``burst`` tokens and gains ``rate`` a second; a client frame takes one
token from its socket's bucket and one from its user's, or is refused (``rate_limited``) before it
is decoded: a flood costs a bucket's arithmetic per frame, and an answer for the few refusals that
are answered (the consumer reads a refused frame of at most 1 KiB for the channel and id the answer
echoes). The clock is :func:`time.monotonic`, or any callable a test passes.

:class:`InboundLimiter` is one socket's share of them, made on its first frame.

A user whose socket was closed 4429 is refused new sockets for ``RATE_LIMIT_COOLDOWN`` seconds
(:func:`start_cooldown`), on every process where the channel layer has the ``cooldown`` extension
(wsgateway's Redis layer: a key, asked in the same round trip as the cap), in this process otherwise:
without it, a client that reconnects on each 4429 makes every close a new handshake and a new burst.
This process also remembers the handshake credentials of a user cooling down, so that a reconnect
with the same ones is refused before authentication (:func:`cooldown_before_auth`).

The user's bucket is per process: two daphnes each give a user ``USER_RATE_LIMIT``. It lives as
long as one of the user's sockets on this process holds it (a weak mapping), so a user with no
socket left costs nothing.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import logging
import math
import time
import weakref
from collections.abc import Callable, Hashable
from typing import Any

from . import metrics
from .conf import gateway_settings
from .layers.base import LocalCooldowns
from .layers.extensions import COOLDOWN, supports
from .scope import Scope, header

logger = logging.getLogger("wsgateway")

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


class Refusal(enum.Enum):
    """What to do with a frame over the limits."""

    #: Answer it ``rate_limited``.
    ANSWER = "answer"
    #: Close the socket with 4429: over ``RATE_LIMIT_CLOSE_AFTER`` refused in a minute.
    CLOSE = "close"


class InboundLimiter:
    """One socket's inbound limits: its bucket, its user's (shared), and its refusals.

    A client frame takes a token from both buckets, or is refused. ``close_after`` refusals a minute
    are answered; the next closes the socket. That bounds what a flood costs: every frame past the
    limits costs a bucket's arithmetic and nothing else, and the answers are few.

    The server's own requests (wsgateway.answering) are the exception: their answers are the
    server's doing, not the client's, so each request passed on to the client lets one frame through
    whatever the buckets say (:meth:`expect_answer`), and an answer that took tokens gives them back
    (:meth:`answered`). A client gains nothing beyond what it was asked: one frame per request.
    """

    __slots__ = ("answers", "free", "refusals", "socket", "user")

    def __init__(
        self, socket: TokenBucket, user: TokenBucket, close_after: int, clock: Clock = time.monotonic
    ) -> None:
        self.socket = socket
        self.user = user
        self.refusals = TokenBucket(close_after / 60, close_after, clock)
        #: Answers owed: requests passed on to the client, not yet matched by a frame let through.
        self.answers = 0
        #: Whether the last frame admitted was let through on an answer owed (it took no token).
        self.free = False

    @classmethod
    def for_user(cls, user_key: Hashable) -> InboundLimiter:
        """The limiter of a socket of ``user_key``, with the settings as they are now."""
        settings = gateway_settings
        return cls(
            TokenBucket(settings.RATE_LIMIT, settings.RATE_BURST),
            user_buckets.get(user_key, settings.USER_RATE_LIMIT, settings.USER_RATE_BURST),
            settings.RATE_LIMIT_CLOSE_AFTER,
        )

    def admit(self, waiting: int, *, ack: bool | Callable[[], bool] = False) -> float:
        """0.0 when a frame may go on, else the seconds the client should wait before the next.

        Asked before the frame is decoded. The buckets first: with no token, the frame is refused
        whatever it is (acknowledgements too), and nothing of it is read. ``waiting``: the frames
        read and not yet handled. At most a burst wait: a client that sends faster than its frames
        are handled is refused, not queued. An acknowledgement is not held to that (it never waits
        for a turn, and a send may be waiting for exactly it); ``ack`` says whether the frame is
        one, and is called only then, when it matters: the caller decodes a small frame to tell.
        """
        for bucket in (self.socket, self.user):
            bucket.refill()
        wait = max(self.socket.wait(), self.user.wait())
        if not wait and waiting >= self.socket.burst and not (ack() if callable(ack) else ack):
            wait = 1 / self.socket.rate
        # An answer owed lets one frame through whatever the limits say (see expect_answer).
        self.free = bool(wait) and self.answers > 0
        if self.free:
            self.answers -= 1
            return 0.0
        return wait or take(self.socket, self.user)

    def expect_answer(self, most: int) -> None:
        """A request was passed on to the client: one more frame may come over the limits (at most
        ``most`` owed, the most requests a socket holds)."""
        self.answers = min(self.answers + 1, most)

    def answered(self) -> None:
        """The frame admitted last answers a request the socket holds: if it took tokens, they are
        given back, against one answer owed."""
        if self.free or not self.answers:
            return
        self.answers -= 1
        for bucket in (self.socket, self.user):
            bucket.tokens = min(bucket.burst, bucket.tokens + 1)

    def refuse(self, user_id: Any) -> Refusal:
        """One more frame of a socket of ``user_id`` refused: answer it, or close. Counted, and
        logged once an episode (the first refusal after a quiet minute) and at the close."""
        metrics.increment(metrics.INBOUND_RATE_LIMITED)
        first = self.refusals.refill() >= self.refusals.burst
        if take(self.refusals):
            metrics.increment(metrics.INBOUND_CLOSED)
            logger.warning(
                "wsgateway: closed the socket of user %r with 4429: over %d frames refused in a minute; "
                "its new sockets are refused for %d s (RATE_LIMIT_COOLDOWN)",
                user_id,
                int(self.refusals.burst),
                gateway_settings.RATE_LIMIT_COOLDOWN,
            )
            return Refusal.CLOSE
        if first:
            logger.info("wsgateway: rate-limited the socket of user %r", user_id)
        return Refusal.ANSWER


# -- the cool-down after a 4429 -------------------------------------------------------------------

#: This process's memory of who is cooling down: ``("user", pk)`` for a layer without the ``cooldown``
#: extension (the only record then), and for every layer ``("credentials", digest)``, the handshake
#: credentials a user cooling down connected with, so that the next handshake with them is refused
#: before authentication, for a dict lookup. Bounded (LocalCooldowns); each entry ends with its wait.
cooldowns = LocalCooldowns()

#: The handshake headers that carry credentials (wsgateway's authenticators read no others).
CREDENTIAL_HEADERS = (b"authorization", b"cookie")


def credentials_key(scope: Scope) -> tuple[str, bytes] | None:
    """A digest of the handshake's credentials (its Authorization and Cookie headers), or None when
    it has neither (nothing to recognise it by). A digest, not the headers: no token is kept."""
    values = [header(scope, name) or "" for name in CREDENTIAL_HEADERS]
    if not any(values):
        return None
    digest = hashlib.blake2b("\0".join(values).encode("utf-8", "surrogatepass"), digest_size=16)
    return ("credentials", digest.digest())


def retry_after(seconds: float) -> int:
    """Whole seconds to tell a client, never 0 (a retry_after of 0 would be no wait)."""
    return max(1, math.ceil(seconds))


def cooldown_before_auth(scope: Scope) -> float:
    """Seconds this handshake's credentials are refused for still (0.0: go on and authenticate)."""
    key = credentials_key(scope)
    return cooldowns.left(key) if key is not None else 0.0


def cooldown_known(user_id: Any) -> float:
    """Seconds left of the user's cool-down as far as this process knows, without asking the layer:
    all of it on a layer without the ``cooldown`` extension; on one with it, what this process started
    or was told by a refusal (``connection_add`` asks the layer for the rest, in its round trip)."""
    return cooldowns.left(("user", str(user_id)))


def cooling_down(scope: Scope, user_id: Any, seconds: float) -> bool:
    """A connect of ``user_id`` was refused ``seconds`` more: remember its credentials here for that
    long. True for the first refusal this process makes of the episode (to log it once)."""
    new = cooldowns.start(("user", str(user_id)), seconds)
    if (key := credentials_key(scope)) is not None:
        cooldowns.start(key, seconds)
    return new


async def start_cooldown(layer: Any, scope: Scope, user_id: Any) -> None:
    """The socket of ``user_id`` with the handshake ``scope`` was closed 4429: refuse the user's new
    sockets for ``RATE_LIMIT_COOLDOWN`` seconds, on every process when the layer can (else here).

    A layer that fails is logged at debug and costs nothing more: this process still refuses the
    user, and the next 4429 elsewhere starts it there.
    """
    seconds = gateway_settings.RATE_LIMIT_COOLDOWN
    cooling_down(scope, user_id, seconds)
    if not supports(layer, COOLDOWN):
        return
    try:
        async with asyncio.timeout(gateway_settings.LAYER_CONNECT_TIMEOUT):
            await layer.cooldown_start(str(user_id), seconds)
    except Exception as exc:  # a layer raises its client's errors (redis-py's are not OSErrors)
        logger.debug("wsgateway: the channel layer did not take a cool-down: %r", exc)
