"""What one authenticated connect costs, step by step: database queries, Redis round trips, µs.

    .venv/bin/python scripts/connect_trips.py [--redis] [--repeat 9] [--cpu N]

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
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import time
from contextlib import AsyncExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"

import django

django.setup()

from channels.db import database_sync_to_async  # noqa: E402
from channels.layers import channel_layers  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import override_settings, setup_test_environment  # noqa: E402

from tests.support.communicators import connected  # noqa: E402
from tests.support.connect_trips import ConnectTrips, credentials  # noqa: E402
from tests.support.servers import RedisServer  # noqa: E402
from wsgateway import maintenance  # noqa: E402


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


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--redis", action="store_true", help="also on wsgateway's Redis layer")
    parser.add_argument("--repeat", type=int, default=9, help="connects of each kind, for the µs' median")
    parser.add_argument("--cpu", type=int, default=0, metavar="N", help="CPU per connect over N connects")
    args = parser.parse_args()
    setup_test_environment()
    connection.creation.create_test_db(verbosity=0)
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
