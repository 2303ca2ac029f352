"""Sync code reaches the channel layer through one loop per process, or through the loop that called it."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
import redis
from asgiref.sync import sync_to_async

from wsgateway.bridge import run_async
from wsgateway.layers.redis import RedisChannelLayer


async def where() -> tuple[asyncio.AbstractEventLoop, str]:
    return asyncio.get_running_loop(), threading.current_thread().name


async def fail() -> None:
    raise ValueError("from the coroutine")


def test_sync_code_outside_any_loop_shares_one_loop_in_a_thread_of_its_own() -> None:
    first_loop, first_thread = run_async(where)
    results: list[tuple[asyncio.AbstractEventLoop, str]] = []
    other = threading.Thread(target=lambda: results.append(run_async(where)))
    other.start()
    other.join()
    assert results == [(first_loop, first_thread)]
    assert first_thread == "wsgateway-bridge" != threading.current_thread().name


def test_the_coroutines_exception_reaches_the_caller() -> None:
    with pytest.raises(ValueError, match="from the coroutine"):
        run_async(fail)


async def test_sync_code_called_from_a_running_loop_goes_back_to_that_loop() -> None:
    caller = asyncio.get_running_loop()
    loop, _ = await sync_to_async(run_async)(where)
    assert loop is caller


async def test_run_async_in_a_loops_own_thread_is_refused() -> None:
    coroutine_function: Any = where
    with pytest.raises(RuntimeError, match="await"):
        run_async(coroutine_function)


@pytest.mark.redis
def test_pushes_from_sync_code_reuse_the_layers_redis_connections(redis_url: str) -> None:
    layer = RedisChannelLayer(hosts=[redis_url], prefix="bridge-test")
    admin = redis.Redis.from_url(redis_url)
    run_async(layer.group_send, "warm", {"type": "x"})
    before = admin.info("stats")["total_connections_received"]
    for n in range(50):
        run_async(layer.group_send, "nobody", {"type": "x", "n": n})
    assert admin.info("stats")["total_connections_received"] - before == 0
    run_async(layer.close)
    admin.close()
