"""What an idle socket costs inside the process: tracked objects, bytes by package, and a full collection.

    python -m bench.memory [--sockets 1000] [--users 100] [--services notifications,clipboard]

Counts, not timings (except the full collection's pause): N authenticated sockets are opened on
wsgateway's consumer with the in-process layer, each driven by :class:`Pipe`, the least an ASGI
server can be (a task running the application, a receive that waits on one future, a send that
drops what it is given). Before and after, with every socket idle: ``gc.get_objects()`` by type,
and a tracemalloc snapshot grouped by the package that allocated each block. What the harness
itself holds per socket is :class:`Pipe`, its task's frame and the scope: in the report as
``bench``. A real server adds its own (daphne's protocol and Twisted's transport; see
``bench.server_memory``).

:func:`open_idle` and :func:`tracked_by_type` are what ``tests/test_socket_cost.py`` bounds.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import json
import os
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterable
from typing import Any

#: Which package allocated a block, from the file of its innermost frame (first match wins).
PACKAGES = (
    ("wsgateway", "/wsgateway/"),
    ("bench", "/bench/"),
    ("channels", "/channels/"),
    ("daphne/twisted/autobahn", "/daphne/"),
    ("daphne/twisted/autobahn", "/twisted/"),
    ("daphne/twisted/autobahn", "/autobahn/"),
    ("daphne/twisted/autobahn", "/txaio/"),
    ("uvicorn", "/uvicorn/"),
    ("hypercorn", "/hypercorn/"),
    ("websockets/wsproto/h11", "/websockets/"),
    ("websockets/wsproto/h11", "/wsproto/"),
    ("websockets/wsproto/h11", "/h11/"),
    ("asgiref", "/asgiref/"),
    ("django", "/django/"),
    ("asyncio", "/asyncio/"),
)


def package_of(filename: str) -> str:
    for name, marker in PACKAGES:
        if marker in filename:
            return name
    return "other"


def bytes_by_package(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot) -> dict[str, int]:
    """Bytes allocated between the snapshots and still held, by package (see :data:`PACKAGES`)."""
    totals: collections.Counter[str] = collections.Counter()
    for stat in after.compare_to(before, "filename"):
        totals[package_of(stat.traceback[0].filename)] += stat.size_diff
    return dict(totals.most_common())


def tracked_by_type() -> collections.Counter[str]:
    """The objects the cyclic collector tracks, by type name, after a full collection."""
    gc.collect()
    return collections.Counter(type(obj).__qualname__ for obj in gc.get_objects())


def full_collection_ms(repeat: int = 3) -> float:
    """The median time of ``gc.collect()``, in ms: what a full collection stalls the process for."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        gc.collect()
        times.append(1000 * (time.perf_counter() - start))
    return sorted(times)[len(times) // 2]


class Pipe:
    """One socket's server side, as small as an ASGI server can keep it: the client's messages wait in
    a list, and the application's sends are counted, not kept."""

    __slots__ = ("accepted", "closed", "inbox", "sent", "waiter")

    def __init__(self) -> None:
        self.inbox: list[dict[str, Any]] = [{"type": "websocket.connect"}]
        self.waiter: asyncio.Future[None] | None = None
        self.sent = 0
        self.accepted = False
        self.closed = False

    async def receive(self) -> dict[str, Any]:
        while not self.inbox:
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        return self.inbox.pop(0)

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "websocket.accept":
            self.accepted = True
        elif kind == "websocket.close":
            self.closed = True
        else:
            self.sent += 1

    def put(self, message: dict[str, Any]) -> None:
        self.inbox.append(message)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


def scope_for(user: Any, path: str = "/ws/") -> dict[str, Any]:
    # The user in the scope, as AuthMiddlewareStack leaves it (tests/support/communicators.py does the same).
    return {
        "type": "websocket",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1"), (b"origin", b"http://127.0.0.1")],
        "subprotocols": [],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "user": user,
    }


async def open_idle(
    application: Callable[..., Any], users: Iterable[Any], frames: int, within: float = 60
) -> list[tuple[Pipe, asyncio.Task[Any]]]:
    """Open a socket per user in ``users`` (in turn), and wait until each was accepted and sent
    ``frames`` frames (its connect frames): then every socket is idle."""
    opened = []
    loop = asyncio.get_running_loop()
    for user in users:
        pipe = Pipe()
        task = loop.create_task(application(scope_for(user), pipe.receive, pipe.send))
        opened.append((pipe, task))
    deadline = loop.time() + within
    while not all(pipe.sent >= frames or pipe.closed for pipe, _ in opened):
        if failed := next((task for _, task in opened if task.done()), None):
            raise RuntimeError("a socket's application ended") from failed.exception()
        if loop.time() > deadline:
            raise TimeoutError("sockets did not all connect")
        await asyncio.sleep(0.01)
    if refused := sum(pipe.closed or not pipe.accepted for pipe, _ in opened):
        raise RuntimeError(f"{refused} sockets were refused")
    await asyncio.sleep(0.05)  # whatever the connect scheduled last (a receiver, a timer) has run
    return opened


async def close_all(opened: list[tuple[Pipe, asyncio.Task[Any]]]) -> None:
    for pipe, _ in opened:
        pipe.put({"type": "websocket.disconnect", "code": 1000})
    await asyncio.wait_for(asyncio.gather(*(task for _, task in opened), return_exceptions=True), 60)


def setup_django(services: list[str] | None, users: int) -> list[Any]:
    """The example project on a fresh SQLite file and the in-process layer, with ``users`` users."""
    directory = tempfile.mkdtemp(prefix="wsgateway-memory-")
    os.environ["DATABASE_URL"] = f"sqlite:///{directory}/db.sqlite3"
    os.environ.pop("REDIS_URL", None)
    os.environ["DJANGO_DEBUG"] = "0"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    import django
    from django.conf import settings

    django.setup()
    if services is not None:  # read through on every access
        settings.WSGATEWAY = {**settings.WSGATEWAY, "SERVICES": services}
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    model = get_user_model()
    model._default_manager.bulk_create([model(username=f"memory{i}") for i in range(users)])
    return list(model._default_manager.filter(username__startswith="memory"))


async def measure(sockets: int, users: list[Any], top: int = 0) -> dict[str, Any]:
    from channels.db import database_sync_to_async

    from wsgateway.consumers import GatewayConsumer
    from wsgateway.services.base import service_classes

    application = GatewayConsumer.as_asgi()
    services = [service.channel for service in service_classes()]
    frames = 1 + len(services)
    # Warm-up: the first sockets load what every later one shares (translations, caches, the layer).
    await close_all(await open_idle(application, users[:10], frames))
    await database_sync_to_async(lambda: None)()
    gc.collect()
    before_types = tracked_by_type()
    before_ms = full_collection_ms()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    round_robin = [users[i % len(users)] for i in range(sockets)]
    opened = await open_idle(application, round_robin, frames, within=30 + sockets / 10)
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    after_types = tracked_by_type()
    after_ms = full_collection_ms()
    grown = after_types - before_types
    lines = [
        (f"{frame.filename.rsplit('/site-packages/', 1)[-1]}:{frame.lineno}", stat.size_diff)
        for stat in after.compare_to(before, "lineno")[:top]
        for frame in [stat.traceback[0]]
    ]
    by_package = bytes_by_package(before, after)
    result: dict[str, Any] = {
        "sockets": sockets,
        "services": services,
        "tracked_per_socket": round(sum(grown.values()) / sockets, 1),
        "tracked_by_type_per_socket": {
            name: round(count / sockets, 2) for name, count in grown.most_common() if count >= sockets / 10
        },
        "bytes_per_socket": round(sum(by_package.values()) / sockets),
        "bytes_per_socket_by_package": {name: round(size / sockets) for name, size in by_package.items()},
        "tracked_total": sum(after_types.values()),
        "top_lines_bytes_per_socket": {
            where: round(size / sockets) for where, size in lines if size >= sockets
        },
        "full_collection_ms": {"before": round(before_ms, 1), "after": round(after_ms, 1)},
    }
    # What WSGATEWAY["GC_FREEZE_EVERY"] does once the sockets have lived an interval.
    from wsgateway import collector

    collector.refreeze()
    result["full_collection_ms_sockets_frozen"] = round(full_collection_ms(), 1)
    # The sockets stay frozen: close_all frees them by reference counting (tests/test_socket_cost.py).
    await close_all(opened)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--users", type=int, default=100, help="sockets are spread over them in turn")
    parser.add_argument("--lines", type=int, default=0, help="also the N lines that allocated most")
    parser.add_argument("--services", help="dotted paths, comma-separated (default: the example project's)")
    args = parser.parse_args()
    services = args.services.split(",") if args.services else None
    users = setup_django(services, args.users)
    gc.freeze()  # start-up, as a site's asgi.py does: the counts are then the sockets' alone
    result = asyncio.run(measure(args.sockets, users, args.lines))
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
