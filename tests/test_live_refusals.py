"""Refusals and the subprotocol on real servers: what a client reads on the wire.

The ``wsgateway.v1`` subprotocol in the handshake's answer under daphne, uvicorn and hypercorn (each
server writes the header itself, from the accept's ``subprotocol``); an offer of only other
subprotocols answered HTTP 403; maintenance switched on and off by ``manage.py
wsgateway_maintenance`` in another process, as a deploy would; a retired path (``ws/v0/`` in the
example project) refusing with 4410.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from tests.support.servers import (
    Daphne,
    HttpSession,
    Hypercorn,
    Server,
    Uvicorn,
    close_code,
    connect_frames,
    manage,
    ping,
    project_env,
    recv_json,
    running,
    sqlite_database,
    ws_connect,
)

pytestmark = [pytest.mark.timeout(120)]

V1 = Subprotocol("wsgateway.v1")
#: How long a switch may take to reach a server: MAINTENANCE_CHECK_INTERVAL (1 s here), and the
#: manage.py run, with room for a loaded machine. A bound on a wait, not a measurement.
SWITCH_BOUND = 20.0


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> str:
    return sqlite_database(tmp_path_factory.mktemp("live-refusals"))


@pytest.fixture(scope="module")
def env(database: str) -> dict[str, str]:
    return project_env(DATABASE_URL=database, WSGATEWAY_MAINTENANCE_CHECK_INTERVAL="1")


@pytest.fixture(
    scope="module",
    params=[
        pytest.param(Daphne, marks=pytest.mark.daphne),
        pytest.param(Uvicorn, marks=pytest.mark.servers),
        pytest.param(Hypercorn, marks=pytest.mark.servers),
    ],
    ids=lambda kind: kind.program,
)
def server(request: pytest.FixtureRequest, env: dict[str, str]) -> Iterator[Server]:
    with running(request.param(env, name=f"refusals-{request.param.program}")) as started:
        yield started


@pytest.fixture(scope="module")
def alice(server: Server) -> HttpSession:
    return HttpSession(server.http_url).login("alice", "alice-password")


async def open_socket(server: Server, session: HttpSession | None, path: str = "/ws/", **kwargs: Any) -> Any:
    cookie = session.cookie_header if session is not None else None
    return await ws_connect(f"{server.ws_url}{path}", cookie=cookie, origin=server.http_url, **kwargs)


# -- the subprotocol -------------------------------------------------------------------------


async def test_a_client_offering_wsgateway_v1_gets_it_in_the_answer_and_is_served(
    server: Server, alice: HttpSession
) -> None:
    async with await open_socket(server, alice, subprotocols=[Subprotocol("chat"), V1]) as ws:
        assert ws.subprotocol == "wsgateway.v1"
        assert ws.response is not None and ws.response.headers["Sec-WebSocket-Protocol"] == "wsgateway.v1"
        assert (await connect_frames(ws))["gateway"]["user"]["username"] == "alice"
        assert (await ping(ws))["payload"] == {"action": "pong"}


async def test_a_client_offering_none_is_served_with_no_subprotocol_in_the_answer(
    server: Server, alice: HttpSession
) -> None:
    async with await open_socket(server, alice) as ws:
        assert ws.subprotocol is None
        assert ws.response is not None and "Sec-WebSocket-Protocol" not in ws.response.headers
        assert (await connect_frames(ws))["gateway"]["user"]["username"] == "alice"


@pytest.mark.parametrize("offer", [["wsgateway.v2"], ["chat", "mqtt"]])
async def test_a_client_offering_only_other_subprotocols_is_answered_403(
    server: Server, alice: HttpSession, offer: list[str]
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await open_socket(server, alice, subprotocols=[Subprotocol(name) for name in offer])
    assert refused.value.response.status_code == 403


async def test_a_retired_path_says_why_and_closes_4410_with_the_subprotocol(server: Server) -> None:
    async with await open_socket(server, None, "/ws/v0/", subprotocols=[V1]) as ws:
        assert ws.subprotocol == "wsgateway.v1"
        assert await recv_json(ws) == {
            "channel": "gateway",
            "error": {"code": "gone", "message": "This endpoint is retired: use /ws/."},
        }
        assert await close_code(ws) == 4410


# -- maintenance, switched by manage.py in another process ------------------------------------


async def refusal_within(server: Server, session: HttpSession, bound: float = SWITCH_BOUND) -> Any:
    """Open sockets until one is refused (the switch has reached the server); its frame and close code."""
    deadline = time.monotonic() + bound
    while True:
        async with await open_socket(server, session, subprotocols=[V1]) as ws:
            first = await recv_json(ws)
            if "error" in first:
                return first, await close_code(ws)
        assert time.monotonic() < deadline, f"still accepted {bound} s after maintenance went on"
        await asyncio.sleep(0.2)


async def served_within(
    server: Server, session: HttpSession, bound: float = SWITCH_BOUND
) -> ClientConnection:
    deadline = time.monotonic() + bound
    while True:
        ws = await open_socket(server, session)
        first = await recv_json(ws)
        if "payload" in first:
            await connect_frames(ws, count=2)  # the services' connect frames, after the hello
            return ws
        await close_code(ws)
        assert time.monotonic() < deadline, f"still refused {bound} s after maintenance went off"
        await asyncio.sleep(0.2)


async def test_maintenance_on_refuses_new_sockets_with_4503_open_ones_stay_and_off_serves_again(
    server: Server, env: dict[str, str], alice: HttpSession
) -> None:
    already_open = await open_socket(server, alice)
    await connect_frames(already_open)
    try:
        await asyncio.to_thread(
            manage, env, "wsgateway_maintenance", "on", "--reason", "Upgrading", "--retry-after", "3"
        )
        frame, code = await refusal_within(server, alice)
        assert frame == {
            "channel": "gateway",
            "error": {"code": "maintenance", "message": "Upgrading", "retry_after": 3},
        }
        assert code == 4503
        assert (await ping(already_open))["payload"] == {"action": "pong"}
    finally:
        await asyncio.to_thread(manage, env, "wsgateway_maintenance", "off")
    async with await served_within(server, alice) as ws:
        assert (await ping(ws, within=10))["payload"] == {"action": "pong"}
    await already_open.close()
