"""Requests from the server over a long run against a real daphne on Redis: nothing piles up.

The requester is this process (``aask`` on its own Redis layer), the sockets are daphne's, and the
clients that answer, refuse, stay silent or close are this process's WebSocket clients. So every
request crosses Redis twice and a real socket twice. What daphne holds is read from outside:
its memory (``VmRSS``), and each socket's table of pending requests by what it still takes (a
socket that kept an entry would refuse ``busy`` before ``MAX_PENDING_REQUESTS``).
"""

from __future__ import annotations

import asyncio
import gc
import json
import time
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings

from tests.support.servers import Daphne, HttpSession, manage, site_env
from tests.support.wsclient import Client
from wsgateway import aask, connections
from wsgateway.exceptions import RequestDropped, RequestFailed, RequestTimeout
from wsgateway.groups import channel_layer

pytestmark = [pytest.mark.daphne, pytest.mark.redis, pytest.mark.timeout(300)]

#: Small, so that a leaked entry shows; replies come faster than a person's, so the rates are raised.
PENDING = 64
EXTRA = {
    "MAX_PENDING_REQUESTS": PENDING,
    **{key: 10_000 for key in ("RATE_LIMIT", "RATE_BURST", "USER_RATE_LIMIT", "USER_RATE_BURST")},
}
ROUNDS, PER_ROUND, SOCKETS = 200, 50, 4
#: What each socket does with the requests of a round, by round; one of them closes every fifth round.
MODES = [
    ("answer", "silent", "silent", "refuse"),
    ("silent", "silent", "silent", "silent"),
    ("refuse", "refuse", "refuse", "refuse"),
    ("silent", "refuse", "answer", "answer"),
]


@pytest.fixture(scope="module")
def daphne(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daphne, str]]:
    env = site_env(
        tmp_path_factory.mktemp("live-asking"),
        REDIS_URL=redis_url,
        WSGATEWAY_EXTRA=json.dumps(EXTRA),
    )
    manage(env, "demo_users")
    server = Daphne(env, name="live-asking").start()
    try:
        yield server, redis_url
    finally:
        alive = server.alive()
        server.stop()
    assert alive, f"daphne died; see {server.log_path}"
    assert "Traceback" not in server.log(), f"daphne logged an exception; see {server.log_path}"


def rss(server: Daphne) -> int:
    assert server.proc is not None
    status = Path(f"/proc/{server.proc.pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))) * 1024


class Tab:
    """A client that does one thing with every request: answer, refuse, or nothing."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.mode = "silent"

    async def serve(self) -> None:
        frames = self.client.frames
        frames.clear()  # the connect frames
        while True:
            await self.client.wait_for(lambda frames: frames, timeout=3600)
            frame = frames.pop(0)  # a long run: keep no history
            if "request" not in frame or self.mode == "silent":
                continue
            reply: dict[str, Any] = {"channel": frame["channel"], "reply": frame["request"]}
            if self.mode == "answer":
                reply["payload"] = 1
            else:
                reply["error"] = {"code": "no", "message": "Not here."}
            await self.client.send(reply)


def kind(outcome: Any) -> str:
    return f"{type(outcome).__name__}:{outcome.code}" if isinstance(outcome, RequestFailed) else repr(outcome)


async def close(tabs: list[Tab], servers: list[asyncio.Task[None]]) -> None:
    for task in servers:
        task.cancel()
    for tab in tabs:
        await tab.client.close()


async def test_ten_thousand_requests_leave_no_pending_entry_and_no_growth(
    daphne: tuple[Daphne, str],
) -> None:
    server, redis_url = daphne
    session = HttpSession(server.http_url).login("alice", "alice-password")
    url, headers = f"{server.ws_url}/ws/", {"Cookie": session.cookie_header}
    backend = "wsgateway.layers.redis.RedisChannelLayer"
    layers = {"default": {"BACKEND": backend, "CONFIG": {"hosts": [redis_url]}}}
    with override_settings(CHANNEL_LAYERS=layers, WSGATEWAY=EXTRA):
        layer = channel_layer()
        tabs: list[Tab] = []
        servers: list[asyncio.Task[None]] = []
        user_id = 1  # alice, the first demo user

        async def open_tabs() -> None:
            tabs[:] = [Tab(await Client(url, headers).connect()) for _ in range(SOCKETS)]
            servers[:] = [asyncio.create_task(tab.serve()) for tab in tabs]

        await open_tabs()

        async def one_round(index: int) -> Counter[str]:
            for tab, mode in zip(tabs, MODES[index % len(MODES)], strict=True):
                tab.mode = mode
            outcomes = await asyncio.gather(
                *(aask(user_id, "editor", n, timeout=0.5) for n in range(PER_ROUND)), return_exceptions=True
            )
            if index % 5 == 0:  # the tabs close with requests they hold, and open again
                held = [asyncio.create_task(aask(user_id, "editor", "held", timeout=30)) for _ in range(3)]
                for tab in tabs:
                    tab.mode = "silent"
                await asyncio.sleep(0.2)
                await close(tabs, servers)
                outcomes += await asyncio.gather(*held, return_exceptions=True)
                await open_tabs()
            return Counter(map(kind, outcomes))

        kinds: Counter[str] = Counter()
        for index in range(10):  # warm up
            kinds += await one_round(index)
        gc.collect()
        tracemalloc.start()
        started, rss_before = time.monotonic(), rss(server)
        baseline = tracemalloc.take_snapshot()
        for index in range(10, ROUNDS):
            kinds += await one_round(index)
        rss_after = rss(server)
        gc.collect()
        grown = sum(stat.size_diff for stat in tracemalloc.take_snapshot().compare_to(baseline, "filename"))
        tracemalloc.stop()
        elapsed = time.monotonic() - started

        # Every socket's table is empty: each takes MAX_PENDING_REQUESTS more, none refused busy.
        for tab in tabs:
            tab.mode = "silent"
        sockets = await connections.user_sockets(layer, str(user_id))
        assert len(sockets) == SOCKETS
        last = await asyncio.gather(
            *(aask(socket, "editor", "last", timeout=1) for socket in sockets for _ in range(PENDING)),
            return_exceptions=True,
        )
        assert all(isinstance(outcome, RequestTimeout) for outcome in last), Counter(map(repr, last))
        busy = await asyncio.gather(
            *(aask(socket, "editor", "over", timeout=1) for socket in sockets for _ in range(PENDING + 1)),
            return_exceptions=True,
        )
        refused = [outcome for outcome in busy if isinstance(outcome, RequestDropped)]
        assert [outcome.code for outcome in refused] == ["busy"] * SOCKETS  # the bound holds too

        await close(tabs, servers)

    total = sum(kinds.values())
    print(
        f"\n{total} requests ({dict(kinds)}); measured {ROUNDS - 10} rounds in {elapsed:.1f} s: daphne's RSS "
        f"{rss_before / 2**20:.1f} -> {rss_after / 2**20:.1f} MiB; requester grew {grown / 1024:.1f} KiB"
    )
    assert total >= 10_000
    assert set(kinds) == {"1", "RequestRejected:no", "RequestTimeout:timeout", "RequestDropped:closed"}, kinds
    # No growth with the number of requests: a leak of one entry, inbox or future per request would
    # be megabytes over 9,500 of them.
    assert rss_after - rss_before < 4 * 2**20
    assert grown < 1024 * 1024
