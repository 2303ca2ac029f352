"""The soak (bench/soak.py, ``make soak``): its accounting, and a small run of it in the suite.

The accounting (bench.soak_client.Slot) is what says "0 lost, 0 duplicated": its rules are tested first,
without a socket, so that a soak that reports nothing wrong is known to be able to. The small run is 200
sockets over two daphnes on one Redis for about ten seconds, with notify() at 50 a second, a broadcast
and reconnects; it asserts what the issue's soak must hold whatever the machine's load: nothing lost,
nothing duplicated, no resync, every broadcast at every socket open throughout. No speed is asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import pytest

from bench.soak import read_gc, resync_log_lines
from bench.soak_client import Runner, Slot, SoakPlan, SoakSocket
from tests.support.servers import ROOT, project_env


def slot(cursor: int = 0) -> Slot:
    return Slot(index=0, user_id=7, token="t", port=1, cursor=cursor, base=cursor)


# -- the accounting, without a socket -----------------------------------------------------------


def test_pushes_in_order_move_the_cursor_and_ask_nothing() -> None:
    page = slot()
    assert [page.pushed(seq) for seq in (1, 2, 3)] == [None, None, None]
    assert page.cursor == 3 and page.got == {1: "live", 2: "live", 3: "live"}
    assert page.missing([1, 2, 3]) == set()


def test_a_push_past_a_gap_is_kept_and_asks_a_sync_from_the_cursor() -> None:
    page = slot()
    page.pushed(1)
    assert page.pushed(3) == 1
    assert (page.cursor, page.gaps, page.syncing) == (1, 1, True)
    assert page.pushed(5) is None  # a sync is under way: not a second one
    assert page.missing([1, 2, 3, 4, 5]) == {2, 4}
    assert page.caught_up([2, 3, 4], has_more=False, seq=4) is None
    assert (page.cursor, page.syncing, page.overlaps) == (5, False, 1)  # 3 came both ways
    assert page.missing([1, 2, 3, 4, 5]) == set()


def test_a_seq_pushed_twice_is_a_duplicate_and_one_caught_up_twice_an_overlap() -> None:
    page = slot()
    page.pushed(1)
    page.pushed(1)
    page.caught_up([1], has_more=False, seq=1)
    assert (page.duplicates, page.overlaps) == (1, 1)


def test_a_catch_up_with_more_asks_the_next_page_from_where_it_ended() -> None:
    page = slot(cursor=10)
    assert page.opened(250) == 10
    assert page.caught_up(list(range(11, 111)), has_more=True, seq=110) == 110
    assert page.caught_up(list(range(111, 211)), has_more=True, seq=210) == 210
    assert page.caught_up(list(range(211, 251)), has_more=False, seq=250) is None
    assert page.cursor == 250 and page.missing(list(range(11, 251))) == set()


def test_a_new_page_starts_at_the_users_latest_and_a_reconnect_asks_only_when_behind() -> None:
    page = slot(cursor=-1)
    assert page.opened(41) is None and page.cursor == 41
    assert page.opened(41) is None  # nothing came meanwhile
    assert page.opened(43) == 41


def test_lost_is_what_the_database_has_after_the_first_socket_and_the_page_never_got() -> None:
    page = slot(cursor=-1)
    assert page.missing([1, 2]) == set()  # never connected: counted apart, as a failed connect
    page.opened(1)
    page.pushed(2)
    page.pushed(4)
    assert page.missing([1, 2, 3, 4, 5]) == {3, 5}


class FakeSocket:
    """What Runner.on_frame reads of a socket: its slot, its broadcasts, and the syncs it asks."""

    def __init__(self, page: Slot) -> None:
        self.slot = page
        self.broadcasts: dict[int, float] = {}
        self.asked: list[int] = []

    def sync(self, since: int | None) -> None:
        if since is not None:
            self.asked.append(since)


def push(seq: int, ts: float = 9.0) -> dict[str, Any]:
    return {"channel": "notifications", "payload": {"last": {"seq": seq, "data": {"t": ts, "ts": ts}}}}


async def test_the_runner_routes_each_frame_to_the_page() -> None:
    runner = Runner(SoakPlan(slots=[[0, 7, "t", 1]], reconnects_per_s=0))
    fake = FakeSocket(runner.slots[0])
    sock = cast(SoakSocket, fake)  # on_frame reads no more of a socket than FakeSocket has
    sock.slot.cursor = sock.slot.base = 0
    on = runner.on_frame
    on(sock, push(1), 10.0)
    on(sock, push(3), 10.5)
    assert fake.asked == [1] and runner.latencies == [1.0, 1.5]
    sync_page = {"notifications": [{"seq": 2}, {"seq": 3}], "has_more": False, "seq": 3}
    on(sock, {"channel": "notifications", "id": "s1", "payload": sync_page}, 11.0)
    broadcast = {"channel": "notifications", "payload": {"r": 1000, "n": 0, "t": 10.0}}
    on(sock, broadcast, 10.25)
    on(sock, {"channel": "gateway", "payload": {"resync": True}}, 12.0)
    resync = {
        "channel": "notifications",
        "payload": {"unread": 5, "seq": 5, "missed": [{"seq": 4}, {"seq": 5}]},
    }
    on(sock, resync, 12.0)
    refused = {"channel": "notifications", "id": "s3", "error": {"code": "rate_limited", "message": "..."}}
    on(sock, refused, 13.0)
    page = sock.slot
    assert (page.cursor, page.gaps, page.overlaps, page.duplicates, page.syncing) == (5, 1, 1, 0, False)
    assert page.got == {1: "live", 2: "sync", 3: "live", 4: "sync", 5: "sync"}
    assert sock.broadcasts == {1000: 0.25} and runner.resync_frames == 1
    assert runner.errors == ["slot 0: {'code': 'rate_limited', 'message': '...'}"]


def test_the_servers_files_are_read_within_the_window(tmp_path: Path) -> None:
    gc_file = tmp_path / "gc.jsonl"
    counters = {"sockets.resynced": 0}
    lines = [
        {"tick": 5.0, "count": [1, 0, 0], "ms": [0.1, 0, 0], "counters": counters},
        {"gc": [2, 900.0, 4.0]},  # before the run: not counted
        {"gc": [2, 30.0, 12.0]},
        {"gc": [0, 60.0, 13.0]},
        {"tick": 20.0, "count": [9, 2, 1], "ms": [5, 1, 30], "counters": {"sockets.resynced": 3}},
    ]
    gc_file.write_text("".join(json.dumps(line) + "\n" for line in lines) + '{"gc": [2, ')
    read = read_gc(gc_file, since=10.0, until=30.0)
    assert (read["full_collections"], read["full_ms_max"], read["pauses_over_50ms"]) == (1, 30.0, 1)
    assert read["counters_during_run"] == {"sockets.resynced": 3}
    log = tmp_path / "daphne.log"
    log.write_text("wsgateway: channel layer is back; resyncing 12 socket(s)\nother\n")
    assert resync_log_lines(log) == (1, 12)


# -- a small soak, for real ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def soak_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    pytest.importorskip("daphne", reason="no daphne (daphne extra): the soak serves with it")
    output = tmp_path_factory.mktemp("soak-results")
    env = project_env()
    env.pop("DJANGO_SETTINGS_MODULE")
    result = subprocess.run(
        [
            *(sys.executable, "-m", "bench.soak", "--sockets", "200", "--processes", "2"),
            *("--per-user", "2", "--duration", "8", "--rate", "50", "--broadcasts", "1"),
            *("--reconnects", "4", "--offline", "1", "--drain", "20", "--db", "sqlite"),
            *("--server", "daphne", "--output", str(output)),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=200,
    )
    reports = sorted(output.glob("soak-*.json"))
    assert len(reports) == 1, f"python -m bench.soak wrote no report:\n{result.stdout}\n{result.stderr}"
    report: dict[str, Any] = json.loads(reports[0].read_text())
    report["stdout"] = result.stdout
    return report


@pytest.mark.daphne
@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_small_soak_loses_nothing_and_duplicates_nothing(soak_run: dict[str, Any]) -> None:
    result = soak_run["result"]
    assert (result["connected"], result["connect_failed"], result["never_connected"]) == (200, 0, 0)
    assert result["producer"]["sent"] == 400 and result["producer"]["error_count"] == 0
    # Every row of every user, at each of the user's two sockets: live or by catch-up.
    assert result["expected"] == 2 * 400
    lost = (result["lost"], result["lost_while_refused"], result["duplicates"], result["unexpected"])
    assert lost == (0, 0, 0, 0), result["lost_examples"]
    # The reconnects happened, and their sockets were away long enough to need the catch-up.
    assert result["reconnects"] > 10 and result["reconnect_failures"] == 0
    assert result["caught_up"] > 0 and result["live"] + result["caught_up"] == result["expected"]
    assert all(result["servers_alive"])


@pytest.mark.daphne
@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_small_soak_resyncs_nothing_and_broadcasts_to_every_open_socket(soak_run: dict[str, Any]) -> None:
    result = soak_run["result"]
    assert result["resyncs_counted"] == 0 and result["resync_frames"] == 0
    assert result["resyncs_logged"] == [[0, 0], [0, 0]]
    (broadcast,) = result["broadcasts"]
    assert broadcast["missed"] == 0 and broadcast["sockets"] + broadcast["excluded"] >= 180, broadcast
    # The servers' own files were read: their collections and counters, and memory over time.
    for server in result["gc"]:
        assert server["collections"] is not None and "sockets.resynced" in server["counters_total"]
    assert len(result["rss_samples"]) >= 2
    assert "| lost / duplicated" in soak_run["stdout"] and "0 / 0" in soak_run["stdout"]
