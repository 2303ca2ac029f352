"""Presence across two daphne processes sharing one redis-server (wsgateway.presence).

The example project runs with ``PRESENCE_GRACE`` 2 s and a ``connection_expiry`` of 2 s on wsgateway's
Redis layer. The signals are read from the daphnes' logs (wsgateway logs each one it sends at debug:
``wsgateway: user 5 online``), so a test counts them over both processes: each must come exactly once.
``is_online`` is asked the way it asks: of the layer, from this process, on the same Redis.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator, Iterator

import pytest
from websockets.asyncio.client import ClientConnection

from tests.support.servers import (
    Cluster,
    Daphne,
    HttpSession,
    cluster_on_redis,
    connect_frames,
    ws_connect,
)
from wsgateway.layers.redis import RedisChannelLayer

pytestmark = [pytest.mark.daphne, pytest.mark.redis, pytest.mark.timeout(90)]

GRACE = 2
CONNECTION_EXPIRY = 2
#: The sweep of a process with sockets runs every quarter of the grace; a check after the grace waits
#: CHECK_MARGIN more. Room on top for a loaded machine: the bound asserted is the grace plus this.
LATE = 3.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with cluster_on_redis(
        tmp_path_factory.mktemp("live-presence"),
        "presence",
        WSGATEWAY_CONNECTION_EXPIRY=str(CONNECTION_EXPIRY),
        WSGATEWAY_EXTRA=json.dumps({"PRESENCE_GRACE": GRACE}),
        WSGATEWAY_LOG_LEVEL="DEBUG",
    ) as cluster:
        yield cluster


@pytest.fixture
async def layer(cluster: Cluster) -> AsyncIterator[RedisChannelLayer]:
    found = RedisChannelLayer(hosts=[cluster.redis.url])
    yield found
    await found.close()


async def opened(daphne: Daphne, session: HttpSession) -> tuple[ClientConnection, str]:
    """A socket of ``session``'s user on ``daphne``, past its connect frames, and the user's pk."""
    ws = await ws_connect(f"{daphne.ws_url}/ws/", cookie=session.cookie_header)
    frames = await connect_frames(ws)
    assert "error" not in frames.get("gateway", {}), frames
    return ws, str(frames["gateway"]["user"]["id"])


def signals(daphnes: list[Daphne], user: str, what: str) -> int:
    """How many ``user_online``/``user_offline`` (``what``) the daphnes sent for ``user`` so far."""
    # Whole lines, as the project's console handler writes them: daphne's own handler writes each
    # record a second time, with a timestamp before it.
    line = f"wsgateway: user {user} {what}"
    return sum(daphne.log().splitlines().count(line) for daphne in daphnes)


async def until(condition: object, seconds: float) -> float:
    """Wait for ``condition()`` to be true, at most ``seconds``; the seconds it took."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with asyncio.timeout(seconds):
        while not condition():  # type: ignore[operator]  # noqa: ASYNC110 (a log file: no event to wait on)
            await asyncio.sleep(0.05)
    return loop.time() - start


async def test_online_once_across_two_processes_and_offline_once_after_the_grace(
    cluster: Cluster, layer: RedisChannelLayer
) -> None:
    both = [cluster.first, cluster.second]
    on_first, user = await opened(cluster.first, cluster.alice)
    online, offline = signals(both, user, "online"), signals(both, user, "offline")
    assert online == 1, "the first socket sent user_online"
    on_second, _ = await opened(cluster.second, cluster.alice)
    assert await layer.presence_online(user)
    await on_first.close()
    await asyncio.sleep(GRACE + 1)  # the first process's check after the grace finds the second's socket
    assert await layer.presence_online(user)
    await on_second.close()
    await asyncio.sleep(GRACE / 2)
    assert await layer.presence_online(user), "online within the grace after the last socket"
    await until(lambda: signals(both, user, "offline") > offline, GRACE / 2 + LATE)
    await asyncio.sleep(0.5)  # a second sender would have logged by now
    assert signals(both, user, "offline") == offline + 1
    assert signals(both, user, "online") == online, "no second user_online from the second process"
    assert not await layer.presence_online(user)


async def test_a_reload_onto_the_other_process_within_the_grace_sends_no_signal(
    cluster: Cluster, layer: RedisChannelLayer
) -> None:
    both = [cluster.first, cluster.second]
    page, user = await opened(cluster.first, cluster.alice)
    await until(lambda: signals(both, user, "online") > 0, 5)
    online, offline = signals(both, user, "online"), signals(both, user, "offline")
    await page.close()
    await asyncio.sleep(0.3)
    page, _ = await opened(cluster.second, cluster.alice)  # the reloaded page, on the other process
    await asyncio.sleep(GRACE + LATE)  # the first process's check ran, and found the new socket
    assert (signals(both, user, "online"), signals(both, user, "offline")) == (online, offline)
    assert await layer.presence_online(user)
    await page.close()
    await until(lambda: signals(both, user, "offline") > offline, GRACE + LATE)
    assert not await layer.presence_online(user)


async def test_the_users_of_a_killed_process_go_offline_after_the_expiry_and_the_grace(
    cluster: Cluster, layer: RedisChannelLayer
) -> None:
    first = cluster.first
    watcher, alice = await opened(first, cluster.alice)  # a socket on the first: its process sweeps
    doomed = Daphne(cluster.env, "presence-killed").start()
    try:
        on_doomed, user = await opened(doomed, cluster.bob)
        assert await layer.presence_online(user)
        offline = signals([first], user, "offline")
        assert doomed.proc is not None
        doomed.proc.send_signal(signal.SIGKILL)  # no disconnect runs: bob's socket stays registered
        doomed.proc.wait(5)
        took = await until(
            lambda: signals([first], user, "offline") > offline, CONNECTION_EXPIRY + GRACE + LATE
        )
        # Not before the registration expired (the doomed process may have renewed it just before the kill).
        assert took > CONNECTION_EXPIRY / 2, f"offline {took:.2f} s after the kill: before the expiry"
        assert not await layer.presence_online(user)
        assert await layer.presence_online(alice), (
            "the living process's users stay online; its log ends:\n"
            + "\n".join(first.log().splitlines()[-40:])
        )
        on_doomed.transport.abort()
    finally:
        doomed.stop()
        await watcher.close()
