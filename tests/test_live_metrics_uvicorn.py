"""docs/metrics.md's uvicorn recipe, run as written: ``uvicorn --workers 2`` with one
PROMETHEUS_MULTIPROC_DIR, on wsgateway's Redis layer. Which worker takes a socket or a scrape is the
kernel's choice, so what is asserted holds whichever it is: every scrape, whatever worker answers it,
shows every open socket (one sample per worker that holds some), and the processes it names are the
workers of this uvicorn."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import (
    HttpSession,
    RedisServer,
    Uvicorn,
    connect_frames,
    running,
    site_env,
    ws_connect,
)
from tests.test_live_metrics import SETTLE, TOKEN, Samples, samples, sockets_by_pid

pytestmark = [pytest.mark.servers, pytest.mark.redis, pytest.mark.timeout(90)]

WORKERS = 2
SOCKETS = 8
SCRAPES = 10


@pytest.fixture(scope="module")
def uvicorn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Uvicorn]:
    directory = tmp_path_factory.mktemp("live-metrics-uvicorn")
    shared = directory / "prometheus"
    shared.mkdir()
    redis = RedisServer().start()
    try:
        env = site_env(
            directory,
            REDIS_URL=redis.url,
            PROMETHEUS_MULTIPROC_DIR=str(shared),
            WSGATEWAY_EXTRA=json.dumps({"METRICS_TOKEN": TOKEN}),
        )
        with running(Uvicorn(env, name="uvicorn-workers"), "--workers", str(WORKERS)) as server:
            yield server
    finally:
        redis.stop()


def parent(pid: str) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


async def test_every_scrape_of_uvicorn_workers_shows_every_socket(uvicorn: Uvicorn) -> None:
    assert uvicorn.proc is not None
    alice = HttpSession(uvicorn.http_url).login("alice", "alice-password")
    sockets = []
    try:
        for _ in range(SOCKETS):
            socket = await ws_connect(f"{uvicorn.ws_url}/ws/", cookie=alice.cookie_header)
            await connect_frames(socket)
            sockets.append(socket)
        reads: list[Samples] = []
        async with asyncio.timeout(SETTLE + SCRAPES):
            while len(reads) < SCRAPES:
                read = await asyncio.to_thread(samples, uvicorn)
                if sum(sockets_by_pid(read).values()) == SOCKETS:  # each worker counts its own at once
                    reads.append(read)
                else:
                    assert not reads, "a later scrape lost sockets an earlier one showed"
                    await asyncio.sleep(0.2)
        pids = {pid for read in reads for pid, open_ in sockets_by_pid(read).items() if open_}
        assert 1 <= len(pids) <= WORKERS, pids
        assert {parent(pid) for pid in pids} == {uvicorn.proc.pid}, "not this uvicorn's workers"
    finally:
        for socket in sockets:
            await socket.close()
