"""The Redis layer's connection pool: sized for the sockets a process holds, and waited on when full.

redis-py's asyncio pool makes at most 100 connections by default and raises ``MaxConnectionsError``
("Too many connections") for the 101st command in flight. A process holding 5,000 sockets asks for
more than that when many of them close at once (each one's unregistration is a command), and the
error read as a Redis outage: every socket of the process was resynced with Redis up (issue 24's
soak). Here the pool is a blocking one: a command that finds every connection busy waits for one,
up to ``pool_timeout`` seconds, and only then fails, with :class:`PoolExhausted`, which says
"back-pressure" (:class:`~wsgateway.layers.extensions.LayerBusy`) rather than "Redis is down".
"""

from __future__ import annotations

import time
from typing import Any

from redis.asyncio.connection import BlockingConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MaxConnectionsError

from .extensions import LayerBusy

#: Connections one event loop's pool may open (the layer's ``pool_size``), and its bounds. A socket
#: holds none between its commands; a burst of closes or connects is what fills it. Four processes of
#: 500 stay well under Redis' default ``maxclients`` (10,000).
DEFAULT_POOL_SIZE = 500
MIN_POOL_SIZE = 2
MAX_POOL_SIZE = 10_000
#: Seconds a command waits for a connection of a full pool (the layer's ``pool_timeout``), and bounds.
DEFAULT_POOL_TIMEOUT = 10.0
MAX_POOL_TIMEOUT = 300.0


class PoolExhausted(MaxConnectionsError, LayerBusy):
    """Every connection of the pool stayed busy for ``pool_timeout`` seconds: the process asks more of
    Redis than the pool carries, and Redis answers. A ``ConnectionError`` still, for callers that
    catch those; the watchdog tells it apart (LayerBusy) and does not count it as an outage."""


class GatewayPool(BlockingConnectionPool):
    """A blocking pool that knows when it last gave a connection back: a full pool whose connections
    come back is busy; one whose connections stopped coming back is a Redis that stopped answering."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: Commands waiting for a connection now.
        self.waiting = 0
        #: Monotonic time a connection was last given back (a command answered, or failed).
        self.last_release = time.monotonic()

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        self.waiting += 1
        try:
            return await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
        except RedisConnectionError as exc:
            # The wait for a free connection timed out (redis-py's words for it), not a connect to Redis.
            if isinstance(exc.__cause__, TimeoutError) and str(exc) == "No connection available.":
                raise PoolExhausted(
                    f"no Redis connection free within {self.timeout} s: all {self.max_connections} of "
                    "the pool are busy (raise the layer's pool_size)"
                ) from exc
            raise
        finally:
            self.waiting -= 1

    async def release(self, connection: Any) -> None:
        self.last_release = time.monotonic()
        await super().release(connection)

    def busy(self, within: float) -> bool:
        """Every connection is in use, and one came back within ``within`` seconds: a full pool
        that moves (back-pressure), not a Redis that stopped answering."""
        full = len(self._in_use_connections) >= self.max_connections or self.waiting > 0
        return full and time.monotonic() - self.last_release <= within


def pool_options(pool_size: int, pool_timeout: float) -> dict[str, Any]:
    """The pool's options from the layer's CONFIG, checked: ``ValueError`` out of bounds."""
    if type(pool_size) is not int or not MIN_POOL_SIZE <= pool_size <= MAX_POOL_SIZE:
        raise ValueError(
            f"pool_size must be an integer from {MIN_POOL_SIZE} to {MAX_POOL_SIZE}, not {pool_size!r}"
        )
    if isinstance(pool_timeout, bool) or not isinstance(pool_timeout, (int, float)):
        raise ValueError(f"pool_timeout must be a number of seconds, not {pool_timeout!r}")
    if not 0 < pool_timeout <= MAX_POOL_TIMEOUT:
        raise ValueError(
            f"pool_timeout must be more than 0 and at most {MAX_POOL_TIMEOUT} s, not {pool_timeout!r}"
        )
    return {"max_connections": pool_size, "timeout": float(pool_timeout)}
