"""A daphne of the example project on wsgateway's Redis layer over three Redis nodes: a socket's user group
is subscribed on its node alone; that node stopped under the open socket while another process stores a
notification for it (its live push fails, and ``manage.py notify`` says so), then started again: the
watchdog saw the outage, and the socket is resynced with the notification in ``missed``, once."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tests.support.servers import (
    Daphne,
    HttpSession,
    RedisServer,
    connect_frames,
    manage,
    recv_json,
    running,
    site_env,
    ws_connect,
)
from wsgateway.layers.redis_nodes import node_of

pytestmark = [pytest.mark.daphne, pytest.mark.redis, pytest.mark.timeout(120)]

NODES = 3


class Live:
    def __init__(self, nodes: list[RedisServer], daphne: Daphne, alice: HttpSession) -> None:
        self.nodes, self.daphne, self.alice = nodes, daphne, alice
        self.url = f"{daphne.ws_url}/ws/"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    nodes = [RedisServer().start() for _ in range(NODES)]
    env = site_env(
        tmp_path_factory.mktemp("live-redis-nodes"),
        REDIS_URL=",".join(node.url for node in nodes),  # project/settings.py: several nodes
        WSGATEWAY_REDIS_LAYER="wsgateway",
        WSGATEWAY_EXTRA=json.dumps({"LAYER_CONNECT_TIMEOUT": 2}),
    )
    try:
        # running() fails the module for a traceback anywhere in daphne's log.
        with running(Daphne(env, name="live-redis-nodes")) as daphne:
            yield Live(nodes, daphne, HttpSession(daphne.http_url).login("alice", "alice-password"))
    finally:
        for node in nodes:
            node.stop()


def subscribed(node: RedisServer, pattern: str) -> set[str]:
    client = redis.Redis.from_url(node.url)
    try:
        return {channel.decode() for channel in client.pubsub_channels(pattern)}
    finally:
        client.close()


async def frames_until(ws: Any, done: Any, within: float = 30) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    async with asyncio.timeout(within):
        while not done(frames):
            frames.append(await recv_json(ws, within))
    return frames


async def test_the_node_of_a_sockets_group_stopped_and_started_resyncs_it_with_what_it_missed(
    live: Live,
) -> None:
    alice_id = manage(
        live.daphne.env,
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model; "
        "print(get_user_model().objects.get(username='alice').pk)",
    ).stdout.split()[-1]  # after what the example project's settings may print
    group_channel = f"wsgateway:g:wsgateway.user.{alice_id}"
    home = node_of(f"wsgateway.user.{alice_id}", NODES)
    async with await ws_connect(live.url, cookie=live.alice.cookie_header) as ws:
        await connect_frames(ws)
        # Her group is subscribed on its node and on no other.
        where = [n for n, node in enumerate(live.nodes) if group_channel in subscribed(node, "wsgateway:g:*")]
        assert where == [home]
        live_label = f"live {time.monotonic()}"
        pushed = await asyncio.to_thread(manage, live.daphne.env, "notify", "alice", live_label)
        assert "Pushed live" in pushed.stdout
        frames = await frames_until(ws, lambda fs: any(live_label in json.dumps(f) for f in fs))
        live.nodes[home].stop()
        label = f"missed while its node was down {time.monotonic()}"
        stored = await asyncio.to_thread(manage, live.daphne.env, "notify", "alice", label)
        assert "Stored 1 notification(s)." in stored.stdout and "Pushed live" not in stored.stdout
        await asyncio.sleep(2.5)  # the watchdog's probes through that node fail: an outage
        live.nodes[home].start()
        frames = await frames_until(ws, lambda fs: any(f["channel"] == "clipboard" for f in fs))
        assert frames[0] == {"channel": "gateway", "payload": {"resync": True}}
        missed = [
            item["label"]
            for frame in frames
            if frame["channel"] == "notifications"
            for item in frame["payload"].get("missed", [])
        ]
        assert missed == [label]
        assert group_channel in subscribed(live.nodes[home], "wsgateway:g:*")  # re-subscribed on its node
    log = live.daphne.log()
    assert "channel layer unavailable" in log and "channel layer is back; resyncing" in log
