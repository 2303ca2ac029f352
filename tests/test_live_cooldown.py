"""A user closed 4429 is refused new sockets for RATE_LIMIT_COOLDOWN, on every daphne sharing one Redis;
and a frame over the limits is answered ``rate_limited`` without being read as a frame.

Two daphnes of the example project on this module's own redis-server (wsgateway's Redis layer), with
limits small enough to reach in a few frames: RATE_LIMIT 1, RATE_BURST 2, two refusals answered, a
cool-down of COOLDOWN seconds. Every socket is opened from 127.0.0.1, and every test sends a few
frames at most.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tests.support.servers import (
    Cluster,
    Daphne,
    HttpSession,
    close_code,
    cluster_on_redis,
    connect_frames,
    ping,
    recv_json,
    ws_connect,
)

pytestmark = [pytest.mark.daphne, pytest.mark.redis, pytest.mark.timeout(60)]

#: Seconds of the cool-down: long enough for a few refused connects (each answered after a second,
#: refusals.COOLING_DOWN_DELAY), short enough to wait out.
COOLDOWN = 6
LIMITS = {"RATE_LIMIT": 1, "RATE_BURST": 2, "RATE_LIMIT_CLOSE_AFTER": 2, "RATE_LIMIT_COOLDOWN": COOLDOWN}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    directory = tmp_path_factory.mktemp("live-cooldown")
    with cluster_on_redis(directory, "cooldown", WSGATEWAY_EXTRA=json.dumps(LIMITS)) as cluster:
        yield cluster


async def refusal(daphne: Daphne, session: HttpSession) -> tuple[Any, int | None]:
    """A socket expected to be refused at its connect: its one frame, and its close code."""
    ws = await ws_connect(f"{daphne.ws_url}/ws/", cookie=session.cookie_header)
    frame = await recv_json(ws)
    return frame, await close_code(ws)


async def until_closed(ws: ClientConnection) -> list[Any]:
    """The frames read until the server closed the socket."""
    received = []
    try:
        while True:
            received.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
    except ConnectionClosed:
        return received


async def flood_until_closed(daphne: Daphne, session: HttpSession) -> list[Any]:
    """Open a socket and send 10 pings at once: closed 4429 after two answered refusals. The frames read."""
    ws = await ws_connect(f"{daphne.ws_url}/ws/", cookie=session.cookie_header)
    await connect_frames(ws)
    for n in range(10):
        await ws.send(json.dumps({"channel": "gateway", "payload": {"action": "ping"}, "id": n}))
    received = await until_closed(ws)
    assert ws.close_code == 4429, received
    return received


async def test_a_user_closed_4429_on_one_daphne_is_refused_on_the_other_until_the_cooldown_ends(
    cluster: Cluster,
) -> None:
    received = await flood_until_closed(cluster.first, cluster.alice)
    closing = received[-1]
    # The close's error frame says how long the user waits: the cool-down.
    assert closing["error"]["code"] == "too_many_frames" and closing["error"]["retry_after"] == COOLDOWN
    closed_at = time.monotonic()

    # The other daphne learns it from Redis, in the connect's one round trip for the place...
    frame, code = await refusal(cluster.second, cluster.alice)
    assert code == 4429
    assert frame["channel"] == "gateway" and frame["error"]["code"] == "too_many_frames", frame
    assert 1 <= frame["error"]["retry_after"] <= COOLDOWN, frame
    # ...and again (now from its own memory of the handshake's credentials), answered no sooner than
    # refusals.COOLING_DOWN_DELAY: a client that reconnects at once makes one handshake a second.
    asked = time.monotonic()
    assert (await refusal(cluster.second, cluster.alice))[1] == 4429
    assert time.monotonic() - asked >= 0.9
    assert (await refusal(cluster.first, cluster.alice))[1] == 4429
    # Another user is not concerned.
    ws = await ws_connect(f"{cluster.second.ws_url}/ws/", cookie=cluster.bob.cookie_header)
    await connect_frames(ws)
    assert (await ping(ws))["payload"] == {"action": "pong"}
    await ws.close()

    # Once the cool-down is over, both accept the user again.
    await asyncio.sleep(max(0.0, closed_at + COOLDOWN + 0.3 - time.monotonic()))
    for daphne in (cluster.second, cluster.first):
        ws = await ws_connect(f"{daphne.ws_url}/ws/", cookie=cluster.alice.cookie_header)
        frames = await connect_frames(ws)
        assert "error" not in frames.get("gateway", {}), frames
        await ws.close()

    # Logged once per episode on each process, however many connects it refused.
    await asyncio.sleep(0.2)
    refused_logs = cluster.second.log().count("WARNING  wsgateway: refusing new sockets of user")
    assert refused_logs == 1, cluster.second.log()[-3000:]


async def test_a_frame_over_the_limits_is_answered_rate_limited_without_being_read(cluster: Cluster) -> None:
    ws = await ws_connect(f"{cluster.first.ws_url}/ws/", cookie=cluster.bob.cookie_header)
    await connect_frames(ws)
    for n in range(2):  # the burst: both handled
        await ws.send(json.dumps({"channel": "gateway", "payload": {"action": "ping"}, "id": n}))
    # Over the limits: not JSON at all, then a valid frame longer than the door reads (1 KiB).
    await ws.send("this is not JSON at all")
    await ws.send(
        json.dumps({"channel": "gateway", "payload": {"action": "ping", "pad": "x" * 2000}, "id": 9})
    )
    await ws.send(json.dumps({"channel": "gateway", "payload": {"action": "ping"}, "id": 10}))
    received = await until_closed(ws)
    assert ws.close_code == 4429
    pongs = [frame for frame in received if "payload" in frame]
    errors = [frame for frame in received if "error" in frame]
    # Handled in their turn, unless the close came first (it drops what waits for a turn).
    assert [frame["id"] for frame in pongs] in ([], [0], [0, 1])
    # Refused before any decode: rate_limited, not invalid_json; neither has a channel or id to echo
    # (the first has none, the second is past what the door reads to find them).
    assert [(e["channel"], e.get("id"), e["error"]["code"]) for e in errors] == [
        (None, None, "rate_limited"),
        (None, None, "rate_limited"),
        ("gateway", None, "too_many_frames"),
    ]
