"""The cap holds after Redis lost its data (issue 20): the red team's case, with real processes.

Two daphne processes on wsgateway's Redis layer and one redis-server of this module's own (the tests
FLUSHALL and restart it), ``MAX_CONNECTIONS_PER_USER`` 20 and the default ``connection_expiry`` (60 s:
the refresher's own renewal, 30 s away, cannot be what saves the cap here). Twenty of alice's sockets are
open; Redis loses everything; twenty more connect at once. Before the fix, all twenty were admitted
(40 open); now each is refused 4409, and the twenty stay open.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import InvalidStatus, WebSocketException
from websockets.protocol import State

from tests.support.servers import (
    Cluster,
    Daphne,
    HttpSession,
    close_code,
    cluster_on_redis,
    connect_frames,
    flushall,
    recv_json,
    ws_connect,
)

pytestmark = [pytest.mark.daphne, pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(120)]

CAP = 20


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    directory = tmp_path_factory.mktemp("cap-after-loss")
    extra = {"WSGATEWAY_MAX_CONNECTIONS_PER_USER": str(CAP)}
    with cluster_on_redis(directory, "loss", **extra) as cluster:
        yield cluster


async def attempt(daphne: Daphne, session: HttpSession) -> ClientConnection | int | None:
    """One connect: the open socket, the code it was closed with, or None for a failed handshake."""
    try:
        ws = await ws_connect(f"{daphne.ws_url}/ws/", cookie=session.cookie_header)
    except (InvalidStatus, OSError, WebSocketException):
        return None
    first = await recv_json(ws, within=15)
    if "error" in first:
        assert first["error"]["code"] == "too_many_connections", first
        return await close_code(ws)
    await connect_frames(ws, count=len(first["payload"]["services"]))
    return ws


async def open_sockets(cluster: Cluster) -> list[ClientConnection]:
    """CAP sockets of alice, spread over both processes, every one admitted."""
    sockets = []
    for index in range(CAP):
        outcome = await attempt(cluster.first if index % 2 else cluster.second, cluster.alice)
        assert isinstance(outcome, ClientConnection), f"socket {index} not admitted: {outcome}"
        sockets.append(outcome)
    return sockets


async def connect_many(cluster: Cluster, count: int) -> list[ClientConnection | int | None]:
    """``count`` connects at once, half to each process."""
    return list(
        await asyncio.gather(
            *(attempt(cluster.first if i % 2 else cluster.second, cluster.alice) for i in range(count))
        )
    )


async def assert_cap_held(
    old: list[ClientConnection], late: list[ClientConnection | int | None], refused_at_least: int
) -> None:
    admitted = [ws for ws in late if isinstance(ws, ClientConnection)]
    still_open = [ws for ws in old if ws.state is State.OPEN]
    try:
        assert len(still_open) + len(admitted) <= CAP, (
            f"{len(still_open)} + {len(admitted)} sockets open at once, over the cap of {CAP}"
        )
        assert len(still_open) == CAP, "a socket open before the loss was closed"
        assert late.count(4409) >= refused_at_least, late
    finally:
        for ws in [*old, *admitted]:
            await ws.close()


@pytest.mark.parametrize("pause", [0.0, 2.0], ids=["connects-at-once", "after-the-watchdog"])
async def test_after_a_flushall_new_sockets_are_refused_while_the_open_ones_fill_the_cap(
    cluster: Cluster, pause: float
) -> None:
    # At once: the connects find the places lost and wait for them; after 2 s: the watchdogs have
    # put them back already.
    old = await open_sockets(cluster)
    await asyncio.to_thread(flushall, cluster.redis.url)
    await asyncio.sleep(pause)
    late = await connect_many(cluster, CAP)
    await assert_cap_held(old, late, refused_at_least=CAP)


async def test_after_a_restart_without_persistence_new_sockets_are_refused_while_the_open_ones_fill_the_cap(
    cluster: Cluster,
) -> None:
    old = await open_sockets(cluster)
    cluster.redis.stop()
    await asyncio.sleep(1.5)  # each watchdog has seen the layer fail
    cluster.redis.start()  # empty: no save, no append-only file
    late = await connect_many(cluster, CAP)
    # A connect on a connection redis-py has not yet found dead fails its handshake: not admitted,
    # but no proof of the cap either; the others must be refused.
    late += await connect_many(cluster, CAP)
    await assert_cap_held(old, late, refused_at_least=CAP)


async def test_a_process_that_notices_the_loss_first_waits_for_the_other_to_put_back_its_places(
    cluster: Cluster,
) -> None:
    # All open sockets but one on the first process; the connects on the second, which holds one place
    # (so it notices the loss itself, and puts back just that one): it must wait for the first's
    # watchdog to put back its nineteen (restore_grace), not admit nineteen more at once.
    kept = await attempt(cluster.second, cluster.alice)
    assert isinstance(kept, ClientConnection), kept
    old = [kept]
    for _ in range(CAP - 1):
        outcome = await attempt(cluster.first, cluster.alice)
        assert isinstance(outcome, ClientConnection), outcome
        old.append(outcome)
    await asyncio.to_thread(flushall, cluster.redis.url)
    late = list(await asyncio.gather(*(attempt(cluster.second, cluster.alice) for _ in range(CAP))))
    await assert_cap_held(old, late, refused_at_least=CAP)
