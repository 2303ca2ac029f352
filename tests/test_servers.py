"""The example project under uvicorn, hypercorn and granian: what docs/deployment.md promises on each.

daphne has its own module (test_live_daphne.py). Here each server is started as a site would
start it, on the in-process channel layer and a migrated SQLite file with the demo users, and
driven as a browser would: a login over HTTP, then sockets with its session cookie. One server
per module and kind; the fixture fails if it died or logged a traceback.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus

from tests.support.servers import (
    Granian,
    HttpSession,
    Hypercorn,
    Server,
    Uvicorn,
    client_frame,
    close_code,
    connect_frames,
    ping,
    project_env,
    raw_websocket,
    read_until_closed,
    recv_json,
    running,
    sqlite_database,
    ws_connect,
)

pytestmark = [pytest.mark.servers, pytest.mark.timeout(60)]


class UvicornWebsockets(Uvicorn):
    """uvicorn's legacy WebSocket protocol (``--ws websockets``): deprecated in 0.55, still served, and
    one of the benchmark's rows. Its ``receive()`` answers every call after the client's disconnect with
    another disconnect at once, which wsgateway's reader must not call again (runtime.serve)."""

    program = "uvicorn-websockets"

    def command(self, *extra_args: str) -> list[str]:
        return super().command("--ws", "websockets", *extra_args)


LIMIT = 64 * 1024  # WSGATEWAY["MAX_MESSAGE_SIZE"] by default
WINDOW = 1024 * 1024  # WSGATEWAY["OUTBOUND_WINDOW"] by default
PONG = {"channel": "gateway", "id": "ping", "payload": {"action": "pong"}}


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> str:
    return sqlite_database(tmp_path_factory.mktemp("servers"))


@pytest.fixture(
    scope="module", params=[Uvicorn, UvicornWebsockets, Hypercorn, Granian], ids=lambda kind: kind.program
)
def server(request: pytest.FixtureRequest, database: str) -> Iterator[Server]:
    # DEBUG for wsgateway's own log: what the server's send raised for a closing socket shows there.
    env = project_env(DATABASE_URL=database, WSGATEWAY_LOG_LEVEL="DEBUG")
    with running(request.param(env, name=f"servers-{request.param.program}")) as started:
        yield started


@pytest.fixture(scope="module")
def alice(server: Server) -> HttpSession:
    return HttpSession(server.http_url).login("alice", "alice-password")


def gateway_url(server: Server) -> str:
    return f"{server.ws_url}/ws/"


async def test_a_logged_in_socket_gets_its_connect_frames_and_a_views_push(
    server: Server, alice: HttpSession
) -> None:
    async with await ws_connect(
        gateway_url(server), cookie=alice.cookie_header, origin=server.http_url
    ) as ws:
        frames = await connect_frames(ws)
        assert list(frames) == ["gateway", "notifications", "clipboard"]
        assert frames["gateway"]["user"]["username"] == "alice"
        unread = frames["notifications"]["unread"]

        status, body = await asyncio.to_thread(alice.post, "/notify-me/", {"message": "Served"})
        assert status == 200, body
        frame = await recv_json(ws)
        assert frame["channel"] == "notifications"
        assert frame["payload"]["unread"] == unread + 1
        assert frame["payload"]["last"]["id"] == json.loads(body)["id"]


async def test_sockets_closed_by_their_client_one_after_another_leave_the_server_serving(
    server: Server, alice: HttpSession
) -> None:
    """Each socket's disconnect is the last message wsgateway reads of it: a reader that asked again
    spun under uvicorn's legacy protocol, and the next handshake timed out."""
    for _ in range(3):
        async with await ws_connect(gateway_url(server), cookie=alice.cookie_header) as ws:
            assert list(await connect_frames(ws)) == ["gateway", "notifications", "clipboard"]
        await asyncio.sleep(0.2)  # the server has read the close
    assert server.alive()


async def test_a_foreign_origin_is_refused_with_403(server: Server, alice: HttpSession) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await ws_connect(gateway_url(server), cookie=alice.cookie_header, origin="http://evil.example")
    assert refused.value.response.status_code == 403


async def test_a_socket_without_credentials_gets_unauthorized_and_4401(server: Server) -> None:
    async with await ws_connect(gateway_url(server)) as ws:
        frame = await recv_json(ws)
        assert frame["error"]["code"] == "unauthorized"
        assert await close_code(ws) == 4401


async def test_a_frame_over_64_kib_closes_with_1009(server: Server, alice: HttpSession) -> None:
    """Both servers let an application close with 1009, so there is no 4413 fallback here (that is
    daphne's, see docs/protocol.md, Close codes); and their own limits (16 MiB) are far above."""
    async with await ws_connect(gateway_url(server), cookie=alice.cookie_header) as ws:
        await connect_frames(ws)
        await ws.send("x" * LIMIT)  # at the limit: read, found not to be JSON, answered
        assert (await recv_json(ws))["error"]["code"] == "invalid_json"
        assert await ping(ws) == PONG
        await ws.send("x" * (LIMIT + 1))
        assert await close_code(ws) == 1009


async def test_flow_control_window_in_the_hello_marks_in_the_stream_and_acks_taken_silently(
    server: Server, alice: HttpSession
) -> None:
    async with await ws_connect(gateway_url(server), cookie=alice.cookie_header) as ws:
        hello = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert hello["payload"]["window"] == WINDOW
        await connect_frames(ws, 2)
        # About 580 KB of notifications: over two quarters of the window, so two marks among them.
        status, body = await asyncio.to_thread(
            alice.post, "/notify-me/", {"count": "400", "message": "m" * 1000}
        )
        assert status == 200, body
        pushes, marks = 0, []
        while pushes < 400:
            payload = (await recv_json(ws))["payload"]
            if payload.get("action") == "mark":
                marks.append(payload["data"])
            else:
                pushes += 1
        assert len(marks) == 2 and all(isinstance(mark, str) for mark in marks)

        await ws.send(json.dumps({"channel": "gateway", "payload": {"action": "ack", "data": marks[0]}}))
        assert await ping(ws) == PONG  # nothing came for the ack: the pong is the next frame
        ack = {"channel": "gateway", "id": 7, "payload": {"action": "ack", "data": marks[1]}}
        await ws.send(json.dumps(ack))
        assert await recv_json(ws) == {"channel": "gateway", "id": 7, "payload": {}}


def test_wsgateway_js_is_served_under_debug_with_staticfiles_urlpatterns(server: Server) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{server.http_url}/static/wsgateway/wsgateway.js", timeout=10) as response:
        assert response.status == 200
        assert "javascript" in response.headers["Content-Type"]
        body = response.read()
    source = Path(__file__).resolve().parents[1] / "wsgateway" / "static" / "wsgateway" / "wsgateway.js"
    assert body == source.read_bytes()


def pings(count: int) -> bytes:
    return b"".join(
        client_frame(0x1, json.dumps({"channel": "gateway", "id": n, "payload": {"action": "ping"}}).encode())
        for n in range(count)
    )


#: What the server's ``send`` raised, as wsgateway logs it at DEBUG, when a socket's frames are
#: answered after the server read the client's close: uvicorn raises ClientDisconnected (an OSError,
#: in consumers.SOCKET_GONE); hypercorn raises nothing, it drops the frame.
SEND_TO_A_CLOSING_SOCKET = {
    "uvicorn": "ClientDisconnected()",
    "uvicorn-websockets": "ClientDisconnected()",
    "hypercorn": None,
    "granian": None,
}


def test_a_client_that_leaves_while_it_is_answered_leaves_no_traceback(
    server: Server, alice: HttpSession
) -> None:
    """45 pings and the client's close in one write. The server reads them all at once, so it has
    the close while wsgateway still answers: the 5 pings over RATE_BURST (40) are answered
    rate_limited by the task that reads the client, at once, and so after the server knows the
    socket is closing. What the server's ``send`` raises then must be in consumers.SOCKET_GONE.
    Not for want of a traceback: uvicorn swallows a ClientDisconnected that escapes the application,
    without a word, and the consumer would end there, before its disconnect's clean-up; so the
    test asserts wsgateway's own DEBUG line. Then a stray continuation frame after pings, a
    protocol error that ends the connection (what made daphne raise)."""
    close = client_frame(0x8, (1000).to_bytes(2, "big"))
    log_before = len(server.log())
    for frames in [pings(45) + close] * 3 + [pings(5) + client_frame(0x0, b"stray")] * 3:
        with raw_websocket(server, alice.cookie_header) as sock:
            sock.sendall(frames)
            read_until_closed(sock)
        time.sleep(0.4)  # the user's sockets share USER_RATE_BURST (100), refilled at 50 a second
    time.sleep(1)  # what an application raised is logged once its task ends
    assert server.alive()
    log = server.log()[log_before:]
    raised = SEND_TO_A_CLOSING_SOCKET[server.program]
    if raised is None:
        assert "the server refused" not in log
    else:
        assert f"the socket is closing: {raised}" in log


def own_limit(kind: type[Server], size: int, directory: Path) -> tuple[str, ...]:
    """The server's arguments for its own message limit: a flag for uvicorn, a configuration
    file for hypercorn, which has no flag for it."""
    if kind is Uvicorn:
        return ("--ws-max-size", str(size))
    config = directory / "hypercorn.toml"
    config.write_text(f"websocket_max_message_size = {size}\n")
    return ("-c", str(config))


@pytest.mark.parametrize("kind", [Uvicorn, Hypercorn], ids=lambda kind: kind.program)
async def test_a_message_over_the_servers_own_limit_is_closed_by_the_server_with_1009(
    kind: type[Server], database: str, tmp_path: Path
) -> None:
    """The server's limit set below MAX_MESSAGE_SIZE, so that the close can only be the server's:
    1009 too, where daphne drops the connection without a close code (see docs/deployment.md). granian
    2.8 has no setting for its own limit, so it is not here."""
    own = LIMIT // 2
    env = project_env(DATABASE_URL=database)
    with running(kind(env, name=f"servers-limit-{kind.program}"), *own_limit(kind, own, tmp_path)) as server:
        alice = await asyncio.to_thread(HttpSession(server.http_url).login, "alice", "alice-password")
        async with await ws_connect(gateway_url(server), cookie=alice.cookie_header) as ws:
            await connect_frames(ws)
            await ws.send("x" * own)  # at the server's limit: it reaches wsgateway
            assert (await recv_json(ws))["error"]["code"] == "invalid_json"
            await ws.send("x" * (own + 1))
            assert await close_code(ws) == 1009


async def test_a_user_closed_4429_is_refused_at_once_when_they_reconnect(server: Server) -> None:
    """The cool-down starts before the close: uvicorn's legacy protocol waits in its close for the
    client's own close frame, and a client that reconnected without answering it got in (issue 24's
    bench: 8 and 9 reconnects of 9 in). Here the client reconnects as soon as it reads why it is closed."""
    bob = HttpSession(server.http_url).login("bob", "bob-password")  # alice's tests go on meanwhile
    async with await ws_connect(gateway_url(server), cookie=bob.cookie_header, origin=server.http_url) as ws:
        await connect_frames(ws)
        # RATE_BURST (40) answered, then RATE_LIMIT_CLOSE_AFTER (50) refusals, then 4429.
        for n in range(200):
            await ws.send(json.dumps({"channel": "gateway", "payload": {"action": "ping"}, "id": n}))
        async with asyncio.timeout(20):
            while (await recv_json(ws)).get("error", {}).get("code") != "too_many_frames":
                pass
        # The first socket is not closed yet, nor its close answered.
        again = await ws_connect(gateway_url(server), cookie=bob.cookie_header, origin=server.http_url)
        async with again:
            frame = await recv_json(again)
            assert frame["error"]["code"] == "too_many_frames", frame
            assert await close_code(again) == 4429
