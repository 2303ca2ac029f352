"""The presence channel across two daphne processes sharing one redis-server: a watcher on the first is
told of a user whose sockets are on the second. The example project serves the channel with
``WSGATEWAY_PRESENCE_CHANNEL=1`` (its users may all watch one another), with ``PRESENCE_GRACE`` 2 s.

``user_online`` is sent by the process of the user's socket, ``user_offline`` by the one that took them
offline: the push to the watcher crosses Redis either way.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from tests.support.servers import (
    Cluster,
    Daphne,
    HttpSession,
    cluster_on_redis,
    connect_frames,
    ping,
    recv_json,
    ws_connect,
)

pytestmark = [pytest.mark.daphne, pytest.mark.redis, pytest.mark.timeout(90)]

GRACE = 2
#: Past the grace: the check's margin (0.25 s), a sweep's quarter of the grace, and room for a loaded
#: machine. The bound asserted is the grace plus this.
LATE = 3.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with cluster_on_redis(
        tmp_path_factory.mktemp("live-presence-channel"),
        "presence-channel",
        WSGATEWAY_PRESENCE_CHANNEL="1",
        WSGATEWAY_EXTRA=json.dumps({"PRESENCE_GRACE": GRACE}),
    ) as cluster:
        yield cluster


async def opened(daphne: Daphne, session: HttpSession) -> tuple[ClientConnection, str]:
    """A socket of ``session``'s user on ``daphne``, past its connect frames (none for presence while
    nothing is watched), and the user's pk."""
    ws = await ws_connect(f"{daphne.ws_url}/ws/", cookie=session.cookie_header)
    frames = await connect_frames(ws, count=3)
    assert frames["gateway"]["services"] == ["notifications", "clipboard", "presence"], frames
    return ws, str(frames["gateway"]["user"]["id"])


async def watch(ws: ClientConnection, *users: str) -> Any:
    payload = {"action": "watch", "data": {"users": list(users)}}
    await ws.send(json.dumps({"channel": "presence", "id": "watch", "payload": payload}))
    return await recv_json(ws)


async def nothing_within(ws: ClientConnection, seconds: float) -> None:
    """No frame comes within ``seconds``; then a ping proves the socket still answers."""
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(ws.recv(), seconds)
    assert (await ping(ws))["payload"] == {"action": "pong"}


async def test_a_watcher_is_told_of_a_user_on_the_other_process_coming_and_going(cluster: Cluster) -> None:
    watcher, _ = await opened(cluster.first, cluster.alice)
    try:
        bob_ws, bob = await opened(cluster.second, cluster.bob)
        await bob_ws.close()
        # Bob is online within the grace; wait until he is not, so that the test starts from offline.
        await asyncio.sleep(GRACE + LATE)
        assert await watch(watcher, bob) == {
            "channel": "presence",
            "id": "watch",
            "payload": {"users": {bob: False}, "refused": []},
        }
        bob_ws, _ = await opened(cluster.second, cluster.bob)
        assert await recv_json(watcher, 5) == {
            "channel": "presence",
            "payload": {"user": bob, "online": True},
        }
        await bob_ws.close()
        loop = asyncio.get_running_loop()
        closed_at = loop.time()
        pushed = await recv_json(watcher, GRACE + LATE)
        took = loop.time() - closed_at
        assert pushed == {"channel": "presence", "payload": {"user": bob, "online": False}}
        assert took >= GRACE - 0.5, f"offline {took:.2f} s after the close: within the grace"
        await nothing_within(watcher, 0.5)  # once, not once per process
    finally:
        await watcher.close()


async def test_a_reload_onto_the_other_process_within_the_grace_pushes_nothing(cluster: Cluster) -> None:
    page, bob = await opened(cluster.first, cluster.bob)
    watcher, _ = await opened(cluster.first, cluster.alice)
    try:
        assert (await watch(watcher, bob))["payload"] == {"users": {bob: True}, "refused": []}
        await page.close()
        await asyncio.sleep(0.3)
        page, _ = await opened(cluster.second, cluster.bob)  # the reloaded page, on the other process
        await nothing_within(watcher, GRACE + LATE)
        await page.close()
        pushed = await recv_json(watcher, GRACE + LATE)
        assert pushed == {"channel": "presence", "payload": {"user": bob, "online": False}}
    finally:
        await watcher.close()
