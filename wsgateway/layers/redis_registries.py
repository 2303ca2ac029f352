"""What wsgateway's Redis layer keeps in Redis for every process beside the messages: the cool-downs
after a 4429 (extensions.COOLDOWN), who is online (extensions.PRESENCE) and each process's status
(extensions.STATUS). A mixin of :class:`wsgateway.layers.redis.RedisChannelLayer`, apart so that the layer's
module is its channels and groups; it uses the layer's connection of the running loop (``_state()``),
its key ``prefix`` and its per-user sets of sockets (``_user_key``). All of it lives on the layer's first
Redis node, whatever the number of nodes: the scripts touch several keys in one step.
"""

from __future__ import annotations

from typing import Any


class SharedRegistries:
    """The layer's extensions that are keys of their own in Redis."""

    prefix: str

    def _state(self) -> Any:
        raise NotImplementedError  # the layer's: its loop's client and registered scripts

    def _user_key(self, user: str) -> str:
        raise NotImplementedError  # the layer's: the set of a user's sockets that the cap keeps

    # -- cooldown ------------------------------------------------------------------------

    def _cooldown_key(self, user: str) -> str:
        return f"{self.prefix}:cd:{user}"

    async def cooldown_start(self, user: str, seconds: float) -> None:
        """Extension: refuse ``user``'s new places for ``seconds``, on every process (a key that expires)."""
        await self._state().client.set(self._cooldown_key(user), b"1", px=max(int(seconds * 1000), 1))

    async def cooldown_left(self, user: str) -> float:
        """Extension: seconds left of ``user``'s cool-down, 0.0 for none."""
        ms = await self._state().client.pttl(self._cooldown_key(user))
        return max(int(ms), 0) / 1000

    # -- presence ------------------------------------------------------------------------

    @property
    def online_key(self) -> str:
        return f"{self.prefix}:online"

    @property
    def since_key(self) -> str:
        return f"{self.prefix}:since"

    async def presence_join(self, user: str) -> bool:
        """Extension: ``user`` has a socket now; True when they were not online (extensions.PRESENCE)."""
        return bool(await self._state().presence_join(keys=[self.online_key, self.since_key], args=[user]))

    async def presence_leave(self, user: str) -> None:
        """Extension: a socket of ``user`` ended: they were last seen now."""
        await self._state().presence_leave(keys=[self.online_key], args=[user])

    async def presence_renew(self, users: list[str]) -> list[str]:
        """Extension: ``users`` have a socket open here: seen now; those that were not online are
        online again, and returned."""
        if not users:
            return []
        back = await self._state().presence_renew(keys=[self.online_key, self.since_key], args=users)
        return [user.decode() if isinstance(user, bytes) else user for user in back]

    async def presence_sweep(self, users: list[str], grace: float) -> list[str]:
        """Extension: of ``users``, those without a socket for ``grace`` seconds, taken offline by
        this call."""
        if not users:
            return []
        gone = await self._state().presence_sweep(
            keys=[self.online_key, self.since_key, *(self._user_key(user) for user in users)],
            args=[grace, *users],
        )
        return [user.decode() if isinstance(user, bytes) else user for user in gone]

    async def presence_scan(self, cursor: int, count: int) -> tuple[int, list[str]]:
        """Extension: one page of the online users, from ``cursor`` (0 to start); the next cursor is 0
        at the end. ZSCAN: bounded work per call, and a user may come twice."""
        cursor, page = await self._state().client.zscan(self.online_key, cursor, count=count)
        return int(cursor), [text(user) for user, _ in page]

    async def presence_online(self, user: str) -> bool:
        """Extension: whether ``user`` is online, on any process."""
        return await self._state().client.zscore(self.online_key, user) is not None

    async def presence_online_many(self, users: list[str]) -> list[bool]:
        """Extension: whether each of ``users`` is online, on any process: one ``ZMSCORE``."""
        if not users:
            return []
        return [score is not None for score in await self._state().client.zmscore(self.online_key, users)]

    async def presence_since(self, users: list[str]) -> list[float | None]:
        """Extension: when each of ``users`` came online (Unix time), None for one who is not; one
        ``ZMSCORE``."""
        if not users:
            return []
        scores = await self._state().client.zmscore(self.since_key, users)
        return [None if score is None else float(score) for score in scores]

    async def presence_page(self, offset: int, count: int) -> tuple[int, list[tuple[str, float]]]:
        """Extension: how many users are online, and ``count`` of them from ``offset`` with when each
        came online, the longest online first: ``ZCARD`` and ``ZRANGE`` in one round trip, O(log n +
        count) whatever the offset."""
        async with self._state().client.pipeline(transaction=False) as pipe:
            pipe.zcard(self.since_key)
            pipe.zrange(self.since_key, offset, offset + count - 1, withscores=True)
            total, page = await pipe.execute()
        return int(total), [(text(user), float(since)) for user, since in page]

    async def presence_sockets(self, users: list[str]) -> list[int]:
        """Extension: how many sockets each of ``users`` has open now, on every process, in one call."""
        if not users:
            return []
        counts = await self._state().presence_sockets(keys=[self._user_key(user) for user in users])
        return [int(count) for count in counts]

    # -- status --------------------------------------------------------------------------

    @property
    def status_key(self) -> str:
        return f"{self.prefix}:st"

    async def status_publish(self, process: str, snapshot: str, ttl: float) -> None:
        """Extension: ``snapshot`` is ``process``'s for ``ttl`` seconds (extensions.STATUS)."""
        await self._state().status_publish(
            keys=[self.status_key, f"{self.status_key}:{process}"],
            args=[process, snapshot, max(int(ttl * 1000), 1)],
        )

    async def status_read(self, limit: int) -> list[str]:
        """Extension: the processes' snapshots not expired, at most ``limit``: one script for their
        names, one MGET for their snapshots (one that expired in between is left out)."""
        state = self._state()
        processes = await state.status_live(keys=[self.status_key], args=[limit])
        if not processes:
            return []
        found = await state.client.mget([f"{self.status_key}:{text(name)}" for name in processes])
        return [text(snapshot) for snapshot in found if snapshot is not None]


def text(value: Any) -> str:
    """A member as Redis returned it (bytes, without ``decode_responses``), as text."""
    return value.decode() if isinstance(value, bytes) else str(value)
