"""Frames against a real daphne, which cannot send a message over 1 MiB (wsgateway.bounds.DAPHNE_MAX_SEND).

Before MAX_SEND_SIZE and the clipboard's byte quotas, the 17th 64 KB clipboard entry made a
connect frame daphne refused: every socket of the user closed with 1011, and so did every
reconnect, so the clipboard could not even be flushed. Here a user at the byte quota connects,
gets the whole clipboard, is refused one entry more and flushes; and a notify() over the limit,
in another process on the same Redis, raises there while the recipient's socket stays open.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest

from tests.support.servers import Site, connect_frames, live_site, manage, ping, recv_json, ws_connect

pytestmark = [pytest.mark.daphne, pytest.mark.redis, pytest.mark.timeout(90)]

ENTRY = 64 * 1024  # CLIPBOARD_MAX_ENTRY_BYTES by default; four of them are CLIPBOARD_MAX_BYTES
#: What a client frame of at most MAX_MESSAGE_SIZE (also 64 KiB) can carry of an entry: the
#: envelope around it takes the rest.
SENDABLE = ENTRY - 200


@pytest.fixture(scope="module")
def site(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with live_site(tmp_path_factory.mktemp("live-sizes"), "live-sizes", REDIS_URL=redis_url) as site:
        yield site


async def shell(site: Site, code: str) -> str:
    """Run ``code`` in ``manage.py shell``: another process, on the same database and Redis."""
    result = await asyncio.to_thread(manage, site.env, "shell", "-c", code, check=False)
    return result.stdout + result.stderr


def request(action: str, data: object = None, id: str = "req") -> str:
    return json.dumps({"channel": "clipboard", "id": id, "payload": {"action": action, "data": data}})


async def test_a_user_at_the_clipboard_byte_quota_connects_gets_the_clipboard_and_flushes(site: Site) -> None:
    async with await ws_connect(site.gateway_url, cookie=site.alice.cookie_header, max_size=None) as ws:
        await connect_frames(ws)
        for index in range(4):
            await ws.send(request("clipboard_add", "x" * (SENDABLE - 2), id=f"add-{index}"))
            assert "added" in (await recv_json(ws))["payload"]
        # Four of SENDABLE leave 800 bytes of the 256 KiB.
        await ws.send(request("clipboard_add", "x" * 1000, id="over"))
        refused = await recv_json(ws)
        assert refused["error"]["code"] == "limit_exceeded"
    async with await ws_connect(site.gateway_url, cookie=site.alice.cookie_header, max_size=None) as ws:
        frames = [await ws.recv() for _ in range(3)]
        clipboard = json.loads(frames[2])
        assert len(clipboard["payload"]["clipboard"]) == 4
        assert 4 * SENDABLE < len(frames[2]) <= 512 * 1024
        await ws.send(request("clipboard_flush", id="flush"))
        flushed = await recv_json(ws)
        assert flushed["id"] == "flush" and len(flushed["payload"]["removed"]) == 4
        assert (await ping(ws))["payload"] == {"action": "pong"}


async def test_notify_over_the_limit_raises_in_its_process_and_the_recipients_socket_stays_open(
    site: Site,
) -> None:
    async with await ws_connect(site.gateway_url, cookie=site.alice.cookie_header, max_size=None) as ws:
        await connect_frames(ws)
        output = await shell(
            site,
            "from django.contrib.auth.models import User\n"
            "from wsgateway import notify\n"
            "from wsgateway.exceptions import FrameTooLarge\n"
            "alice = User.objects.get(username='alice')\n"
            "try:\n"
            "    notify(alice, 'Too big', data={'blob': 'x' * 1_100_000})\n"
            "except FrameTooLarge as exc:\n"
            "    print('refused:', exc)\n"
            "notify(alice, 'Fits', data={'blob': 'x' * 400_000})\n",
        )
        assert "refused: The notification, in a page of one, would be a frame of" in output, output
        assert "over WSGATEWAY['MAX_SEND_SIZE'] (524288 bytes)" in output
        pushed = await recv_json(ws)
        assert pushed["payload"]["last"]["label"] == "Fits"
        assert (await ping(ws))["payload"] == {"action": "pong"}
        assert ws.close_code is None
