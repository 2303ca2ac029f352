"""What one authenticated connect costs, step by step: database queries, Redis round trips, µs.

    .venv/bin/python scripts/connect_trips.py [--redis] [--repeat 9] [--cpu N] [--burst N [--session]]

Connects with a Django session cookie and with a bearer token (--repeat of each, the µs their median),
each by a user of its own (as the bench's sockets are), while a socket of another user is open (a
loop's first connect subscribes to the layer and loads its scripts). On the in-process layer, and
with ``--redis`` on wsgateway's Redis layer over a redis-server started here on 127.0.0.1 (or
REDIS_URL's). The test settings (tests/settings.py: in-memory SQLite, the example project's
services). The counts do not depend on the machine's load; the µs do. See
tests/support/connect_trips.py for what is counted.

``--cpu N``: then N connects of each kind, held open, and the process's CPU time per connect (both
threads: the event loop's and the database thread's, and the test communicator's own, which is the
same for any code measured): a figure a shared machine's load moves less than a wall-clock rate; and
the part of it the garbage collector took (its full collections walk every socket held, so that part
grows with N).

``--burst N``: N token connects, 100 at once, straight into the consumer's ASGI application (no server
and no test communicator, whose own work ``--cpu`` counts), held open as the bench's are: CPU per
connect, and the collector's part of it, as the bench's connections phase makes them, less the server;
and the trips to the database thread and the statements they ran (the connects that wait for that thread
go together: wsgateway.connect_reads). With ``--session``, session cookies instead of tokens (a
browser's connect, and a deploy's reconnect storm: their sessions and users go together too,
wsgateway.sessions.SessionReads); the sessions as django.contrib.auth.login leaves them
(tests/support/connect_trips.session_of), written in one statement.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import secrets
import sys
import time
from contextlib import AsyncExitStack, ExitStack
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"

import django

django.setup()

from channels.db import DatabaseSyncToAsync, database_sync_to_async  # noqa: E402
from channels.layers import channel_layers  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model  # noqa: E402
from django.contrib.auth.hashers import make_password  # noqa: E402
from django.db import connection  # noqa: E402
from django.db.backends.utils import CursorWrapper  # noqa: E402
from django.test.utils import override_settings, setup_test_environment  # noqa: E402
from django.utils import timezone  # noqa: E402
from django.utils.module_loading import import_string  # noqa: E402

from tests.support.communicators import connected  # noqa: E402
from tests.support.connect_trips import ConnectTrips, credentials  # noqa: E402
from tests.support.servers import RedisServer  # noqa: E402
from wsgateway import maintenance  # noqa: E402
from wsgateway.consumers import GatewayConsumer  # noqa: E402
from wsgateway.tokens import issue_token  # noqa: E402


async def measure(layer: str, repeat: int) -> list[str]:
    trips = ConnectTrips()
    lines: list[str] = []
    await database_sync_to_async(maintenance.disable)()  # known off: the flag is read once an interval
    with trips.installed():
        for kind in ("session", "token"):
            # A socket held open through the measured connect, as the bench's are: the group of every
            # socket stays subscribed (a loop's last socket leaving unsubscribes it).
            trips.history.clear()
            async with connected(headers=await credentials(kind, f"resident-{layer}-{kind}")):
                for index in range(repeat):
                    headers = await credentials(kind, f"measured-{layer}-{kind}-{index}")
                    with trips.counted():
                        async with connected(headers=headers):
                            trips.counting = False  # the connect only: not the disconnect
            lines += [*trips.table(f"{layer} layer, {kind} connect"), ""]
    return lines


class CollectorTime:
    """The time the cyclic garbage collector takes while it counts, and its collections by generation:
    a collection runs in the connect that happens to trigger it, and a full one walks every socket
    held, so its share of a connect grows with the sockets open (bench/README.md, "The connect path")."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = [0, 0, 0]
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.collections[info["generation"]] += 1

    def __enter__(self) -> CollectorTime:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)


async def cpu_per_connect(count: int) -> list[str]:
    lines = []
    for kind in ("session", "token"):
        headers = [await credentials(kind, f"cpu-{kind}-{index}") for index in range(count + 20)]
        async with AsyncExitStack() as held:
            for each in headers[:20]:  # warm: the first connects import, compile and cache
                await held.enter_async_context(connected(headers=each))
            with CollectorTime() as collector:
                start = time.process_time()
                for each in headers[20:]:
                    await held.enter_async_context(connected(headers=each))
                spent = time.process_time() - start
        young, middle, full = collector.collections
        lines.append(
            f"{kind} connect: {spent / count * 1e6:,.0f} µs of CPU each ({count} held open), of which the "
            f"garbage collector {collector.seconds / count * 1e6:,.0f} µs ({full} full collections, "
            f"{middle} of the middle generation, {young} of the youngest)"
        )
    return lines


class Trips:
    """While entered, the trips to Channels' database thread and the statements run (any thread): how
    many connects went in a trip, how many statements a connect cost (wsgateway.connect_reads)."""

    def __init__(self) -> None:
        self.trips = 0
        self.statements = 0
        self._stack = ExitStack()

    def __enter__(self) -> Trips:
        counts = self
        original_handler = DatabaseSyncToAsync.thread_handler
        original_execute = CursorWrapper._execute_with_wrappers

        def handler(sync: Any, *args: Any, **kwargs: Any) -> Any:
            counts.trips += 1
            return original_handler(sync, *args, **kwargs)

        def execute(cursor: Any, *args: Any, **kwargs: Any) -> Any:
            counts.statements += 1
            return original_execute(cursor, *args, **kwargs)

        self._stack.enter_context(mock.patch.object(DatabaseSyncToAsync, "thread_handler", handler))
        self._stack.enter_context(mock.patch.object(CursorWrapper, "_execute_with_wrappers", execute))
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()


class BareSocket:
    """The server's side of one socket, as little as the ASGI contract asks: an inbox for the consumer's
    ``receive``, and a ``send`` that counts the connect frames (the gateway's, then one per service)."""

    def __init__(self, credential: tuple[bytes, bytes]) -> None:
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.frames = 0
        self.expected = 0
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.scope = {
            "type": "websocket",
            "path": "/ws/",
            "raw_path": b"/ws/",
            "query_string": b"",
            "headers": [(b"host", b"127.0.0.1"), credential],
            "client": ("127.0.0.1", 40000),
            "server": ("127.0.0.1", 8000),
            "subprotocols": [],
        }

    async def receive(self) -> dict[str, Any]:
        return await self.inbox.get()

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "websocket.send":
            self.frames += 1
            if self.frames == 1:
                self.expected = 1 + len(json.loads(message["text"])["payload"]["services"])
            if self.frames == self.expected and not self.ready.done():
                self.ready.set_result(None)
        elif message["type"] == "websocket.close" and not self.ready.done():
            self.ready.set_exception(RuntimeError(f"refused: {message}"))


def _users(count: int) -> list[Any]:
    """``count`` new users in one statement, with unusable passwords: hashing one each would take longer
    than the connects measured (bench/prepare.py does the same)."""
    user_model = get_user_model()
    password = make_password(None)
    user_model._default_manager.bulk_create(
        [user_model(username=f"burst-{index}", password=password) for index in range(count)]
    )
    return list(user_model._default_manager.filter(username__startswith="burst-").order_by("pk"))


def _sessions(users: list[Any]) -> list[str]:
    """A logged-in session of each user (what tests/support/connect_trips.session_of writes), in one
    statement; their keys."""
    store_class = import_string(settings.SESSION_ENGINE + ".SessionStore")
    model, store = store_class.get_model_class(), store_class()
    expires = timezone.now() + timedelta(seconds=settings.SESSION_COOKIE_AGE)
    backend = "django.contrib.auth.backends.ModelBackend"
    rows = [
        model(
            session_key=secrets.token_hex(16),
            session_data=store.encode(
                {
                    SESSION_KEY: str(user.pk),
                    BACKEND_SESSION_KEY: backend,
                    HASH_SESSION_KEY: user.get_session_auth_hash(),
                }
            ),
            expire_date=expires,
        )
        for user in users
    ]
    model.objects.bulk_create(rows)
    return [row.session_key for row in rows]


def _credentials(count: int, session: bool) -> list[tuple[bytes, bytes]]:
    users = _users(count)
    if session:
        return [(b"cookie", f"{settings.SESSION_COOKIE_NAME}={key}".encode()) for key in _sessions(users)]
    return [(b"authorization", f"Bearer {issue_token(user)}".encode()) for user in users]


async def burst(count: int, window: int = 100, *, session: bool = False) -> list[str]:
    """``count`` token (or ``session``) connects, ``window`` at once, straight into the consumer's ASGI
    application (no server, no test communicator), each by a user of its own and held open, as the
    bench's connections phase opens them: the process's CPU per connect and the collector's part of it."""
    credentials = await database_sync_to_async(_credentials)(count + 20, session)
    application = GatewayConsumer.as_asgi()
    slots = asyncio.Semaphore(window)
    held: list[tuple[BareSocket, asyncio.Task[None]]] = []

    async def one(credential: tuple[bytes, bytes]) -> None:
        async with slots:
            socket = BareSocket(credential)
            task = asyncio.create_task(application(socket.scope, socket.receive, socket.send))
            socket.inbox.put_nowait({"type": "websocket.connect"})
            held.append((socket, task))
            await socket.ready

    await asyncio.gather(*(one(each) for each in credentials[:20]))  # warm: imports, caches
    with CollectorTime() as collector, Trips() as trips:
        start, started = time.process_time(), time.perf_counter()
        await asyncio.gather(*(one(each) for each in credentials[20:]))
        spent, took = time.process_time() - start, time.perf_counter() - started
    for socket, _ in held:
        socket.inbox.put_nowait({"type": "websocket.disconnect", "code": 1000})
    await asyncio.gather(*(task for _, task in held))
    young, middle, full = collector.collections
    kind = "session" if session else "token"
    return [
        f"{kind} connects, {count} held open, {window} at once, no server: {spent / count * 1e6:,.0f} µs of "
        f"CPU each ({count / took:,.0f}/s), of which the garbage collector "
        f"{collector.seconds / count * 1e6:,.0f} µs ({full} full collections, {middle} of the middle "
        f"generation, {young} of the youngest); {trips.trips:,} trips to the database thread "
        f"({count / max(trips.trips, 1):,.1f} connects a trip), {trips.statements / count:,.2f} statements "
        "a connect"
    ]


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--redis", action="store_true", help="also on wsgateway's Redis layer")
    parser.add_argument("--repeat", type=int, default=9, help="connects of each kind, for the µs' median")
    parser.add_argument("--cpu", type=int, default=0, metavar="N", help="CPU per connect over N connects")
    parser.add_argument(
        "--burst", type=int, default=0, metavar="N", help="N token connects held open, 100 at once, no server"
    )
    parser.add_argument("--session", action="store_true", help="--burst with session cookies, not tokens")
    args = parser.parse_args()
    setup_test_environment()
    connection.creation.create_test_db(verbosity=0)
    if args.burst:
        print("\n".join(asyncio.run(burst(args.burst, session=args.session))))
        return
    if args.cpu:
        print("\n".join(asyncio.run(cpu_per_connect(args.cpu))))
        return
    lines = asyncio.run(measure("in-process", args.repeat))
    if args.redis:
        server = None if os.environ.get("REDIS_URL") else RedisServer().start()
        url = os.environ.get("REDIS_URL") or server.url  # type: ignore[union-attr]
        backend = "wsgateway.layers.redis.RedisChannelLayer"
        layers = {"default": {"BACKEND": backend, "CONFIG": {"hosts": [url]}}}
        try:
            with override_settings(CHANNEL_LAYERS=layers):
                channel_layers.backends.clear()
                lines += asyncio.run(measure("Redis", args.repeat))
        finally:
            channel_layers.backends.clear()
            if server is not None:
                server.stop()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
