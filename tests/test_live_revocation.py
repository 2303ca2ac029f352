"""The red team's revocations, as regression tests: real daphne on wsgateway's Redis layer.

A tab that reads every frame but acknowledges as its test says: never (its window stays full, and a
push waits for room holding the socket's turn), a trickle once its window is full (its oldest mark
every half second: at most a quarter of the window each), or not until its queue in the layer
overflowed. Then its user's password changes, or its session logs
out, through the site's own views. Before, the revocation waited behind the pushes (closed 4408 after
ACK_TIMEOUT), or was dropped with them (the socket resynced and stayed open); now it closes the
socket with 4401 within a second, and nothing pushed after the change reaches the tab.

Bounded: at most 700 pushes of about 150 bytes before the change and 20 after, per test. What each
test measured (seconds to the close, pushes received after the change) is written to
``test-output/live-revocation.json``.
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from tests.support.servers import (
    OUTPUT,
    ROOT,
    Daphne,
    HttpSession,
    manage,
    serving,
    site_env,
    ws_connect,
)

pytestmark = [pytest.mark.daphne, pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(120)]

#: The least window (64 KiB, about 430 of these pushes), a queue of 100 per socket in the layer, and
#: an ACK_TIMEOUT long past each test, so that no 4408 can come first.
FLOW = {"OUTBOUND_WINDOW": 64 * 1024, "ACK_TIMEOUT": 30}
CAPACITY = 100
#: Pushes before the change: the window full and some queued (under the capacity); or an overflow.
FILL = 450
OVERFLOW = 700
#: Pushes after the change: none may arrive.
AFTER = 20
#: Seconds a socket that is not closed is watched after the change, before it fails its test.
STILL_OPEN = 10
PAD = "x" * 100

BEHAVIOURS = ["stall", "drip", "overflow"]
CHANGES = ["password", "logout"]
#: One user per test: a changed password stays changed.
USERS = [f"{change}-{behaviour}" for change in CHANGES for behaviour in BEHAVIOURS]
CREATE_USERS = (
    "from django.contrib.auth import get_user_model; User = get_user_model()\n"
    f"for name in {USERS!r}:\n"
    "    u, _ = User.objects.get_or_create(username=name); u.set_password(name + '-password'); u.save()\n"
)
#: A process of the site that pushes on command: ``<username> <phase> <count>`` pushes ``count``
#: frames, in order, fifty to a layer call a twentieth of a second apart (a socket's queue takes
#: each batch whole: it overflows only once its window is full), and answers ``ok``.
PUSHER = """
import sys, time, django
django.setup()
from django.contrib.auth import get_user_model
from wsgateway.groups import push_many
for line in sys.stdin:
    name, phase, count = line.split()
    pk, count = get_user_model().objects.get(username=name).pk, int(count)
    for start in range(0, count, 50):
        batch = range(start, min(start + 50, count))
        push_many((pk, "notifications", {"phase": phase, "n": n, "pad": PAD}) for n in batch)
        time.sleep(0.05)
    print("ok", flush=True)
""".replace("PAD", repr(PAD))

results: dict[str, dict[str, Any]] = {}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[tuple[Daphne, Pusher]]:
    env = site_env(
        tmp_path_factory.mktemp("live-revocation"),
        REDIS_URL=redis_url,
        WSGATEWAY_LAYER_CAPACITY=str(CAPACITY),
        WSGATEWAY_EXTRA=json.dumps(FLOW),
    )
    manage(env, "shell", "-c", CREATE_USERS)
    pusher = Pusher(env)
    try:
        with serving(env, "live-revocation") as daphne:
            yield daphne, pusher
    finally:
        pusher.stop()
        OUTPUT.mkdir(exist_ok=True)
        (OUTPUT / "live-revocation.json").write_text(json.dumps(results, indent=2) + "\n")


class Pusher:
    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", PUSHER],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    async def push(self, username: str, phase: str, count: int) -> None:
        await asyncio.wait_for(asyncio.to_thread(self._push, username, phase, count), 30)

    def _push(self, username: str, phase: str, count: int) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"{username} {phase} {count}\n")
        self.process.stdin.flush()
        assert self.process.stdout.readline().strip() == "ok", "the pusher failed"

    def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


class Tab:
    """Reads every frame (so it sees the close), and acknowledges only when its test says."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.frames: list[tuple[float, dict[str, Any]]] = []
        #: The marks read and not acknowledged yet, oldest first: what an ack may say.
        self.marks: list[str] = []
        self.closed: asyncio.Future[tuple[float, int | None]] = asyncio.get_running_loop().create_future()
        self.reader = asyncio.ensure_future(self.read())

    async def read(self) -> None:
        try:
            async for text in self.ws:
                frame = json.loads(text)
                if frame.get("channel") == "gateway" and frame.get("payload", {}).get("action") == "mark":
                    self.marks.append(frame["payload"]["data"])
                else:
                    self.frames.append((time.monotonic(), frame))
        except ConnectionClosed:
            pass
        finally:
            self.closed.set_result((time.monotonic(), self.ws.close_code))

    async def ack(self) -> None:
        """Acknowledge the oldest mark read: the least a client can free (a quarter of the window at
        most, or up to where a push started to wait)."""
        if self.marks:
            ack = {"channel": "gateway", "payload": {"action": "ack", "data": self.marks.pop(0)}}
            await self.ws.send(json.dumps(ack))

    async def drip(self, every: float = 0.5) -> None:
        """Acknowledge one mark every ``every`` seconds, until closed."""
        while not self.closed.done():
            await asyncio.sleep(every)
            try:
                await self.ack()
            except ConnectionClosed:
                return

    def pushes(self, phase: str) -> list[dict[str, Any]]:
        return [
            f["payload"]
            for _, f in self.frames
            if f.get("channel") == "notifications" and f["payload"].get("phase") == phase
        ]

    async def settled(self, quiet: float = 0.5) -> None:
        """Wait until nothing has come for ``quiet`` seconds: the window is full, or the socket idle."""
        while True:
            count = len(self.frames)
            await asyncio.sleep(quiet)
            if len(self.frames) == count:
                return


def seconds(span: float) -> float | None:
    return round(span, 3) if math.isfinite(span) else None


def end_login(session: HttpSession, change: str, username: str) -> str:
    """Through the site's views, as a user does; the error code the socket is closed with."""
    if change == "password":
        new = f"{username}-new-password"
        status, _ = session.post(
            "/accounts/password_change/",
            {"old_password": f"{username}-password", "new_password1": new, "new_password2": new},
        )
        assert status in (200, 302), f"the password change failed ({status})"
        return "revoked"
    status, _ = session.post("/accounts/logout/")
    assert status in (200, 302), f"the logout failed ({status})"
    return "logged_out"


@pytest.mark.parametrize("behaviour", BEHAVIOURS)
@pytest.mark.parametrize("change", CHANGES)
async def test_a_socket_is_closed_with_4401_within_a_second_of_the_change_and_hears_nothing_after(
    site: tuple[Daphne, Pusher], change: str, behaviour: str
) -> None:
    daphne, pusher = site
    username = f"{change}-{behaviour}"
    session = HttpSession(daphne.http_url).login(username, f"{username}-password")
    tab = Tab(await ws_connect(f"{daphne.ws_url}/ws/", cookie=session.cookie_header, max_size=None))
    dripping = None
    try:
        await pusher.push(username, "before", OVERFLOW if behaviour == "overflow" else FILL)
        await tab.settled()
        before = len(tab.pushes("before"))
        assert before < FILL, "the window never filled: nothing waited"
        assert not tab.closed.done()
        if behaviour == "drip":  # from a full window: a mark frees a quarter of it, so not sooner
            dripping = asyncio.ensure_future(tab.drip())

        started = time.monotonic()
        code = await asyncio.to_thread(end_login, session, change, username)
        changed = time.monotonic()
        await pusher.push(username, "after", AFTER)
        try:  # measured either way: an open socket is written down as such, then fails the test
            closed_at, close_code = await asyncio.wait_for(asyncio.shield(tab.closed), STILL_OPEN)
        except TimeoutError:
            closed_at, close_code = math.inf, None
        await asyncio.sleep(0.3)  # anything still on its way after the close would be read by now
    finally:
        if dripping is not None:
            dripping.cancel()
        await tab.ws.close()

    errors = [f["error"]["code"] for _, f in tab.frames if "error" in f]
    results[f"{change}/{behaviour}"] = {
        "close_code": close_code,
        # From the view's answer (negative: the socket closed while the view was still answering),
        # and from the request's start (the password's hashing included).
        "seconds_from_the_changes_answer_to_the_close": seconds(closed_at - changed),
        "seconds_from_the_request_to_the_close": seconds(closed_at - started),
        "still_open_after_seconds": STILL_OPEN if close_code is None else None,
        "pushes_before_the_change_received": before,
        "pushes_after_the_change_received": len(tab.pushes("after")),
        "resyncs_after_the_change": sum(
            1 for at, f in tab.frames if at >= started and f.get("payload") == {"resync": True}
        ),
        "errors": errors,
    }
    assert close_code == 4401, results[f"{change}/{behaviour}"]
    assert errors == [code]
    assert closed_at - changed < 1, results[f"{change}/{behaviour}"]
    assert tab.pushes("after") == []
    assert results[f"{change}/{behaviour}"]["resyncs_after_the_change"] == 0
