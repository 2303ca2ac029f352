"""The example project under a real daphne process, driven over HTTP and the ``websockets`` client.

One daphne per module, on the in-process channel layer and a migrated SQLite file
with the demo users. These tests cover what only a real server shows: the
session cookie set by an HTTP login authenticating a socket, a view's
notification reaching that socket, close codes as autobahn puts them on the wire,
the 403 handshake, and what ``manage.py notify`` in another process can and
cannot do without a shared channel layer.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import pytest
from websockets.exceptions import InvalidStatus

from tests.support.servers import (
    Daphne,
    HttpSession,
    client_frame,
    close_code,
    connect_frames,
    manage,
    ping,
    raw_websocket,
    read_until_closed,
    recv_json,
    serving,
    site_env,
    ws_connect,
)

pytestmark = [pytest.mark.daphne, pytest.mark.timeout(90)]

LIMIT = 64 * 1024  # WSGATEWAY["MAX_MESSAGE_SIZE"] by default
PONG = {"channel": "gateway", "id": "ping", "payload": {"action": "pong"}}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return site_env(tmp_path_factory.mktemp("live-daphne"))


@pytest.fixture(scope="module")
def daphne(env: dict[str, str]) -> Iterator[Daphne]:
    with serving(env, "live-daphne") as server:
        yield server


@pytest.fixture(scope="module")
def alice(daphne: Daphne) -> HttpSession:
    return HttpSession(daphne.http_url).login("alice", "alice-password")


@pytest.fixture(scope="module")
def bob(daphne: Daphne) -> HttpSession:
    return HttpSession(daphne.http_url).login("bob", "bob-password")


def gateway_url(daphne: Daphne) -> str:
    return f"{daphne.ws_url}/ws/"


async def post(session: HttpSession, path: str, data: dict[str, str] | None = None) -> tuple[int, str]:
    # urllib blocks; keep the event loop (and the sockets' readers) running meanwhile.
    return await asyncio.to_thread(session.post, path, data)


async def test_view_notification_reaches_the_socket_of_the_logged_in_user(
    daphne: Daphne, alice: HttpSession
) -> None:
    async with await ws_connect(
        gateway_url(daphne), cookie=alice.cookie_header, origin=daphne.http_url
    ) as ws:
        frames = await connect_frames(ws)
        assert list(frames) == ["gateway", "notifications", "clipboard"]
        assert frames["gateway"]["user"]["username"] == "alice"
        assert frames["gateway"]["services"] == ["notifications", "clipboard"]
        unread = frames["notifications"]["unread"]
        assert isinstance(frames["clipboard"]["clipboard"], list)

        status, body = await post(alice, "/notify-me/", {"message": "Report ready", "category": "success"})
        assert status == 200, body
        notification_id = json.loads(body)["id"]

        frame = await recv_json(ws)
        assert frame["channel"] == "notifications"
        payload = frame["payload"]
        assert payload["category"] == "success"
        assert payload["unread"] == unread + 1
        last = payload["last"]
        assert last["id"] == notification_id
        assert (last["category"], last["label"], last["is_read"]) == ("success", "Report ready", False)
        assert last["actions"] == [{"label": "Open", "url": "/"}]
        assert last["metainfo"]["createdUser"] == "alice"
        assert last["metainfo"]["createdDatetime"]


async def test_socket_without_credentials_gets_unauthorized_and_4401(daphne: Daphne) -> None:
    async with await ws_connect(gateway_url(daphne)) as ws:
        frame = await recv_json(ws)
        assert frame["channel"] == "gateway"
        assert frame["error"]["code"] == "unauthorized"
        assert await close_code(ws) == 4401


async def test_bearer_token_from_the_token_view_authenticates_a_socket_without_cookie(
    daphne: Daphne, alice: HttpSession
) -> None:
    status, body = await post(alice, "/wsgateway/token/")
    assert status == 200, body
    token = json.loads(body)["token"]

    async with await ws_connect(gateway_url(daphne), headers={"Authorization": f"Bearer {token}"}) as ws:
        frames = await connect_frames(ws)
        assert frames["gateway"]["user"]["username"] == "alice"
        assert await ping(ws) == PONG


async def test_invalid_bearer_token_gets_token_invalid_and_4401(daphne: Daphne, bob: HttpSession) -> None:
    # The token is presented, so it decides: bob's valid session cookie does not rescue it.
    async with await ws_connect(
        gateway_url(daphne), cookie=bob.cookie_header, headers={"Authorization": "Bearer not-a-token"}
    ) as ws:
        frame = await recv_json(ws)
        assert frame["error"]["code"] == "token_invalid"
        assert await close_code(ws) == 4401


async def test_foreign_origin_is_refused_with_403(daphne: Daphne, alice: HttpSession) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await ws_connect(gateway_url(daphne), cookie=alice.cookie_header, origin="http://evil.example")
    assert refused.value.response.status_code == 403


async def test_a_page_on_another_port_of_the_same_host_is_refused_with_403(
    daphne: Daphne, alice: HttpSession
) -> None:
    """The browser sends alice's cookie to every port of the host: the port must be the socket's own."""
    scheme_and_host, port = daphne.http_url.rsplit(":", 1)
    with pytest.raises(InvalidStatus) as refused:
        await ws_connect(
            gateway_url(daphne), cookie=alice.cookie_header, origin=f"{scheme_and_host}:{int(port) + 1}"
        )
    assert refused.value.response.status_code == 403


async def test_frame_over_64_kib_closes_with_4413_under_daphne(daphne: Daphne, alice: HttpSession) -> None:
    async with await ws_connect(gateway_url(daphne), cookie=alice.cookie_header) as ws:
        await connect_frames(ws)
        # Exactly at the limit: read, found not to be JSON, answered; the socket stays open.
        await ws.send("x" * LIMIT)
        frame = await recv_json(ws)
        assert frame["error"]["code"] == "invalid_json"
        assert await ping(ws) == PONG
        # One byte over: closed. Not with 1009, which autobahn (daphne's WebSocket
        # implementation) refuses to send for an application (only 1000 and
        # 3000-4999), and which daphne's own --websocket-max-message-size cannot
        # produce either (autobahn drops the TCP connection instead): the gateway
        # falls back to its private code, and the module fixture checks that
        # daphne logged no exception on the way.
        await ws.send("x" * (LIMIT + 1))
        assert await close_code(ws) == 4413


async def test_notification_reaches_every_socket_of_the_user_and_no_one_else(
    daphne: Daphne, alice: HttpSession, bob: HttpSession
) -> None:
    url = gateway_url(daphne)
    async with (
        await ws_connect(url, cookie=alice.cookie_header) as tab,
        await ws_connect(url, cookie=alice.cookie_header) as other_tab,
        await ws_connect(url, cookie=bob.cookie_header) as bobs,
    ):
        for ws in (tab, other_tab, bobs):
            await connect_frames(ws)

        status, body = await post(alice, "/notify-me/", {"message": "For both tabs"})
        assert status == 200, body
        notification_id = json.loads(body)["id"]

        for ws in (tab, other_tab):
            frame = await recv_json(ws)
            assert frame["channel"] == "notifications"
            assert frame["payload"]["last"]["id"] == notification_id
        assert await ping(bobs) == PONG


async def test_logout_closes_that_sessions_socket_with_4401_and_leaves_others_open(
    daphne: Daphne, bob: HttpSession
) -> None:
    leaving = HttpSession(daphne.http_url)
    await asyncio.to_thread(leaving.login, "alice", "alice-password")
    url = gateway_url(daphne)
    async with (
        await ws_connect(url, cookie=leaving.cookie_header) as alices,
        await ws_connect(url, cookie=bob.cookie_header) as bobs,
    ):
        await connect_frames(alices)
        await connect_frames(bobs)

        status, _ = await post(leaving, "/accounts/logout/")
        assert status == 200

        frame = await recv_json(alices)
        assert frame["channel"] == "gateway"
        assert frame["error"]["code"] == "logged_out"
        assert await close_code(alices) == 4401
        assert await ping(bobs) == PONG


async def test_notify_command_in_another_process_is_stored_for_the_next_connect(
    daphne: Daphne, env: dict[str, str], alice: HttpSession
) -> None:
    url = gateway_url(daphne)
    async with await ws_connect(url, cookie=alice.cookie_header) as ws:
        first = (await connect_frames(ws))["notifications"]
        before, seq = first["unread"], first["seq"]

        result = await asyncio.to_thread(
            manage, env, "notify", "alice", "Stored, not pushed", "--category", "error"
        )
        assert "Stored 1 notification(s)." in result.stdout
        assert "Not delivered live: the in-process channel layer" in result.stdout
        assert "Pushed live" not in result.stdout
        # The in-process layer of daphne never heard of it: nothing arrives before the pong.
        assert await ping(ws) == PONG

    async with await ws_connect(url, cookie=alice.cookie_header) as ws:
        assert (await connect_frames(ws))["notifications"] == {
            "unread": before + 1,
            "category": "error",
            "seq": seq + 1,  # the page that reconnects asks for what is over its cursor: this one
            # One more unread and unseen, counted by the badge (unread by default).
            "counts": {
                **first["counts"],
                **{key: first["counts"][key] + 1 for key in ("unread", "unseen", "badge")},
            },
        }


def test_a_stray_continuation_frame_after_a_valid_frame_ends_the_socket_without_a_traceback(
    daphne: Daphne, alice: HttpSession
) -> None:
    # The continuation frame continues nothing: autobahn drops the TCP connection at once, and
    # daphne learns it a moment later. The ping's pong is sent in between, and daphne's send
    # raised "Attempt to send on a closed protocol" inside the application, which then never
    # read its disconnect: no cleanup, and a traceback in daphne's log.
    log_before = len(daphne.log())
    ping = json.dumps({"channel": "gateway", "id": "p", "payload": {"action": "ping"}}).encode()
    for _ in range(5):
        with raw_websocket(daphne, alice.cookie_header) as sock:
            sock.sendall(client_frame(0x1, ping) + client_frame(0x0, b"stray"))
            read_until_closed(sock)
    time.sleep(2.5)  # daphne's application_checker, once a second, logs what an application raised
    assert daphne.alive()
    log = daphne.log()[log_before:]
    assert "Attempt to send on a closed protocol" not in log
    assert "Exception inside application" not in log
