"""A Prometheus scrape of a two-process site: the sockets of both daphnes, and the counters moving.

Two daphnes of the example project on this module's own redis-server (wsgateway's Redis layer), with
one PROMETHEUS_MULTIPROC_DIR between them, as docs/metrics.md tells a site to run them: either
daphne's ``/wsgateway/metrics`` answers for both (prometheus-client's multiprocess collector). The
limits are small enough to reach in a few frames (a cap of two sockets, a 4429 after two refused
frames) and the maintenance state is re-read every second. Every socket is opened from 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import ConnectionClosed

from tests.support.servers import (
    Cluster,
    Daphne,
    Server,
    close_code,
    cluster_on_redis,
    connect_frames,
    manage,
    ping,
    recv_json,
    ws_connect,
)

pytestmark = [pytest.mark.daphne, pytest.mark.redis, pytest.mark.timeout(90)]

TOKEN = "live-metrics-scrape-token-of-the-test-module"
SETTINGS = {
    "RATE_LIMIT": 1,
    "RATE_BURST": 2,
    "RATE_LIMIT_CLOSE_AFTER": 2,
    "RATE_LIMIT_COOLDOWN": 5,
    "MAX_CONNECTIONS_PER_USER": 2,
    "MAINTENANCE_CHECK_INTERVAL": 1,
    "METRICS_TOKEN": TOKEN,
}
#: Seconds a sample may take to show a change: a close is counted once the server has ended the socket.
SETTLE = 10

Samples = list[tuple[str, dict[str, str], float]]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    directory = tmp_path_factory.mktemp("live-metrics")
    shared = directory / "prometheus"
    shared.mkdir()
    extra = {"WSGATEWAY_EXTRA": json.dumps(SETTINGS), "PROMETHEUS_MULTIPROC_DIR": str(shared)}
    with cluster_on_redis(directory, "metrics", **extra) as cluster:
        yield cluster


def scrape(daphne: Server, token: str | None = TOKEN) -> tuple[int, str]:
    request = urllib.request.Request(f"{daphne.http_url}/wsgateway/metrics")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def samples(daphne: Server) -> Samples:
    status, text = scrape(daphne)
    assert status == 200, text
    return [
        (s.name, dict(s.labels), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def total(read: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(v for n, have, v in read if n == name and labels.items() <= have.items())


def sockets_by_pid(read: Samples) -> dict[str, float]:
    found: dict[str, float] = {}
    for name, labels, value in read:
        if name == "wsgateway_sockets_open":
            found[labels["pid"]] = found.get(labels["pid"], 0) + value
    return found


async def settled(daphne: Daphne, check: Callable[[Samples], bool]) -> Samples:
    """The scrape once ``check`` holds of it, within SETTLE seconds."""
    deadline = time.monotonic() + SETTLE
    while True:
        read = await asyncio.to_thread(samples, daphne)
        if check(read):
            return read
        assert time.monotonic() < deadline, "the scrape never showed it"
        await asyncio.sleep(0.2)


def test_the_scrape_wants_the_token(cluster: Cluster) -> None:
    assert scrape(cluster.first, token=None)[0] == 403
    assert scrape(cluster.first, token="not-it")[0] == 403


async def test_a_scrape_of_either_process_shows_the_sockets_of_both(cluster: Cluster) -> None:
    pids = {str(daphne.proc.pid) for daphne in (cluster.first, cluster.second) if daphne.proc is not None}
    before = sockets_by_pid(await asyncio.to_thread(samples, cluster.first))
    on_first = await ws_connect(f"{cluster.first.ws_url}/ws/", cookie=cluster.bob.cookie_header)
    on_second = await ws_connect(f"{cluster.second.ws_url}/ws/", cookie=cluster.bob.cookie_header)
    try:
        await connect_frames(on_first)
        await connect_frames(on_second)

        def both_up(read: Samples) -> bool:
            now = sockets_by_pid(read)
            return all(now.get(pid, 0) == before.get(pid, 0) + 1 for pid in pids)

        for daphne in (cluster.first, cluster.second):
            read = await settled(daphne, both_up)
            assert set(sockets_by_pid(read)) >= pids
    finally:
        await on_first.close()
        await on_second.close()
    # And down again once they closed.
    await settled(
        cluster.second,
        lambda read: all(sockets_by_pid(read).get(pid, 0) == before.get(pid, 0) for pid in pids),
    )


async def test_connects_pushes_a_4409_a_4429_and_a_maintenance_refusal_move_the_counters(
    cluster: Cluster,
) -> None:
    before = await asyncio.to_thread(samples, cluster.first)

    def moved(name: str, by: float = 1, **labels: str) -> Callable[[Samples], bool]:
        return lambda read: total(read, name, **labels) >= total(before, name, **labels) + by

    # A connect on each daphne, and a push from a third process (manage.py notify) to both sockets.
    first = await ws_connect(f"{cluster.first.ws_url}/ws/", cookie=cluster.alice.cookie_header)
    second = await ws_connect(f"{cluster.second.ws_url}/ws/", cookie=cluster.alice.cookie_header)
    await connect_frames(first)
    await connect_frames(second)
    await asyncio.to_thread(manage, cluster.env, "notify", "alice", "Counted", "--category", "info")
    for ws in (first, second):
        assert (await recv_json(ws))["channel"] == "notifications"
    read = await settled(cluster.second, moved("wsgateway_connects_total", 2))
    assert total(read, "wsgateway_pushes_total") == total(before, "wsgateway_pushes_total") + 1
    sent = total(read, "wsgateway_frames_sent_total", channel="notifications")
    # Each socket's connect frame on the channel, and the push to each.
    assert sent == total(before, "wsgateway_frames_sent_total", channel="notifications") + 4

    # A third socket of alice's, over MAX_CONNECTIONS_PER_USER (2): refused 4409, on either daphne.
    third = await ws_connect(f"{cluster.second.ws_url}/ws/", cookie=cluster.alice.cookie_header)
    assert (await recv_json(third))["error"]["code"] == "too_many_connections"
    assert await close_code(third) == 4409
    await settled(cluster.first, moved("wsgateway_refusals_total", reason="cap"))

    # alice's first socket floods: two refused frames answered rate_limited, then 4429.
    for n in range(10):
        await first.send(json.dumps({"channel": "gateway", "payload": {"action": "ping"}, "id": n}))
    try:
        while True:
            await recv_json(first)
    except ConnectionClosed:
        pass
    assert first.close_code == 4429
    read = await settled(cluster.first, moved("wsgateway_closes_total", code="4429"))
    assert total(read, "wsgateway_refusals_total", reason="rate_limited") >= (
        total(before, "wsgateway_refusals_total", reason="rate_limited") + 2
    )
    await second.close()

    # Maintenance on (from another process): bob's new socket is refused 4503.
    await asyncio.to_thread(manage, cluster.env, "wsgateway_maintenance", "on", "--retry-after", "3")
    try:
        deadline = time.monotonic() + SETTLE
        while True:
            ws = await ws_connect(f"{cluster.first.ws_url}/ws/", cookie=cluster.bob.cookie_header)
            frame = await recv_json(ws)
            if "error" in frame:
                assert frame["error"]["code"] == "maintenance", frame
                assert await close_code(ws) == 4503
                break
            await ws.close()
            assert time.monotonic() < deadline, "maintenance never refused a socket"
            await asyncio.sleep(0.3)
    finally:
        await asyncio.to_thread(manage, cluster.env, "wsgateway_maintenance", "off")
    await settled(cluster.second, moved("wsgateway_refusals_total", reason="maintenance"))


async def test_the_processes_logged_no_traceback_while_scraped(cluster: Cluster) -> None:
    ws = await ws_connect(f"{cluster.second.ws_url}/ws/", cookie=cluster.bob.cookie_header)
    await connect_frames(ws)
    assert (await ping(ws))["payload"] == {"action": "pong"}
    await ws.close()
    await asyncio.to_thread(samples, cluster.second)
    for daphne in (cluster.first, cluster.second):
        assert "Traceback" not in daphne.log(), daphne.log_path


async def test_a_killed_process_s_sockets_leave_the_scrape_and_its_counters_stay(cluster: Cluster) -> None:
    """The last test of the module: it kills the second daphne, and starts it again for the fixture."""
    victim = cluster.second
    assert victim.proc is not None
    pid = str(victim.proc.pid)
    ws = await ws_connect(f"{victim.ws_url}/ws/", cookie=cluster.bob.cookie_header)
    await connect_frames(ws)
    before = await settled(cluster.first, lambda read: sockets_by_pid(read).get(pid, 0) >= 1)
    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait(10)
    try:
        # No server said it died: the scrape of the first finds its pid gone.
        after = await settled(cluster.first, lambda read: pid not in sockets_by_pid(read))
        connects = total(before, "wsgateway_connects_total")
        assert total(after, "wsgateway_connects_total") >= connects  # a counter keeps the dead's part
    finally:
        await ws.close()
        victim.start()
