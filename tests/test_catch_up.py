"""Nothing lost: a page that follows the protocol's cursor ends up with every notification stored for
its user, once each and in order, across a disconnect, a burst past the layer's queue, and a daphne
killed and restarted while notifications are being created. Real daphne processes; SQLite files.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.support.catchup import CursorPage, follow_until, notify_in_another_process
from tests.support.servers import Daphne, HttpSession, manage, site_env
from tests.support.wsclient import Client

pytestmark = [pytest.mark.daphne, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return site_env(tmp_path_factory.mktemp("catch-up"))


@pytest.fixture
def daphne(env: dict[str, str]) -> Iterator[Daphne]:
    server = Daphne(env, name="catch-up").start()
    try:
        yield server
    finally:
        server.stop()


def stored_seqs(env: dict[str, str]) -> list[int]:
    out = manage(
        env,
        "shell",
        "-c",
        "from wsgateway.models import Notification; "
        "print(list(Notification.objects.filter(recipient__username='alice').order_by('seq')"
        ".values_list('seq', flat=True)))",
    ).stdout
    listed = out.strip().splitlines()[-1]  # after what the shell says it imported
    return [int(part) for part in listed.strip("[]").split(",") if part.strip()]


async def open_page(daphne: Daphne, alice: HttpSession, page: CursorPage) -> Client:
    client = await Client(f"{daphne.ws_url}/ws/", {"Cookie": alice.cookie_header}).connect()
    await page.follow(client)
    return client


async def a_page_of_alice(daphne: Daphne) -> tuple[HttpSession, CursorPage, Client, int]:
    """alice logged in, a page following her socket, and where its cursor starts."""
    alice = HttpSession(daphne.http_url).login("alice", "alice-password")
    page = CursorPage()
    client = await open_page(daphne, alice, page)
    assert page.cursor is not None
    return alice, page, client, page.cursor


async def test_notifications_created_while_away_arrive_once_each_in_order(
    env: dict[str, str], daphne: Daphne
) -> None:
    alice, page, client, start = await a_page_of_alice(daphne)
    await client.close()
    await asyncio.to_thread(notify_in_another_process(env, 50, 0).communicate, timeout=60)
    client = await open_page(daphne, alice, page)
    await client.close()
    assert page.delivered == list(range(start + 1, start + 51))


async def test_a_burst_past_the_layers_queue_reaches_the_page_live_or_by_the_catch_up(
    env: dict[str, str], daphne: Daphne
) -> None:
    alice, page, client, start = await a_page_of_alice(daphne)
    status, body = await asyncio.to_thread(alice.post, "/notify-me/", {"message": "burst", "count": "1000"})
    assert status == 200, body
    want = list(range(start + 1, start + 1001))

    await follow_until(page, client, want, timeout=60)
    await client.close()
    assert page.delivered == want


async def test_a_daphne_killed_while_notifications_are_created_loses_none(
    env: dict[str, str], daphne: Daphne
) -> None:
    alice, page, client, start = await a_page_of_alice(daphne)
    writer = notify_in_another_process(env, 60, 0.05)
    await asyncio.sleep(1)
    daphne.proc.kill()  # SIGKILL: no close frame, nothing flushed
    daphne.proc.wait(10)
    await client.close_code(timeout=10)
    await page.follow(client)
    await asyncio.sleep(1)
    daphne.start()  # on the same port, as a process manager would restart it
    client = await open_page(daphne, alice, page)
    _, err = await asyncio.to_thread(writer.communicate, timeout=60)
    assert writer.returncode == 0, err
    await page.sync(client)
    await client.close()
    assert page.delivered == list(range(start + 1, start + 61))
    assert page.delivered == [seq for seq in stored_seqs(env) if seq > start]
