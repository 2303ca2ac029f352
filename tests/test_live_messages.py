"""Django's messages on the socket, for real: the example project under daphne (LiveMessagesMiddleware,
MessagesService), alice's sockets and her HTTP session, on Django's cookie and session storages; and two
daphnes sharing wsgateway's Redis layer, where the socket is on one and the request on the other.

The demo's ``/message-me/`` adds one message; its home page shows what waits in the storage.
"""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.servers import Daphne, HttpSession, Site, daphnes_on_redis, live_site
from tests.support.wsclient import Client

pytestmark = [pytest.mark.daphne, pytest.mark.timeout(120)]

#: What fetch() sends from the demo's page; a form sent without it is a page load ("navigate").
FETCH = {"Accept": "application/json", "Sec-Fetch-Mode": "cors"}
NAVIGATE = {"Sec-Fetch-Mode": "navigate"}


@pytest.fixture(scope="module", params=["cookie", "session"])
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    directory = tmp_path_factory.mktemp(f"live-messages-{request.param}")
    name = f"live-messages-{request.param}"
    with live_site(
        directory, name, WSGATEWAY_LIVE_MESSAGES="1", DJANGO_MESSAGE_STORAGE=request.param
    ) as site:
        yield site


def post(session: HttpSession, path: str, data: dict[str, str], headers: dict[str, str]) -> tuple[int, str]:
    """POST a form as a browser would, with ``headers`` (HttpSession.post sends none of these)."""
    token = session.cookie("csrftoken") or ""
    request = urllib.request.Request(
        session.base_url + path,
        data=urllib.parse.urlencode({**data, "csrfmiddlewaretoken": token}).encode(),
        headers={"Referer": session.base_url + "/", "X-CSRFToken": token, **headers},
    )
    try:
        with session.opener.open(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def send(session: HttpSession, text: str, headers: dict[str, str], level: str = "success") -> str:
    status, body = await asyncio.to_thread(
        post, session, "/message-me/", {"message": text, "level": level}, headers
    )
    assert status == 200, body
    return body


async def tabs(daphne: Daphne, session: HttpSession, count: int) -> list[Client]:
    url, headers = f"{daphne.ws_url}/ws/", {"Cookie": session.cookie_header}
    # The hello and the connect frames of notifications, clipboard and messages.
    return [await Client(url, headers).connect(expect_frames=4) for _ in range(count)]


def pushes(tab: Client) -> list[Any]:
    """The payloads pushed on the messages channel: after its connect frame, which is empty."""
    connect, *rest = tab.on("messages")
    assert connect == {"messages": []}
    return rest


async def pushed(tab: Client, count: int = 1) -> list[Any]:
    """The first ``count`` payloads pushed on the messages channel."""
    return list(await tab.wait_for(lambda frames: (found := pushes(tab))[count - 1 :] and found))


async def test_a_fetch_reaches_every_tab_and_no_page_shows_it_again(site: Site) -> None:
    first, second = await tabs(site.daphne, site.alice, 2)
    try:
        assert (await first.wait_for(lambda frames: frames[0]))["payload"]["services"][-1] == "messages"
        await send(site.alice, "Saved <b>safely</b>.", FETCH)
        expected = {"messages": [{"level": "success", "tags": "success", "text": "Saved <b>safely</b>."}]}
        assert await pushed(second) == [expected]
        assert await pushed(first) == [expected]
        page = await asyncio.to_thread(site.alice.get, "/")
        assert "safely" not in page
        assert 'id="page-messages"' not in page
    finally:
        for tab in (first, second):
            await tab.close()


async def test_a_page_load_shows_it_on_the_page_it_goes_to_and_pushes_nothing(site: Site) -> None:
    (tab,) = await tabs(site.daphne, site.alice, 1)
    try:
        page = await send(site.alice, "Kept for the page.", NAVIGATE, level="warning")  # redirected to /
        assert 'data-level="warning">Kept for the page.</li>' in page
        assert "Kept for the page." not in await asyncio.to_thread(site.alice.get, "/")  # shown once
        # The socket's frames are in order: had the page load's message been pushed, it would come first.
        await send(site.alice, "Then a fetch.", FETCH)
        assert [payload["messages"][0]["text"] for payload in await pushed(tab)] == ["Then a fetch."]
    finally:
        await tab.close()


async def test_a_user_with_no_socket_open_sees_it_on_the_next_page(site: Site) -> None:
    bob = HttpSession(site.daphne.http_url).login("bob", "bob-password")
    await send(bob, "Waiting for bob.", FETCH)
    page = await asyncio.to_thread(bob.get, "/")
    assert 'data-level="success">Waiting for bob.</li>' in page
    assert "Waiting for bob." not in await asyncio.to_thread(bob.get, "/")


@pytest.mark.redis
async def test_across_processes_on_redis(tmp_path: Path) -> None:
    """The socket on one daphne, the request on the other: wsgateway's Redis layer counts the sockets
    of both, and carries the push."""
    with daphnes_on_redis(tmp_path, "live-messages-redis", WSGATEWAY_LIVE_MESSAGES="1") as (_, first, second):
        alice = HttpSession(second.http_url).login("alice", "alice-password")
        (tab,) = await tabs(first, alice, 1)
        try:
            await send(alice, "From the other process.", FETCH)
            assert (await pushed(tab))[0]["messages"][0]["text"] == "From the other process."
            assert "From the other process." not in await asyncio.to_thread(alice.get, "/")
        finally:
            await tab.close()
        # With no socket open (once the cap's registry lets it go), the page shows it again.
        await until_no_socket(alice)
        await send(alice, "Nobody listening.", FETCH)
        assert "Nobody listening." in await asyncio.to_thread(alice.get, "/")


async def until_no_socket(session: HttpSession) -> None:
    """Wait (bounded) until the closed socket is out of the registry: a fetch then adds a message that
    stays. Asked through the demo itself: a message sent while a socket is still registered is pushed,
    and the page does not show it."""
    async with asyncio.timeout(10):
        while True:
            await send(session, "probe", FETCH)
            if "probe" in await asyncio.to_thread(session.get, "/"):
                return
            await asyncio.sleep(0.1)
