"""``manage.py wsgateway_status`` on a two-process site: two daphnes of the example project on this
module's own redis-server (wsgateway's Redis layer), sockets on each, and the command run as a third
process with the same environment, as an operator runs it. Every socket is opened from 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.servers import (
    ROOT,
    Cluster,
    cluster_on_redis,
    connect_frames,
    manage,
    recv_json,
    ws_connect,
)
from wsgateway import status

pytestmark = [pytest.mark.daphne, pytest.mark.redis, pytest.mark.timeout(120)]

#: Seconds a change may take to show: the next publish of the process (status.INTERVAL), and a
#: command's start (a Django process: about a second here) per try, with room for a loaded machine.
SETTLE = 20


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with cluster_on_redis(tmp_path_factory.mktemp("live-status"), "status") as cluster:
        yield cluster


def status_json(env: dict[str, str]) -> dict[str, Any]:
    return json.loads(manage(env, "wsgateway_status", "--once", "--json").stdout)  # type: ignore[no-any-return]


def by_pid(view: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {process["pid"]: process for process in view["processes"]}


def sockets(counts: dict[int, int]) -> Callable[[dict[int, dict[str, Any]]], bool]:
    """Whether each process (by pid) is listed with its count of sockets."""
    return lambda found: all(found.get(pid, {}).get("sockets") == n for pid, n in counts.items())


async def settled(env: dict[str, str], check: Callable[[dict[int, dict[str, Any]]], bool]) -> dict[str, Any]:
    """The command's view once ``check`` holds of its processes, within SETTLE seconds."""
    deadline = time.monotonic() + SETTLE
    while True:
        view = await asyncio.to_thread(status_json, env)
        if check(by_pid(view)):
            return view
        assert time.monotonic() < deadline, f"the status never showed it: {view}"
        await asyncio.sleep(0.3)


async def test_the_status_reports_both_processes_with_their_sockets(cluster: Cluster) -> None:
    first, second = cluster.pid(cluster.first), cluster.pid(cluster.second)
    on_first = [await ws_connect(f"{cluster.first.ws_url}/ws/", cookie=cluster.bob.cookie_header)]
    on_second = [
        await ws_connect(f"{cluster.second.ws_url}/ws/", cookie=cluster.alice.cookie_header) for _ in range(2)
    ]
    try:
        for ws in (*on_first, *on_second):
            await connect_frames(ws)

        view = await settled(cluster.env, sockets({first: 1, second: 2}))
        processes = by_pid(view)
        assert view["sockets"] >= 3
        for pid, n in ((first, 1), (second, 2)):
            process = processes[pid]
            assert process["server"] == "daphne" and process["host"]
            assert process["endpoints"] == {"GatewayConsumer": n}
            assert process["totals"]["connects"] >= n, "its connects counted"
            assert process["at"] >= process["started"]
        assert view["maintenance"] == {"on": False}
        assert view["online_users"] >= 2, "alice and bob"

        # A push from a fourth process (manage.py notify) reaches alice's two sockets on the second.
        sent = processes[second]["totals"]["frames_out"]
        await asyncio.to_thread(manage, cluster.env, "notify", "alice", "Counted", "--category", "info")
        for ws in on_second:
            assert (await recv_json(ws))["channel"] == "notifications"
        await settled(cluster.env, lambda found: found[second]["totals"]["frames_out"] >= sent + 2)

        text = (await asyncio.to_thread(manage, cluster.env, "wsgateway_status", "--once")).stdout
        rows = {line.split()[0] for line in text.splitlines() if line[:1].isdigit()}
        assert {str(first), str(second)} <= rows, text
        assert "GatewayConsumer 2" in text and "maintenance off" in text
    finally:
        for ws in (*on_first, *on_second):
            await ws.close()

    # The last socket of each ended: each publishes once more, and stays listed with none.
    view = await settled(cluster.env, sockets({first: 0, second: 0}))
    assert all(p["sockets"] == 0 for p in by_pid(view).values() if p["pid"] in (first, second))
    assert status.IDLE_KEEP > SETTLE, "they stay listed while this test looks"


def test_the_live_view_ends_at_ctrl_c_without_a_traceback(cluster: Cluster) -> None:
    command = [sys.executable, str(ROOT / "manage.py"), "wsgateway_status", "--interval", "0.5"]
    proc = subprocess.Popen(
        command, cwd=ROOT, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # the first view's first line: the command is refreshing
        assert first.startswith("wsgateway at "), first
        time.sleep(1.2)  # a refresh or two
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert out.count("wsgateway at ") >= 2, "it refreshed"


def test_the_processes_logged_no_traceback(cluster: Cluster) -> None:
    for daphne in (cluster.first, cluster.second):
        assert "Traceback" not in daphne.log(), daphne.log_path
