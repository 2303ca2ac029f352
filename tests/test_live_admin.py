"""The admin's page of who is online (wsgateway.admin_online) under daphne, on wsgateway's Redis layer:
alice (the demo's superuser) sees bob's socket, and its button closes it with the revocation's code."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator

import pytest

from tests.support.servers import (
    Daphne,
    HttpSession,
    RedisServer,
    close_code,
    connect_frames,
    recv_json,
    serving,
    site_env,
    ws_connect,
)

pytestmark = [pytest.mark.daphne, pytest.mark.redis, pytest.mark.timeout(60)]

PAGE = "/admin/wsgateway/onlineuser/"


@pytest.fixture(scope="module")
def daphne(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daphne]:
    redis = RedisServer().start()
    try:
        env = site_env(tmp_path_factory.mktemp("live-admin"), REDIS_URL=redis.url)
        with serving(env, "admin") as server:
            yield server
    finally:
        redis.stop()


def row_of(html: str, user: str) -> str | None:
    """The open sockets the page shows for ``user``, or None if it does not list them."""
    found = re.search(rf'<tr data-user="{user}">.*?<td class="sockets">(\d+)', html, re.S)
    return found[1] if found else None


async def test_the_admin_sees_a_users_socket_and_closes_it(daphne: Daphne) -> None:
    admin = HttpSession(daphne.http_url).login("alice", "alice-password")
    bob = HttpSession(daphne.http_url).login("bob", "bob-password")
    ws = await ws_connect(f"{daphne.ws_url}/ws/", cookie=bob.cookie_header)
    frames = await connect_frames(ws)
    user = str(frames["gateway"]["user"]["id"])
    page = await asyncio.to_thread(admin.get, PAGE)
    assert row_of(page, user) == "1", page[-3000:]
    assert ">bob</a>" in page and "Close the sockets of bob" in page
    refused = await asyncio.to_thread(bob.get, PAGE)
    assert 'id="login-form"' in refused and row_of(refused, user) is None, "bob: no staff"

    start = time.monotonic()
    status, after = await asyncio.to_thread(admin.post, PAGE + "close/", {"user": user})
    assert status == 200 and "The sockets of bob are closing." in after
    assert (await recv_json(ws, 1))["error"]["code"] == "revoked"
    assert await close_code(ws, 1) == 4401
    took = time.monotonic() - start
    assert took < 1, f"closed {took:.2f} s after the admin's POST"
    # bob is still online within the grace after his last socket, with none open.
    assert row_of(await asyncio.to_thread(admin.get, PAGE), user) == "0"
