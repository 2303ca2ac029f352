"""Calling the channel layer from sync code (views, signal handlers, workers, commands).

``async_to_sync`` alone runs each call in a new event loop, in a new thread, and
the layer opens its connections afresh in every such loop: in a worker that
notifies hundreds of times a second, that was most of the cost of a push. So
sync code outside any event loop shares one loop per process, kept in a daemon
thread, where the layer keeps its connections. Sync code that a running loop
called through ``sync_to_async`` (a view under daphne) still goes back to that
loop: a layer's per-loop state (the stock in-memory layer's queues) belongs to it.
wsgateway's own layers need neither for a push: see their ``group_send_many_sync``.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from asgiref.sync import SyncToAsync, async_to_sync

P = ParamSpec("P")
R = TypeVar("R")


class _LoopThread:
    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="wsgateway-bridge", daemon=True)
        self.thread.start()


_bridge: _LoopThread | None = None
_bridge_lock = threading.Lock()


def _bridge_loop() -> asyncio.AbstractEventLoop:
    global _bridge
    bridge = _bridge
    # A forked child inherits the object but not the thread.
    if bridge is None or bridge.pid != os.getpid():
        with _bridge_lock:
            bridge = _bridge
            if bridge is None or bridge.pid != os.getpid():
                bridge = _bridge = _LoopThread()
    return bridge.loop


def _called_from_running_loop() -> bool:
    # Set by asgiref in the threads of sync_to_async: the loop that is waiting for this thread.
    loop = getattr(SyncToAsync.threadlocal, "main_event_loop", None)
    pid = getattr(SyncToAsync.threadlocal, "main_event_loop_pid", None)
    return loop is not None and pid == os.getpid() and loop.is_running()


def require_sync(advice: str) -> None:
    """Raise RuntimeError, with ``advice``, when called on a running event loop's thread:
    a sync call there would block every socket of the loop, or deadlock waiting for it."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(advice)


def run_async(fn: Callable[P, Awaitable[R]], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run ``await fn(*args, **kwargs)`` from sync code, and return its result."""
    require_sync("run_async() is for sync code; await the coroutine function instead")
    if _called_from_running_loop():
        return async_to_sync(fn)(*args, **kwargs)

    async def call() -> R:
        return await fn(*args, **kwargs)

    return asyncio.run_coroutine_threadsafe(call(), _bridge_loop()).result()
