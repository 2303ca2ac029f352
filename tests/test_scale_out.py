"""Several daphne processes on one Redis and one PostgreSQL behave as one."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.catchup import CursorPage, follow_until, notify_in_another_process
from tests.support.postgres import PostgresServer, create_database
from tests.support.servers import ROOT, Daphne, HttpSession, RedisServer, manage, project_env
from tests.support.wsclient import Client

pytestmark = [pytest.mark.daphne, pytest.mark.redis, pytest.mark.postgres, pytest.mark.slow]

if not PostgresServer.available():
    pytest.skip("PostgreSQL is not installed: the multi-process tests were not run", allow_module_level=True)


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    import os

    if os.environ.get("WSGATEWAY_TEST_POSTGRES_URL"):
        yield os.environ["WSGATEWAY_TEST_POSTGRES_URL"]
        return
    server = PostgresServer().start()
    try:
        yield server.server_url
    finally:
        server.stop()


def cluster_env(postgres_url: str, redis_url: str) -> dict[str, str]:
    env = project_env(DATABASE_URL=create_database(postgres_url), REDIS_URL=redis_url)
    manage(env, "migrate", "--noinput")
    manage(env, "demo_users")
    manage(env, "shell", "-c", CREATE_CAROL)
    return env


CREATE_CAROL = (
    "from django.contrib.auth import get_user_model; "
    "u, _ = get_user_model().objects.get_or_create(username='carol'); "
    "u.set_password('carol-password'); u.save()"
)


@pytest.fixture(scope="module")
def cluster(postgres_url: str, redis_url: str) -> Iterator[tuple[dict[str, str], Daphne, Daphne]]:
    env = cluster_env(postgres_url, redis_url)
    first, second = Daphne(env, "scale-a").start(), Daphne(env, "scale-b").start()
    try:
        yield env, first, second
    finally:
        first.stop()
        second.stop()


def login(daphne: Daphne, username: str) -> HttpSession:
    return HttpSession(daphne.http_url).login(username, f"{username}-password")


def sql(env: dict[str, str], query: str) -> Any:
    import psycopg

    with psycopg.connect(env["DATABASE_URL"]) as conn:
        return conn.execute(query).fetchone()[0]  # type: ignore[index]


async def socket(daphne: Daphne, session: HttpSession) -> Client:
    return await Client(f"{daphne.ws_url}/ws/", {"Cookie": session.cookie_header}).connect()


def notification_ids(client: Client) -> list[int]:
    return [p["last"]["id"] for p in client.on("notifications") if "last" in p]


async def test_manage_py_notify_reaches_sockets_on_both_processes(cluster: Any) -> None:
    env, first, second = cluster
    session = login(first, "alice")
    on_first, on_second = await socket(first, session), await socket(second, session)
    result = await asyncio.to_thread(manage, env, "notify", "alice", "Report ready", "--category", "warning")
    assert "Pushed live" in result.stdout
    for client in (on_first, on_second):
        payload = await client.wait_for(
            lambda frames, c=client: next((p for p in c.on("notifications") if "last" in p), None)
        )
        assert payload["last"]["label"] == "Report ready"
        assert payload["category"] == "warning"
    await on_first.close()
    await on_second.close()


async def test_clipboard_change_on_one_process_reaches_the_other(cluster: Any) -> None:
    _, first, second = cluster
    session = login(second, "bob")
    on_first, on_second = await socket(first, session), await socket(second, session)
    reply = await on_first.request("clipboard", {"action": "clipboard_add", "data": {"text": "across"}})
    pushed = await on_second.wait_for(lambda frames: next((p for p in on_second.on("clipboard")[1:]), None))
    assert pushed == reply["payload"]
    assert [entry["data"] for entry in pushed["added"]] == [{"text": "across"}]
    await on_first.close()
    await on_second.close()


CREATE_25 = (
    "from django.contrib.auth import get_user_model; from wsgateway import notify; "
    "u = get_user_model().objects.get(username='carol'); "
    "[notify(u, 'burst {worker} #%d' % i) for i in range(25)]"
)


async def test_four_processes_create_100_notifications_each_delivered_exactly_once(cluster: Any) -> None:
    env, first, second = cluster
    session = login(first, "carol")
    sockets = [await socket(first, session), await socket(second, session)]
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(ROOT / "manage.py"),
            "shell",
            "-c",
            CREATE_25.format(worker=w),
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for w in range(4)
    ]
    for worker in workers:
        _, stderr = await asyncio.wait_for(worker.communicate(), 90)
        assert worker.returncode == 0, stderr.decode()
    in_db = sql(
        env,
        "SELECT count(*) FROM wsgateway_notification n JOIN auth_user u ON u.id = n.recipient_id "
        "WHERE u.username = 'carol' AND NOT n.is_read",
    )
    assert in_db == 100
    for client in sockets:
        await client.wait_for(lambda frames, c=client: len(set(notification_ids(c))) >= 100, timeout=30)
        await asyncio.sleep(0.5)  # room for a duplicate to show up
        ids = notification_ids(client)
        assert len(ids) == len(set(ids)) == 100
        assert client.on("notifications")[-1]["unread"] == in_db
        await client.close()


async def test_logout_closes_that_users_sockets_on_every_process_and_only_theirs(cluster: Any) -> None:
    _, first, second = cluster
    alice = login(first, "alice")
    bob = login(first, "bob")
    alice_sockets = [await socket(first, alice), await socket(second, alice)]
    bob_socket = await socket(second, bob)
    status, _ = alice.post("/accounts/logout/")
    assert status == 200
    for client in alice_sockets:
        assert await client.close_code() == 4401
        assert any(f.get("error", {}).get("code") == "logged_out" for f in client.frames)
    reply = await bob_socket.request("gateway", {"action": "ping"})
    assert reply["payload"] == {"action": "pong"}
    await bob_socket.close()


SET_PASSWORD = (
    "from django.contrib.auth import get_user_model; "
    "u = get_user_model().objects.get(username='{username}'); "
    "u.set_password('{username}-password'); u.save()"  # the same password, a new salt: a new hash
)
DELETE_SESSION = (
    "from django.contrib.sessions.models import Session; Session.objects.get(session_key='{key}').delete()"
)


async def closed_within(clients: list[Client], seconds: float) -> list[tuple[int | None, str | None]]:
    """Each client's close code and the code of its last error frame, once all closed within ``seconds``."""
    async with asyncio.timeout(seconds):
        codes = [await client.close_code() for client in clients]
    return [
        (code, next((f["error"]["code"] for f in reversed(c.frames) if "error" in f), None))
        for code, c in zip(codes, clients, strict=True)
    ]


async def test_a_password_change_in_another_process_closes_the_users_sockets_on_both_within_a_second(
    cluster: Any,
) -> None:
    env, first, second = cluster
    alice, bob = login(first, "alice"), login(second, "bob")
    alice_sockets = [await socket(first, alice), await socket(second, alice)]
    bob_socket = await socket(first, bob)
    # A worker process, neither daphne: the change is saved, and its signal goes through Redis.
    await asyncio.to_thread(manage, env, "shell", "-c", SET_PASSWORD.format(username="alice"))
    assert await closed_within(alice_sockets, 1) == [(4401, "revoked")] * 2
    reply = await bob_socket.request("gateway", {"action": "ping"})
    assert reply["payload"] == {"action": "pong"}
    await bob_socket.close()


async def test_deleting_a_session_closes_its_sockets_on_both_processes_and_no_other(cluster: Any) -> None:
    env, first, second = cluster
    laptop, phone = login(first, "bob"), login(second, "bob")
    laptop_sockets = [await socket(first, laptop), await socket(second, laptop)]
    phone_socket = await socket(first, phone)
    key = laptop.cookie("sessionid")
    await asyncio.to_thread(manage, env, "shell", "-c", DELETE_SESSION.format(key=key))
    assert await closed_within(laptop_sockets, 1) == [(4401, "session_ended")] * 2
    reply = await phone_socket.request("gateway", {"action": "ping"})
    assert reply["payload"] == {"action": "pong"}
    await phone_socket.close()


# -- to every socket: broadcast(), close_sockets(), user_sockets() ---------------------------

BROADCAST = "import wsgateway; wsgateway.broadcast('notifications', {'announcement': 'Deploy at 22:00'})"


def broadcasts(client: Client) -> list[dict[str, Any]]:
    return [p for p in client.on("notifications") if "announcement" in p]


async def test_a_broadcast_from_a_manage_py_run_reaches_every_socket_on_both_processes_once(
    cluster: Any,
) -> None:
    env, first, second = cluster
    alice, bob = login(first, "alice"), login(second, "bob")
    clients = [await socket(first, alice), await socket(second, alice), await socket(second, bob)]
    await asyncio.to_thread(manage, env, "shell", "-c", BROADCAST)
    for client in clients:
        await client.wait_for(lambda frames, c=client: broadcasts(c))
    await asyncio.sleep(0.5)  # room for a duplicate to show up
    for client in clients:
        assert broadcasts(client) == [{"announcement": "Deploy at 22:00"}]
        [pushed] = [f for f in client.frames if f.get("payload") == broadcasts(client)[0]]
        assert pushed == {"channel": "notifications", "payload": {"announcement": "Deploy at 22:00"}}
        await client.close()


@pytest.mark.parametrize("layer", ["core", "pubsub"])
async def test_a_broadcast_reaches_both_processes_on_channels_redis_too(
    postgres_url: str, redis_url: str, layer: str
) -> None:
    env = {**cluster_env(postgres_url, redis_url), "WSGATEWAY_REDIS_LAYER": layer}
    daphnes = [Daphne(env, f"{layer}-a").start(), Daphne(env, f"{layer}-b").start()]
    try:
        session = login(daphnes[0], "carol")
        clients = [await socket(d, session) for d in daphnes]
        await asyncio.to_thread(manage, env, "shell", "-c", BROADCAST)
        for client in clients:
            await client.wait_for(lambda frames, c=client: broadcasts(c))
        await asyncio.sleep(0.5)
        for client in clients:
            assert broadcasts(client) == [{"announcement": "Deploy at 22:00"}]
            await client.close()
    finally:
        for daphne in daphnes:
            daphne.stop()


CLOSE_ALL = "import wsgateway; wsgateway.close_sockets(reason='Deploying; reconnect.')"
CLOSE_BOB = "import wsgateway; wsgateway.close_sockets('{pk}')"
USER_SOCKETS = (
    "import json, wsgateway; from django.contrib.auth import get_user_model; "
    "print(json.dumps(wsgateway.user_sockets(get_user_model().objects.get(username='{username}'))))"
)


def user_sockets_of(env: dict[str, str], username: str) -> list[str]:
    """What ``wsgateway.user_sockets(user)`` answers in a manage.py run, a process with no socket."""
    result = manage(env, "shell", "-c", USER_SOCKETS.format(username=username))
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


async def test_close_sockets_closes_every_socket_on_both_processes_with_4001(cluster: Any) -> None:
    env, first, second = cluster
    alice, bob = login(first, "alice"), login(second, "bob")
    clients = [await socket(first, alice), await socket(second, alice), await socket(first, bob)]
    await asyncio.to_thread(manage, env, "shell", "-c", CLOSE_ALL)
    assert await closed_within(clients, 5) == [(4001, "closing")] * 3
    for client in clients:
        error = next(f["error"] for f in reversed(client.frames) if "error" in f)
        assert error["message"] == "Deploying; reconnect."
    again = await socket(second, alice)  # nothing refuses the reconnect
    reply = await again.request("gateway", {"action": "ping"})
    assert reply["payload"] == {"action": "pong"}
    await again.close()


async def test_close_sockets_of_one_user_closes_theirs_on_both_processes_and_no_other(cluster: Any) -> None:
    env, first, second = cluster
    alice, bob = login(first, "alice"), login(second, "bob")
    bobs = [await socket(first, bob), await socket(second, bob)]
    alices = [await socket(first, alice), await socket(second, alice)]
    bob_id = bobs[0].on("gateway")[0]["user"]["id"]
    await asyncio.to_thread(manage, env, "shell", "-c", CLOSE_BOB.format(pk=bob_id))
    assert await closed_within(bobs, 5) == [(4001, "closing")] * 2
    for client in alices:
        reply = await client.request("gateway", {"action": "ping"})
        assert reply["payload"] == {"action": "pong"}
        await client.close()


async def test_user_sockets_lists_a_users_sockets_on_both_processes(cluster: Any) -> None:
    env, first, second = cluster
    carol = login(second, "carol")
    clients = [await socket(first, carol), await socket(second, carol)]
    names = await asyncio.to_thread(user_sockets_of, env, "carol")
    assert len(names) == len(set(names)) == 2
    # Channel names of two processes: each names its process apart ("specific.<process>!<socket>").
    assert len({name.split("!")[0] for name in names}) == 2
    # Each close is the client's: the socket's process unregisters it as the disconnect comes.
    await clients[0].close()
    left = await listed_until(env, "carol", 1)
    assert len(left) == 1 and left[0] in names
    await clients[1].close()
    assert await listed_until(env, "carol", 0) == []


async def listed_until(env: dict[str, str], username: str, count: int) -> list[str]:
    """user_sockets_of(), asked again (at most 20 times) until it lists ``count`` sockets."""
    for _ in range(20):
        names = await asyncio.to_thread(user_sockets_of, env, username)
        if len(names) == count:
            break
    return names


async def test_redis_restart_loses_nothing_and_kills_no_process(postgres_url: str, tmp_path: Path) -> None:
    redis = RedisServer().start()
    env = cluster_env(postgres_url, redis.url)
    daphnes = [Daphne(env, "restart-a").start(), Daphne(env, "restart-b").start()]
    try:
        session = login(daphnes[0], "alice")
        clients = [await socket(d, session) for d in daphnes]
        redis.stop()
        result = await asyncio.to_thread(manage, env, "notify", "alice", "While Redis was down")
        assert "unreachable" in result.stdout
        await asyncio.sleep(1.5)
        redis.start()
        for daphne, client in zip(daphnes, clients, strict=True):
            assert daphne.alive(), daphne.log()
            # Either the socket stayed up and is resynced, or it closed and a reconnect catches up.
            if client.closed is not None and client.closed.done():
                client = await socket(daphne, session)
            state = await client.wait_for(
                lambda frames, c=client: next(
                    (p for p in reversed(c.on("notifications")) if p.get("unread")), None
                ),
                timeout=15,
            )
            assert state["unread"] == 1
            listed = await client.request("notifications", {"action": "list"})
            assert [n["label"] for n in listed["payload"]["notifications"]] == ["While Redis was down"]
            # And pushes flow again afterwards.
        await asyncio.to_thread(manage, env, "notify", "alice", "After the restart")
        for client in clients:
            if not client.closed.done():  # type: ignore[union-attr]
                await client.wait_for(
                    lambda frames, c=client: any(
                        p.get("last", {}).get("label") == "After the restart" for p in c.on("notifications")
                    ),
                    timeout=10,
                )
            await client.close()
    finally:
        for daphne in daphnes:
            daphne.stop()
        redis.stop()


async def test_redis_down_8_s_under_20_notifications_a_second_loses_none_on_either_process(
    postgres_url: str,
) -> None:
    redis = RedisServer().start()
    env = cluster_env(postgres_url, redis.url)
    daphnes = [Daphne(env, "outage-a").start(), Daphne(env, "outage-b").start()]
    try:
        session = login(daphnes[0], "alice")
        pages = [CursorPage(), CursorPage()]
        clients = [await socket(d, session) for d in daphnes]
        for page, client in zip(pages, clients, strict=True):
            await page.follow(client)
        start = pages[0].cursor
        assert start is not None and pages[1].cursor == start
        writer = notify_in_another_process(env, 280, 0.05)  # about 20 a second for 14 s
        await asyncio.sleep(3)
        redis.stop()
        await asyncio.sleep(8)
        redis.start()
        _, err = await asyncio.to_thread(writer.communicate, timeout=90)
        assert writer.returncode == 0, err
        want = list(range(start + 1, start + 281))
        for daphne, page, client in zip(daphnes, pages, clients, strict=True):
            assert daphne.alive(), daphne.log()
            assert not client.closed.done(), "the socket should have stayed open through the outage"  # type: ignore[union-attr]
            await follow_until(page, client, want, timeout=30)
            await client.close()
        # Nothing was pushed while Redis was down: the pages got it from the resync and its sync.
        assert all(page.syncs >= 1 for page in pages)
    finally:
        for daphne in daphnes:
            daphne.stop()
        redis.stop()


def ask_tabs(session: HttpSession, tab: str = "") -> tuple[int, dict[str, Any]]:
    """The demo's view that asks the user's tabs (``aask``), from a thread: the test's loop answers."""
    status, body = session.post("/ask-tabs/", {"tab": tab})
    return status, json.loads(body)


async def test_a_request_made_on_one_process_is_answered_by_a_socket_on_the_other(cluster: Any) -> None:
    _, first, second = cluster
    session = login(first, "alice")
    on_second = await socket(second, session)
    asking = asyncio.create_task(asyncio.to_thread(ask_tabs, session, "the view's tab"))
    request = await on_second.server_request("demo")
    assert request["payload"] == {"action": "where", "data": {"asker": "the view's tab"}}
    await on_second.send({"channel": "demo", "reply": request["request"], "payload": {"path": "/b"}})
    assert await asking == (200, {"answer": {"path": "/b"}})
    await on_second.close()


async def test_the_first_answer_wins_across_processes_and_the_other_socket_is_told_to_cancel(
    cluster: Any,
) -> None:
    _, first, second = cluster
    session = login(second, "bob")
    on_first, on_second = await socket(first, session), await socket(second, session)
    asking = asyncio.create_task(asyncio.to_thread(ask_tabs, session))
    request = await on_first.server_request("demo")
    assert (await on_second.server_request("demo"))["request"] == request["request"]
    await on_first.send({"channel": "demo", "reply": request["request"], "payload": "first"})
    assert await asking == (200, {"answer": "first"})
    cancel = {"channel": "demo", "cancel": request["request"]}
    await on_second.wait_for(lambda frames: cancel in frames)
    await on_first.close()
    await on_second.close()


async def test_a_socket_on_the_other_process_closing_with_the_request_fails_it_at_once(cluster: Any) -> None:
    _, first, second = cluster
    session = login(first, "carol")
    on_second = await socket(second, session)
    asking = asyncio.create_task(asyncio.to_thread(ask_tabs, session))
    await on_second.server_request("demo")
    await on_second.close()
    status, body = await asking
    assert (status, body["code"]) == (504, "closed")  # not "timeout": the view's 5 s did not run out


# -- maintenance ------------------------------------------------------------------------------

#: How long `on` or `off` may take to reach both daphnes: MAINTENANCE_CHECK_INTERVAL (2 s by default)
#: and a loaded machine's slack. A bound on a wait, not a measurement.
SWITCH_BOUND = 20.0


async def first_frame(daphne: Daphne, session: HttpSession) -> tuple[dict[str, Any], int | None]:
    """A new socket's first frame, and its close code if the server closed it after that frame."""
    client = Client(f"{daphne.ws_url}/ws/", {"Cookie": session.cookie_header}, subprotocols=["wsgateway.v1"])
    await client.connect(expect_frames=1)
    first = client.frames[0]
    code = await client.close_code() if "error" in first else None
    await client.close()
    return first, code


async def until(daphne: Daphne, session: HttpSession, refused: bool) -> tuple[dict[str, Any], int | None]:
    deadline = time.monotonic() + SWITCH_BOUND
    while True:
        first, code = await first_frame(daphne, session)
        if ("error" in first) is refused:
            return first, code
        assert time.monotonic() < deadline, f"{daphne.name}: the switch did not arrive in {SWITCH_BOUND} s"
        await asyncio.sleep(0.2)


async def test_maintenance_switched_by_manage_py_reaches_both_processes_and_off_brings_them_back(
    cluster: Any,
) -> None:
    env, first, second = cluster
    session = login(first, "carol")
    # Open before the switch, one on each process: --close-existing reaches them through the layer.
    open_before = [await socket(daphne, session) for daphne in (first, second)]
    try:
        result = await asyncio.to_thread(
            manage,
            env,
            "wsgateway_maintenance",
            "on",
            "--reason",
            "Deploying 2.0",
            "--retry-after",
            "5",
            "--close-existing",
        )
        assert "retry after 5 s" in result.stdout
        refusal = {
            "channel": "gateway",
            "error": {"code": "maintenance", "message": "Deploying 2.0", "retry_after": 5},
        }
        for client in open_before:
            assert client.closed is not None
            assert await asyncio.wait_for(asyncio.shield(client.closed), 10) == 4503
            assert client.frames[-1] == refusal
        for daphne in (first, second):
            frame, code = await until(daphne, session, refused=True)
            assert frame == {
                "channel": "gateway",
                "error": {"code": "maintenance", "message": "Deploying 2.0", "retry_after": 5},
            }
            assert code == 4503
        status = await asyncio.to_thread(manage, env, "wsgateway_maintenance", "status")
        assert "Maintenance is on since" in status.stdout
    finally:
        await asyncio.to_thread(manage, env, "wsgateway_maintenance", "off")
    for daphne in (first, second):
        hello, _ = await until(daphne, session, refused=False)
        assert hello["payload"]["user"]["username"] == "carol"
