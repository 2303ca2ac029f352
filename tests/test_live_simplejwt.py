"""An app's way in, under a real daphne: simplejwt's login view, then a socket with its access token."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.support.servers import (
    Daphne,
    HttpSession,
    close_code,
    connect_frames,
    recv_json,
    serving,
    site_env,
    ws_connect,
)

pytestmark = [pytest.mark.daphne, pytest.mark.timeout(90)]


@pytest.fixture(scope="module")
def daphne(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daphne]:
    with serving(
        site_env(tmp_path_factory.mktemp("live-simplejwt"), WSGATEWAY_SIMPLEJWT="1"), "live-simplejwt"
    ) as server:
        yield server


def obtain_tokens(daphne: Daphne, username: str, password: str) -> dict[str, str]:
    """What an app does to log in: no session, no CSRF cookie."""
    app = HttpSession(daphne.http_url)
    status, body = app.post("/api/token/", {"username": username, "password": password})
    assert status == 200, body
    assert app.cookie("sessionid") is None
    tokens: dict[str, str] = json.loads(body)
    return tokens


async def test_an_app_connects_with_its_access_token_and_not_its_refresh_token(daphne: Daphne) -> None:
    tokens = obtain_tokens(daphne, "alice", "alice-password")
    url = f"{daphne.ws_url}/ws/"
    async with await ws_connect(url, headers={"Authorization": f"Bearer {tokens['access']}"}) as ws:
        frames = await connect_frames(ws)
        assert frames["gateway"]["user"]["username"] == "alice"
    async with await ws_connect(url, headers={"Authorization": f"Bearer {tokens['refresh']}"}) as ws:
        assert (await recv_json(ws))["error"]["code"] == "token_invalid"
        assert await close_code(ws) == 4401


def test_the_token_view_answers_an_app_without_a_session_with_json_401(daphne: Daphne) -> None:
    # The whole stack, CSRF middleware included: not its HTML 403, not a login redirect.
    status, body = HttpSession(daphne.http_url).post("/wsgateway/token/")
    assert status == 401
    assert json.loads(body)["error"]["code"] == "unauthorized"
