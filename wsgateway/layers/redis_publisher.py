"""The publishes of one event loop to Redis, coalesced: every publish issued in one turn of the loop
goes out in one pipeline (one round trip), and each caller still awaits its own result."""

from __future__ import annotations

import asyncio

from redis import asyncio as aioredis


class Publisher:
    """Coalesces the publishes of one loop turn into one pipeline; callers still await their result."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self.pending: list[tuple[str, bytes]] = []
        self.waiters: list[asyncio.Future[None]] = []
        self.task: asyncio.Task[None] | None = None

    async def publish(self, items: list[tuple[str, bytes]]) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self.pending.extend(items)
        self.waiters.append(waiter)
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self.flush())
        await waiter

    async def flush(self) -> None:
        try:
            await asyncio.sleep(0)  # let the rest of this loop turn add to the batch
            while self.pending:
                items, waiters = self.pending, self.waiters
                self.pending, self.waiters = [], []
                try:
                    if len(items) == 1:  # a pipeline of one costs twice the command
                        await self.client.publish(*items[0])
                    else:
                        async with self.client.pipeline(transaction=False) as pipe:
                            for channel, data in items:
                                pipe.publish(channel, data)
                            await pipe.execute()
                except Exception as exc:
                    for waiter in waiters:
                        if not waiter.done():
                            waiter.set_exception(exc)
                else:
                    for waiter in waiters:
                        if not waiter.done():
                            waiter.set_result(None)
        finally:
            self.task = None
