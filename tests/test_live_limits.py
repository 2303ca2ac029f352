"""A flood against a real daphne: one socket sends as fast as it can, for at most 5 s, from a raw client.

daphne puts every frame it reads on the application's queue, without bound, and the client's
disconnect behind them: before the rate limits, such a flood was still being executed hours
after the client left. What is asserted: the flooding socket is closed with 4429; daphne goes
quiet once the client has left; another user's socket still answers. What is measured and
written to ``test-output/inbound-flood-<kind>.json`` (not asserted): frames sent and answered a second,
daphne's memory before and after, and the other user's ping latency during the flood.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import socket
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.servers import (
    HOST,
    OUTPUT,
    Daphne,
    HttpSession,
    client_frame,
    connect_frames,
    ping,
    raw_websocket,
    read_until_closed,
    server_frames,
    serving,
    site_env,
    ws_connect,
)
from tests.support.wsclient import Client

pytestmark = [pytest.mark.daphne, pytest.mark.timeout(90)]

#: The flood's bound: it stops at the close, or after this many seconds.
FLOOD_SECONDS = 5.0
#: The measured floods: a page of 100 notifications, from the database, per frame; and 60 KB frames
#: of ids to mark read.
FLOODS = {
    "list": json.dumps(
        {"channel": "notifications", "id": 1, "payload": {"action": "list", "data": {"limit": 100}}}
    ),
    "mark_read_60kb": json.dumps(
        {"channel": "notifications", "id": 1, "payload": {"action": "mark_read", "data": [10**6] * 6600}}
    ),
}


@pytest.fixture(scope="module")
def daphne(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daphne]:
    # Each flood is alice's, one after the other: her cool-down after the first 4429 (RATE_LIMIT_COOLDOWN)
    # is over, at its shortest, by the time the next begins (tests/test_live_cooldown.py tests it).
    env = site_env(
        tmp_path_factory.mktemp("live-limits"), WSGATEWAY_EXTRA=json.dumps({"RATE_LIMIT_COOLDOWN": 1})
    )
    with serving(env, "live-limits") as server:
        yield server


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def flood(daphne: Daphne, cookie: str, text: str) -> dict[str, Any]:
    """Send ``text`` as fast as the socket takes it, until the server closes or FLOOD_SECONDS pass."""
    frame = client_frame(0x1, text.encode())
    batch = frame * max(1, 65536 // len(frame))
    sock = raw_websocket(daphne, cookie)
    replies: Counter[str] = Counter()
    close_code: int | None = None
    sent_bytes, pending = 0, memoryview(batch)
    inbox = bytearray()
    started = time.monotonic()
    deadline = started + FLOOD_SECONDS
    sock.setblocking(False)
    try:
        while close_code is None and time.monotonic() < deadline:
            readable, writable, _ = select.select([sock], [sock], [], 0.1)
            if writable:
                try:
                    written = sock.send(pending)
                except BlockingIOError:
                    written = 0
                sent_bytes += written
                pending = pending[written:] or memoryview(batch)
            if readable:
                data = sock.recv(1 << 20)
                if not data:
                    break
                inbox += data
                for opcode, payload in server_frames(inbox):
                    if opcode == 0x8:
                        close_code = int.from_bytes(payload[:2], "big")
                    elif opcode == 0x1:
                        reply = json.loads(payload)
                        replies[reply["error"]["code"] if "error" in reply else reply["channel"]] += 1
        elapsed = time.monotonic() - started
        sock.setblocking(True)
        if close_code is not None:
            sock.sendall(client_frame(0x8, (1000).to_bytes(2, "big")))
        read_until_closed(sock)
    finally:
        sock.close()
    return {
        "close_code": close_code,
        "seconds": round(elapsed, 3),
        "frames_sent": sent_bytes // len(frame),
        "replies": dict(replies),
    }


@pytest.mark.parametrize("kind", list(FLOODS))
async def test_a_flooding_socket_is_closed_with_4429_and_nothing_of_it_runs_after_it_left(
    daphne: Daphne, kind: str
) -> None:
    alice = HttpSession(daphne.http_url).login("alice", "alice-password")
    bob = HttpSession(daphne.http_url).login("bob", "bob-password")
    assert daphne.proc is not None
    pid = daphne.proc.pid
    latencies: list[float] = []
    async with await ws_connect(f"{daphne.ws_url}/ws/", cookie=bob.cookie_header) as bobs:
        await connect_frames(bobs)
        rss_before = rss_kib(pid)
        flooding = asyncio.ensure_future(asyncio.to_thread(flood, daphne, alice.cookie_header, FLOODS[kind]))
        while not flooding.done():
            sent = time.monotonic()
            assert (await ping(bobs))["payload"] == {"action": "pong"}
            latencies.append(time.monotonic() - sent)
            await asyncio.sleep(0.1)  # under bob's own rate limit
        result = await flooding
        rss_after = rss_kib(pid)
        log_length = len(daphne.log())
        cpu_before = cpu_seconds(pid)
        await asyncio.sleep(2)
        quiet_cpu = cpu_seconds(pid) - cpu_before
        sent = time.monotonic()
        assert (await ping(bobs))["payload"] == {"action": "pong"}
        latency_after = time.monotonic() - sent
    measured = {
        "flood": kind,
        "frame_bytes": len(FLOODS[kind]),
        **result,
        "frames_sent_per_s": round(result["frames_sent"] / max(result["seconds"], 1e-3)),
        "daphne_rss_kib_before": rss_before,
        "daphne_rss_kib_after": rss_after,
        "daphne_cpu_s_in_2s_after_the_client_left": round(quiet_cpu, 3),
        "other_users_ping_ms": sorted(round(s * 1000, 1) for s in latencies),
        "other_users_ping_ms_after": round(latency_after * 1000, 1),
        "host": HOST,
    }
    OUTPUT.mkdir(exist_ok=True)
    (OUTPUT / f"inbound-flood-{kind}.json").write_text(json.dumps(measured, indent=2))
    print(json.dumps(measured, indent=2))
    assert result["close_code"] == 4429, measured
    # What went through: at most the burst of the socket's bucket and what the rate added meanwhile.
    assert result["replies"].get("notifications", 0) <= 40 + 20 * result["seconds"] + 1, measured
    assert result["replies"].get("rate_limited", 0) <= 50, measured
    # Quiet once the client left: no frame of it is still being executed.
    assert quiet_cpu < 0.5, measured
    assert daphne.log()[log_length:].count("wsgateway") == 0, daphne.log()[log_length:]
    assert "closed the socket of user" in daphne.log()


def seqs(frames: list[dict[str, Any]]) -> set[int]:
    """The seqs of the notifications in these frames: pushes, a resync's missed ones, sync pages."""
    held: set[int] = set()
    for frame in frames:
        payload = frame.get("payload")
        if frame.get("channel") != "notifications" or not isinstance(payload, dict):
            continue
        if isinstance(payload.get("last"), dict):
            held.add(payload["last"]["seq"])
        for key in ("missed", "notifications"):
            held.update(n["seq"] for n in payload.get(key) or () if isinstance(n, dict) and "seq" in n)
    return held


def resynced(frames: list[dict[str, Any]]) -> bool:
    """Whether the server told the socket it resyncs, and its connect frame with what was missed came."""
    told = any(f.get("channel") == "gateway" and f.get("payload") == {"resync": True} for f in frames)
    return told and any(
        "missed" in (f.get("payload") or {}) for f in frames if f.get("channel") == "notifications"
    )


def read_frames_until_closed(sock: socket.socket, within: float = 10) -> tuple[int, int | None]:
    """Read a socket that was left unread: the bytes of its text frames, and the close code at the end
    (``None`` if the connection was dropped first)."""
    sock.settimeout(within)
    inbox, text_bytes = bytearray(), 0
    try:
        while chunk := sock.recv(1 << 20):
            inbox += chunk
            for opcode, payload in server_frames(inbox):
                if opcode == 0x1:
                    text_bytes += len(payload)
                elif opcode == 0x8:
                    return text_bytes, int.from_bytes(payload[:2], "big")
    except (ConnectionResetError, TimeoutError):
        pass
    return text_bytes, None


async def test_a_socket_that_does_not_read_is_closed_with_4408_and_its_users_reading_socket_gets_all(
    daphne: Daphne,
) -> None:
    """The red team's slow reader: one socket of alice's never reads, while her other socket does
    (and acknowledges, as wsgateway.js does) and 10,000 notifications of about 1 KB are pushed."""
    alice = HttpSession(daphne.http_url).login("alice", "alice-password")
    assert daphne.proc is not None
    pid = daphne.proc.pid
    reader = await Client(f"{daphne.ws_url}/ws/", {"Cookie": alice.cookie_header}).connect()
    [connect_state] = [p for p in reader.on("notifications") if "seq" in p and "last" not in p][:1]
    first_seq = connect_state["seq"] + 1
    stuck = raw_websocket(daphne, alice.cookie_header)
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    rss_before = rss_kib(pid)
    log_length = len(daphne.log())
    pushes = 10_000
    for _ in range(pushes // 1000):
        status, body = await asyncio.to_thread(
            alice.post, "/notify-me/", {"count": "1000", "message": "m" * 1000}
        )
        assert status == 200, body

    expected = set(range(first_seq, first_seq + pushes))
    # Every seq the reader holds, as wsgateway.js keeps them: pushed one by one, or, when its own queue
    # overflowed behind a loaded machine (CI saw it once), resent in its resync's connect frame and the
    # "sync" pages after it.
    await reader.wait_for(lambda frames: expected <= seqs(frames) or resynced(frames), timeout=60)
    sync_pages = 0
    while not expected <= (held := seqs(reader.frames)):
        sync_pages += 1
        since = min(expected - held) - 1
        page = await reader.request("notifications", {"action": "sync", "data": {"since": since}}, 30)
        assert page["payload"]["notifications"], (since, page)
    rss_after = rss_kib(pid)
    # The stuck socket's pushes wait for its acknowledgement, ACK_TIMEOUT (10 s) at most.
    deadline = time.monotonic() + 30
    while "with 4408" not in daphne.log()[log_length:] and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.2)  # daphne's log is a file: nothing to wait on
    stuck_bytes, stuck_close = await asyncio.to_thread(read_frames_until_closed, stuck)
    stuck.close()
    assert reader.closed is not None and not reader.closed.done(), "the reading socket was closed"
    await reader.close()
    measured = {
        "pushes": pushes,
        "push_bytes": len(json.dumps(reader.frames[-1], separators=(",", ":"))),
        "daphne_rss_kib_before": rss_before,
        "daphne_rss_kib_after": rss_after,
        "stuck_socket_text_bytes_read_at_the_end": stuck_bytes,
        "stuck_socket_close_code": stuck_close,
        "reader_resynced": resynced(reader.frames),
        "reader_sync_pages": sync_pages,
    }
    OUTPUT.mkdir(exist_ok=True)
    (OUTPUT / "slow-reader.json").write_text(json.dumps(measured, indent=2))
    print(json.dumps(measured, indent=2))
    assert "with 4408" in daphne.log()[log_length:], measured
    # What reached the stuck socket before its close is within its window (1 MiB, the default).
    assert stuck_bytes <= 1024 * 1024, measured
    assert stuck_close in (4408, None), measured
