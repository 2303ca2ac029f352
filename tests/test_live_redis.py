"""The example project under daphne on channels-redis and a real redis-server.

Another process (``manage.py notify``, with the same ``REDIS_URL`` and
``DATABASE_URL``) reaches a socket live, and an idle socket outlives redis-py's
default socket timeout. Each test runs on every layer the example project can
select: ``RedisChannelLayer`` ("core"), ``RedisPubSubChannelLayer`` ("pubsub") and wsgateway's own
``wsgateway.layers.redis.RedisChannelLayer`` ("wsgateway", the default).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
from websockets.protocol import State

from tests.support.servers import (
    Daphne,
    HttpSession,
    Site,
    connect_frames,
    manage,
    ping,
    recv_json,
    site_env,
    ws_connect,
)

pytestmark = [pytest.mark.daphne, pytest.mark.redis, pytest.mark.timeout(90)]

PONG = {"channel": "gateway", "id": "ping", "payload": {"action": "pong"}}

#: redis-py's default socket_timeout is 5 s; stay idle for three times that.
IDLE_SECONDS = 16


@pytest.fixture(scope="module", params=["core", "pubsub", "wsgateway"])
def site(
    request: pytest.FixtureRequest, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    layer = request.param
    env = site_env(
        tmp_path_factory.mktemp(f"live-redis-{layer}"), REDIS_URL=redis_url, WSGATEWAY_REDIS_LAYER=layer
    )
    server = Daphne(env, name=f"live-redis-{layer}").start()
    try:
        yield Site(env, server, HttpSession(server.http_url).login("alice", "alice-password"))
    finally:
        alive = server.alive()
        server.stop()
    log = server.log()
    assert alive, f"daphne died during the tests; see {server.log_path}"
    assert "Traceback" not in log, f"daphne logged an exception; see {server.log_path}"
    # Redis never went away here: a layer failure is a timeout trap or a starved health probe.
    assert "channel layer unavailable" not in log, f"daphne saw the layer fail; see {server.log_path}"


async def notify_from_another_process(site: Site, *args: str) -> str:
    result = await asyncio.to_thread(manage, site.env, "notify", *args)
    return result.stdout


async def test_notify_command_in_another_process_reaches_the_socket_live(site: Site) -> None:
    async with await ws_connect(site.gateway_url, cookie=site.alice.cookie_header) as ws:
        unread = (await connect_frames(ws))["notifications"]["unread"]

        output = await notify_from_another_process(site, "alice", "Report ready", "--category", "warning")
        assert "Stored 1 notification(s)." in output
        assert "Pushed live through the channel layer." in output

        frame = await recv_json(ws)
        assert frame["channel"] == "notifications"
        assert frame["payload"]["category"] == "warning"
        assert frame["payload"]["unread"] == unread + 1
        last = frame["payload"]["last"]
        assert (last["label"], last["category"], last["is_read"]) == ("Report ready", "warning", False)
        assert last["metainfo"]["createdUser"] is None  # sent from a shell, by no one


async def test_idle_socket_outlives_the_redis_socket_timeout_and_still_receives_pushes(site: Site) -> None:
    async with await ws_connect(site.gateway_url, cookie=site.alice.cookie_header) as ws:
        await connect_frames(ws)

        await asyncio.sleep(IDLE_SECONDS)

        assert ws.state is State.OPEN, f"closed with {ws.close_code} while idle; see {site.daphne.log_path}"
        assert await ping(ws) == PONG
        # A push through the layer, from this daphne (a view) and from another process.
        status, body = await asyncio.to_thread(site.alice.post, "/notify-me/", {"message": "After a rest"})
        assert status == 200, body
        assert (await recv_json(ws))["payload"]["last"]["id"] == json.loads(body)["id"]
        output = await notify_from_another_process(site, "alice", "Still here")
        assert "Pushed live through the channel layer." in output
        assert (await recv_json(ws))["payload"]["last"]["label"] == "Still here"
