"""One cap on a user's sockets across daphne processes sharing one redis-server.

The example project runs with ``MAX_CONNECTIONS_PER_USER`` 3 and a ``connection_expiry`` of 2 s on
wsgateway's Redis layer (so its refresher renews each socket's place every second). The Redis is this
module's own: places a process leaves behind must not leak into other modules' tests, or theirs into these.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from tests.support.servers import (
    Daphne,
    HttpSession,
    RedisServer,
    close_code,
    connect_frames,
    ping,
    recv_json,
    serving,
    site_env,
    ws_connect,
)

pytestmark = [pytest.mark.daphne, pytest.mark.redis, pytest.mark.timeout(60)]

CAP = 3
#: Seconds a place lasts unless renewed: how long a killed process's places stay taken.
CONNECTION_EXPIRY = 2


@dataclass
class Cluster:
    env: dict[str, str]
    first: Daphne
    second: Daphne
    alice: HttpSession


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    redis = RedisServer().start()
    try:
        yield site_env(
            tmp_path_factory.mktemp("live-connections"),
            REDIS_URL=redis.url,
            WSGATEWAY_MAX_CONNECTIONS_PER_USER=str(CAP),
            WSGATEWAY_CONNECTION_EXPIRY=str(CONNECTION_EXPIRY),
        )
    finally:
        redis.stop()


@pytest.fixture(scope="module")
def cluster(env: dict[str, str]) -> Iterator[Cluster]:
    with serving(env, "connections-a") as first, serving(env, "connections-b") as second:
        yield Cluster(env, first, second, HttpSession(first.http_url).login("alice", "alice-password"))


async def opened(daphne: Daphne, session: HttpSession) -> ClientConnection:
    """A socket of ``session``'s user on ``daphne``, past its connect frames."""
    ws = await ws_connect(f"{daphne.ws_url}/ws/", cookie=session.cookie_header)
    frames = await connect_frames(ws)
    assert "error" not in frames.get("gateway", {}), frames
    return ws


async def refusal(daphne: Daphne, session: HttpSession) -> tuple[Any, int | None]:
    """Open a socket expected to be refused: its one frame and the code it was closed with."""
    ws = await ws_connect(f"{daphne.ws_url}/ws/", cookie=session.cookie_header)
    frame = await recv_json(ws)
    return frame, await close_code(ws)


TOO_MANY = "too_many_connections"


async def assert_refused(daphne: Daphne, session: HttpSession) -> None:
    frame, code = await refusal(daphne, session)
    assert (frame["channel"], frame["error"]["code"], code) == ("gateway", TOO_MANY, 4409)


async def admitted_within(daphne: Daphne, session: HttpSession, seconds: float) -> ClientConnection:
    """A socket that is refused (4409) until a place is free, and then opened: retried for ``seconds``."""
    async with asyncio.timeout(seconds):
        while True:
            ws = await ws_connect(f"{daphne.ws_url}/ws/", cookie=session.cookie_header)
            first = await recv_json(ws)
            if "error" not in first:
                await connect_frames(ws, count=len(first["payload"]["services"]))
                return ws
            assert first["error"]["code"] == TOO_MANY and await close_code(ws) == 4409
            await asyncio.sleep(0.1)


async def test_sockets_spread_over_two_processes_hit_one_cap_and_closing_one_frees_a_place(
    cluster: Cluster,
) -> None:
    first, second, alice = cluster.first, cluster.second, cluster.alice
    # Admitted within a second: the places of the module's other test are given back as it ends.
    sockets = [await admitted_within(daphne, alice, 1) for daphne in (first, second, first)]
    await assert_refused(second, alice)
    await assert_refused(first, alice)
    await sockets.pop(0).close()  # on the first process: the place is free on the second
    sockets.append(await admitted_within(second, alice, 2))
    await assert_refused(first, alice)
    for ws in sockets:
        assert await ping(ws) == {"channel": "gateway", "id": "ping", "payload": {"action": "pong"}}
        await ws.close()


async def test_the_places_of_a_killed_process_are_free_after_connection_expiry_and_the_living_keep_theirs(
    cluster: Cluster,
) -> None:
    first, alice = cluster.first, cluster.alice
    doomed = Daphne(cluster.env, "connections-killed").start()
    try:
        on_doomed = [await admitted_within(doomed, alice, 1) for _ in range(2)]
        kept = await admitted_within(first, alice, 1)
        assert doomed.proc is not None
        doomed.proc.send_signal(signal.SIGKILL)  # no disconnect runs: its places stay in Redis
        doomed.proc.wait(5)
        await assert_refused(first, alice)
        # Free within the expiry (and the one refresh round it may have had just before the kill);
        # the two places were taken a few milliseconds apart, and expire as far apart.
        loop = asyncio.get_running_loop()
        killed_at = loop.time()
        late = [await admitted_within(first, alice, CONNECTION_EXPIRY + 2)]
        assert loop.time() - killed_at > CONNECTION_EXPIRY / 2, "freed before the killed places expired"
        late.append(await admitted_within(first, alice, 1))
        # "kept" is older than the expiry: still counted, because its process renews it.
        await assert_refused(first, alice)
        assert await ping(kept) == {"channel": "gateway", "id": "ping", "payload": {"action": "pong"}}
        for ws in [kept, *late]:
            await ws.close()
        for ws in on_doomed:
            ws.transport.abort()
    finally:
        doomed.stop()
