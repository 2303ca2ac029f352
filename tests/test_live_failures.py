"""Failures refuse cleanly, against a real daphne on wsgateway's Redis layer and a redis-server this
module stops and pauses.

- Redis down at connect: every connect is refused with ``unavailable`` and 4503 (before: HTTP 500, a
  failed handshake the browser sees as 1006, and a traceback per connect), logged once per outage;
  the first connect after Redis is back gets through.
- Redis paused (SIGSTOP) at connect: refused the same way within ``LAYER_CONNECT_TIMEOUT``.
- Both again on a daphne started meanwhile, whose layer has no subscription yet: its first sockets
  get no channel (down: at once; paused: the wait) and are refused the same way.
- 200 handshakes to paths nothing routes (``/ws``, ``//ws/``, ``/WS/``, ``/ws/x/``), from this site's
  origin and a foreign one: each refused with HTTP 403 (before: 500 and a traceback each).
- ``recheck_user_sockets()`` after a ``QuerySet.update()`` in another process closes the user's
  socket within a second.

The module fails if daphne logged a traceback at all. What was measured is written to
``test-output/live-failures.json``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.servers import (
    HOST,
    OUTPUT,
    Daphne,
    HttpSession,
    RedisServer,
    close_code,
    connect_frames,
    manage,
    ping,
    recv_json,
    running,
    site_env,
    ws_connect,
)

pytestmark = [pytest.mark.daphne, pytest.mark.redis, pytest.mark.timeout(90)]

#: The connect's bound on the layer here: a pause of twice as long is refused well within the test.
CONNECT_TIMEOUT = 2
UNROUTED_PATHS = ("/ws", "//ws/", "/WS/", "/ws/x/")
HANDSHAKES_PER_PATH = 50

measured: dict[str, Any] = {}


class Live:
    def __init__(self, redis: RedisServer, daphne: Daphne, alice: HttpSession, bob: HttpSession) -> None:
        self.redis, self.daphne, self.alice, self.bob = redis, daphne, alice, bob
        self.url = f"{daphne.ws_url}/ws/"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    redis = RedisServer().start()
    env = site_env(
        tmp_path_factory.mktemp("live-failures"),
        REDIS_URL=redis.url,
        WSGATEWAY_REDIS_LAYER="wsgateway",
        WSGATEWAY_EXTRA=json.dumps({"LAYER_CONNECT_TIMEOUT": CONNECT_TIMEOUT}),
    )
    try:
        # running() fails the module for a traceback anywhere in daphne's log.
        with running(Daphne(env, name="live-failures")) as daphne:
            alice = HttpSession(daphne.http_url).login("alice", "alice-password")
            bob = HttpSession(daphne.http_url).login("bob", "bob-password")
            yield Live(redis, daphne, alice, bob)
    finally:
        if redis.proc is not None and redis.proc.poll() is None:
            os.kill(redis.proc.pid, signal.SIGCONT)  # a test that failed while Redis was paused
        redis.stop()
        OUTPUT.mkdir(exist_ok=True)
        (OUTPUT / "live-failures.json").write_text(json.dumps(measured, indent=2) + "\n")


async def assert_refused_unavailable(live: Live) -> float:
    """A connect of alice's is accepted, told ``unavailable`` with a retry_after, and closed 4503;
    returns the seconds it took."""
    started = time.monotonic()
    async with await ws_connect(live.url, cookie=live.alice.cookie_header) as ws:
        frame = await recv_json(ws)
        assert frame["channel"] == "gateway" and frame["error"]["code"] == "unavailable", frame
        assert frame["error"]["retry_after"] == 5 and frame["error"]["message"]
        assert await close_code(ws) == 4503
    return time.monotonic() - started


async def assert_connects(live: Live, within: float = 10) -> float:
    """Alice's connect gets its hello (retried while the layer's client reconnects); returns the
    seconds from the first try."""
    started = time.monotonic()
    while True:
        async with await ws_connect(live.url, cookie=live.alice.cookie_header) as ws:
            first = await recv_json(ws)
            if "payload" in first:
                assert first["payload"]["user"]["username"] == "alice"
                await connect_frames(ws, count=2)
                return time.monotonic() - started
            assert first["error"]["code"] == "unavailable", first
        assert time.monotonic() - started < within, "connects did not come back after Redis did"
        await asyncio.sleep(0.05)


def log_lines(live: Live, text: str) -> int:
    """Records of the wsgateway logger that say ``text``. Each is in daphne's log twice: from the
    example project's handler, and from daphne's on the root logger (with the time): the first kind
    is counted."""
    return sum(line.startswith(f"wsgateway: {text}") for line in live.daphne.log().splitlines())


async def test_redis_down_at_connect_is_refused_unavailable_logged_once_and_back_with_redis(
    live: Live,
) -> None:
    await assert_connects(live)
    outages = log_lines(live, "the channel layer failed a connect")
    live.redis.stop()
    refusals = [await assert_refused_unavailable(live) for _ in range(10)]
    assert log_lines(live, "the channel layer failed a connect") == outages + 1  # once, not per connect
    assert "Traceback" not in live.daphne.log()
    live.redis.start()  # the same port
    back = await assert_connects(live)
    assert log_lines(live, "the channel layer serves connects again") >= 1
    measured["redis_down"] = {"refusals": len(refusals), "slowest_refusal_s": max(refusals), "back_s": back}


async def test_a_process_whose_first_connect_finds_redis_down_refuses_it_too(live: Live) -> None:
    # Its layer has no subscriber yet: new_channel() fails, before the handshake is read.
    live.redis.stop()
    try:
        with running(Daphne(live.daphne.env, name="live-failures-fresh")) as fresh:
            alice = HttpSession(fresh.http_url).login("alice", "alice-password")
            on_fresh = Live(live.redis, fresh, alice, live.bob)
            refusals = [await assert_refused_unavailable(on_fresh) for _ in range(5)]
            assert log_lines(on_fresh, "the channel layer failed a connect") == 1
            live.redis.start()
            back = await assert_connects(on_fresh)
    finally:
        if live.redis.proc is None:
            live.redis.start()
    measured["redis_down_fresh_process"] = {"slowest_refusal_s": max(refusals), "back_s": back}


async def test_a_process_whose_first_connect_finds_redis_paused_refuses_it_in_time(live: Live) -> None:
    # Its layer's first SUBSCRIBE waits on Redis; daphne would drop the handshake after 5 s, unanswered.
    assert live.redis.proc is not None
    os.kill(live.redis.proc.pid, signal.SIGSTOP)
    try:
        with running(Daphne(live.daphne.env, name="live-failures-fresh-paused")) as fresh:
            alice = HttpSession(fresh.http_url).login("alice", "alice-password")
            on_fresh = Live(live.redis, fresh, alice, live.bob)
            took = await assert_refused_unavailable(on_fresh)
            os.kill(live.redis.proc.pid, signal.SIGCONT)
            back = await assert_connects(on_fresh)
    finally:
        os.kill(live.redis.proc.pid, signal.SIGCONT)
    assert CONNECT_TIMEOUT <= took < CONNECT_TIMEOUT + 2
    measured["redis_paused_fresh_process"] = {"refused_after_s": took, "back_s": back}


async def test_redis_paused_at_connect_is_refused_within_the_timeout(live: Live) -> None:
    await assert_connects(live)
    assert live.redis.proc is not None
    os.kill(live.redis.proc.pid, signal.SIGSTOP)
    try:
        took = await assert_refused_unavailable(live)
    finally:
        os.kill(live.redis.proc.pid, signal.SIGCONT)
    assert CONNECT_TIMEOUT <= took < CONNECT_TIMEOUT + 2
    back = await assert_connects(live)
    assert "Traceback" not in live.daphne.log()
    measured["redis_paused"] = {"refused_after_s": took, "back_s": back}


async def handshake_status(port: int, path: str, origin: str) -> int:
    """The HTTP status daphne answers a WebSocket handshake to ``path`` with (101 if accepted)."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            f"Origin: {origin}\r\n\r\n"
        )
        writer.write(request.encode())
        status_line = await asyncio.wait_for(reader.readline(), 10)
        return int(status_line.split()[1])
    finally:
        writer.close()


async def frames_until(ws: Any, done: Any, within: float = 20) -> list[dict[str, Any]]:
    """The frames of ``ws`` until ``done(frames)`` says so."""
    frames: list[dict[str, Any]] = []
    async with asyncio.timeout(within):
        while not done(frames):
            frames.append(await recv_json(ws, within))
    return frames


def missed_labels(frames: list[dict[str, Any]]) -> list[str]:
    return [
        item["label"]
        for frame in frames
        if frame["channel"] == "notifications"
        for item in frame["payload"].get("missed", [])
    ]


async def test_after_an_outage_the_socket_that_missed_a_notification_gets_it_once_and_a_new_one_no_resync(
    live: Live,
) -> None:
    """Redis stopped while a socket is open, a notification stored meanwhile by another process (its
    publish fails), Redis started again: that socket is resynced and finds it in ``missed``, once; a
    socket that connected with Redis back (retried while refused) read it in its connect frame, and is
    not resynced. Here it is usually let in after the watchdog saw Redis back (a Redis restarted empty
    gives no place for ``restore_grace``, 3 s); tests/test_recovery has one that joins before."""
    await assert_connects(live)
    label = f"missed while down {time.monotonic()}"
    async with await ws_connect(live.url, cookie=live.alice.cookie_header) as open_before:
        await connect_frames(open_before)
        live.redis.stop()
        stored = await asyncio.to_thread(manage, live.daphne.env, "notify", "alice", label)
        assert "Stored 1 notification(s)." in stored.stdout and "Pushed live" not in stored.stdout
        await asyncio.sleep(2.5)  # the watchdog's probes fail: an outage
        live.redis.start()
        while True:  # a new socket, refused `unavailable` until the layer serves connects again
            late = await ws_connect(live.url, cookie=live.alice.cookie_header)
            hello = await recv_json(late)
            if "payload" in hello:
                break
            await late.close()
            await asyncio.sleep(0.05)
        async with late:
            connected = await connect_frames(late, count=2)
            # The resync: its mark, then every service's connect frame again, the clipboard's last.
            frames = await frames_until(
                open_before, lambda frames: any(f["channel"] == "clipboard" for f in frames)
            )
            missed = [item for frame in frames for item in frame["payload"].get("missed", [])]
            assert connected["notifications"]["seq"] >= missed[-1]["seq"]  # its state holds it already
            assert frames[0] == {"channel": "gateway", "payload": {"resync": True}}
            await asyncio.sleep(2)  # whatever else would come
            assert (await ping(open_before))["payload"] == {"action": "pong"}
            assert (await ping(late))["payload"] == {"action": "pong"}  # nothing before it: no resync
    assert missed_labels(frames) == [label]
    log = live.daphne.log()
    assert "channel layer is back; resyncing" in log
    measured["outage_resync"] = {
        "resync_log": [
            line for line in log.splitlines() if line.startswith("wsgateway: channel layer is back")
        ]
    }


async def test_200_handshakes_to_unrouted_paths_are_refused_403_without_a_traceback(live: Live) -> None:
    port = live.daphne.port
    statuses: Counter[tuple[str, int]] = Counter()
    started = time.monotonic()
    for index in range(HANDSHAKES_PER_PATH):
        # Half from the site's own origin, half from another: an unrouted path is refused either way.
        origin = live.daphne.http_url if index % 2 else "https://attacker.example"
        for path in UNROUTED_PATHS:
            statuses[path, await handshake_status(port, path, origin)] += 1
    took = time.monotonic() - started
    assert statuses == Counter({(path, 403): HANDSHAKES_PER_PATH for path in UNROUTED_PATHS})
    log = live.daphne.log()
    assert "Traceback" not in log and "No route found" not in log
    # Logged at INFO once (the example project logs wsgateway from INFO), the rest at DEBUG.
    assert log_lines(live, "refused a WebSocket handshake to") == 1
    # The routed path still routes: an anonymous socket on /ws/ is told to log in (accepted, 4401).
    async with await ws_connect(live.url) as ws:
        assert (await recv_json(ws))["error"]["code"] == "unauthorized"
        assert await close_code(ws) == 4401
    measured["unrouted"] = {"handshakes": sum(statuses.values()), "seconds": took, "status": 403}


async def test_recheck_closes_a_socket_within_a_second_after_an_update(live: Live) -> None:
    async with await ws_connect(live.url, cookie=live.bob.cookie_header) as ws:
        await connect_frames(ws)
        # Another process, as a site's script would: an update() sends no signal.
        script = (
            "import time; from django.contrib.auth import get_user_model; from wsgateway import "
            "recheck_user_sockets; User = get_user_model(); "
            "User.objects.filter(username='bob').update(is_active=False); "
            "print('updated at', time.time(), flush=True); "
            "recheck_user_sockets(User.objects.get(username='bob'))"
        )
        try:
            updating = asyncio.ensure_future(
                asyncio.to_thread(manage, live.daphne.env, "shell", "-c", script)
            )
            frame = await recv_json(ws, within=30)  # the shell's start-up is most of it
            closed_at = time.time()
            result = await updating
            assert frame["error"]["code"] == "revoked", frame
            assert await close_code(ws) == 4401
        finally:
            reactivate = "from django.contrib.auth import get_user_model; get_user_model().objects.filter(username='bob').update(is_active=True)"  # noqa: E501
            await asyncio.to_thread(manage, live.daphne.env, "shell", "-c", reactivate)
    # From the update's commit to the revocation frame, across processes and Redis.
    match = re.search(r"updated at ([0-9.]+)", result.stdout)
    assert match, result.stdout
    took = closed_at - float(match.group(1))
    assert took < 1, f"closed {took:.2f} s after the update"
    measured["recheck"] = {"update_to_close_s": took}
