"""Each process's status (wsgateway.status) and ``manage.py wsgateway_status``: the snapshot built from
counters (a pure function), the rates and the latency from two readings, the reporter's life on a fake
layer and clock, the rendering as text and JSON, the Redis layer's ``status`` extension against a real
Redis, and the command on a layer without it. tests/test_live_status.py runs two daphnes."""

from __future__ import annotations

import asyncio
import io
import json
import math
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from tests.support.communicators import connected
from wsgateway import metrics, status
from wsgateway.layers import InProcessChannelLayer
from wsgateway.layers.extensions import STATUS, supports
from wsgateway.layers.redis import RedisChannelLayer
from wsgateway.maintenance import State
from wsgateway.management.commands.wsgateway_status import render_text, report
from wsgateway.status import Process, StatusReporter

PROCESS = Process("web-1-4242-abc123", 4242, "web-1", "daphne", 1000.0)
LATENCY = "wsgateway_push_latency_seconds"


def histogram(*counts: float) -> dict[str, float]:
    """Latency counters: cumulative counts for the bounds 1 ms, 5 ms, 10 ms and +Inf."""
    bounds = ("0.001", "0.005", "0.01", "+Inf")
    return {metrics.key(f"{LATENCY}_bucket", le): n for le, n in zip(bounds, counts, strict=True)}


def counters(**extra: float) -> dict[str, float]:
    return {
        "wsgateway_connects_total:GatewayConsumer": 10,
        "wsgateway_connects_total:NotifierConsumer": 2,
        "wsgateway_sockets_open:GatewayConsumer": 3,
        "wsgateway_sockets_open:NotifierConsumer": 1,
        "wsgateway_sockets_open:ClipboardConsumer": 0,
        "wsgateway_frames_received_total:gateway": 40,
        "wsgateway_frames_sent_total:notifications": 100,
        "wsgateway_frames_sent_total:gateway": 20,
        "wsgateway_pushes_total": 7,
        metrics.CONNECTIONS_REFUSED: 2,
        metrics.CONNECTIONS_MAINTENANCE: 5,
        metrics.LAYER_DROPPED: 1,
        metrics.SOCKETS_RESYNCED: 4,
        **extra,
    }


# -- the pure parts --------------------------------------------------------------------------------


def test_a_quantile_is_read_off_cumulative_buckets_as_prometheus_does() -> None:
    buckets = [(0.001, 0.0), (0.005, 10.0), (0.01, 10.0), (math.inf, 10.0)]
    assert status.quantile(buckets, 0.5) == pytest.approx(0.003)  # halfway into the 1-5 ms bucket
    assert status.quantile(buckets, 0.99) == pytest.approx(0.001 + 0.004 * 0.99)
    # Past the last finite bound: that bound, as histogram_quantile answers.
    assert status.quantile([(0.001, 1.0), (math.inf, 10.0)], 0.99) == 0.001
    assert status.quantile([(0.001, 0.0), (math.inf, 0.0)], 0.5) is None
    assert status.quantile([], 0.5) is None


def test_rates_are_the_counters_moves_over_the_seconds_between_two_readings() -> None:
    before = counters(**histogram(0, 1, 1, 1))
    after = counters(
        **{
            "wsgateway_connects_total:GatewayConsumer": 14,
            "wsgateway_frames_sent_total:notifications": 130,
            "wsgateway_pushes_total": 13,
            "wsgateway_closes_total:GatewayConsumer:1000": 2,
        },
        **histogram(0, 9, 11, 11),
    )
    assert status.rates(before, after, 2.0) == {
        "connects": 2.0,
        "closes": 1.0,
        "pushes": 3.0,
        "frames_in": 0.0,
        "frames_out": 15.0,
    }
    assert status.rates(None, after, 2.0) is None, "one reading has no rate"
    assert status.rates(after, before, 2.0)["connects"] == 0.0, "a counter read lower rates 0"  # type: ignore[index]


def test_the_snapshot_is_built_from_the_counters_alone() -> None:
    before = counters(**histogram(0, 1, 1, 1))
    now = counters(**{"wsgateway_connects_total:GatewayConsumer": 16}, **histogram(0, 11, 21, 21))
    snapshot = status.build(now, before, PROCESS, at=2000.0, window=2.0)
    assert snapshot["pid"] == 4242 and snapshot["host"] == "web-1" and snapshot["server"] == "daphne"
    assert snapshot["id"] == PROCESS.id and snapshot["started"] == 1000.0 and snapshot["at"] == 2000.0
    assert snapshot["sockets"] == 4
    assert snapshot["endpoints"] == {"GatewayConsumer": 3, "NotifierConsumer": 1}, "no socket, no row"
    assert snapshot["totals"]["connects"] == 18 and snapshot["totals"]["frames_out"] == 120
    assert snapshot["rates"]["connects"] == 3.0 and snapshot["window"] == 2.0
    # The latency of the window's 20 frames timed: 10 under 5 ms and 10 from 5 to 10 ms.
    assert snapshot["latency"] == {"p50": 0.005, "p99": pytest.approx(0.0099), "samples": 20}
    assert snapshot["refusals"]["cap"] == 2 and snapshot["refusals"]["maintenance"] == 5
    assert set(snapshot["refusals"]) >= {"cap", "maintenance", "rate_limited", "origin", "cooling_down"}
    assert snapshot["layer"] == {"dropped": 1, "expired": 0, "late": 0, "overflows": 0, "resyncs": 4}
    # The first snapshot: no rates yet, and the latency since the start.
    first = status.build(before, None, PROCESS, at=1001.0, window=0.0)
    assert first["rates"] is None and first["window"] is None and first["latency"]["samples"] == 1
    # Without prometheus-client: no latency at all.
    assert status.build(counters(), None, PROCESS, at=1001.0, window=0.0)["latency"] is None


def test_a_snapshot_stays_under_its_bound_whatever_the_endpoints() -> None:
    many = {f"wsgateway_sockets_open:{n:03d}{'Consumer' * 20}": n + 1 for n in range(200)}
    snapshot = status.build(counters(**many), counters(), PROCESS, at=2000.0, window=2.0)
    assert len(snapshot["endpoints"]) == status.MAX_ENDPOINTS
    assert snapshot["sockets"] == sum(range(1, 201)) + 4, "the rest are counted under 'other'"
    assert all(len(name) <= status.MAX_ENDPOINT_NAME for name in snapshot["endpoints"])
    assert len(status.encode(snapshot).encode()) < status.MAX_SNAPSHOT
    with pytest.raises(ValueError, match="over"):
        status.encode({"endpoints": "x" * status.MAX_SNAPSHOT})


def test_a_reader_keeps_only_snapshots_it_understands() -> None:
    good = status.encode(status.build(counters(), None, PROCESS, at=2000.0, window=0.0))
    other = status.encode(
        status.build(counters(), None, Process("web-0-7-x", 7, "web-0", None, 1.0), at=2000.0, window=0.0)
    )
    partial = json.dumps({"v": status.VERSION, "pid": 1, "at": 1.0})
    texts = [good, "not json", json.dumps({"v": 99, "pid": 1, "at": 1}), partial, "[1]", "x" * 9000, other]
    assert [s["pid"] for s in status.decode(texts)] == [7, 4242], "ordered by host, then pid"


def test_the_server_is_named_by_the_command_line() -> None:
    assert status.server_name(["/srv/venv/lib/python3.12/site-packages/daphne/__main__.py"], {}) == "daphne"
    assert status.server_name(["/srv/venv/bin/uvicorn", "mysite.asgi:application"], {}) == "uvicorn"
    assert status.server_name(["manage.py", "runserver"], {}) == "runserver"
    # A uvicorn worker under gunicorn, and a process that does not say: not daphne for its import alone.
    assert status.server_name(["python"], {"gunicorn": object(), "daphne": object()}) == "gunicorn"
    assert status.server_name(["python"], {"daphne": object()}) is None


SNAPSHOT_OF_A_FRESH_PROCESS = (
    "import time\n"
    "from wsgateway import metrics, status\n"
    "meter = metrics.SocketMeter('GatewayConsumer', frozenset({'gateway'}))\n"
    "meter.opened(); meter.sent('gateway'); meter.received('gateway')\n"
    "metrics.increment(metrics.CONNECTIONS_REFUSED)\n"
    "for _ in range(32): metrics.push_delivered(time.time() - 0.003)\n"
    "snapshot = status.build(status.read_counters(), None, status.this_process(), time.time(), 0.0)\n"
    "print(status.encode(snapshot))\n"
)


@pytest.mark.parametrize("mode", ["without prometheus-client", "multiprocess"])
def test_a_process_reads_its_own_counters(mode: str, tmp_path: Any) -> None:
    """What a snapshot reads of a fresh process (a subprocess): the integers alone without the extra;
    prometheus-client's values of this process in its multiprocess mode, not the files' sum."""
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    code = SNAPSHOT_OF_A_FRESH_PROCESS
    runs = 1
    if mode == "multiprocess":
        env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path)
        runs = 2  # the second reads its own samples, not the first's beside them in the directory
    else:
        code = "import sys; sys.modules['prometheus_client'] = None\n" + code
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
    if mode == "multiprocess":
        assert len(list(tmp_path.glob("counter_*.db"))) == 2, "two processes wrote their samples"
    snapshot = json.loads(done.stdout)
    assert snapshot["sockets"] == 1 and snapshot["endpoints"] == {"GatewayConsumer": 1}
    assert snapshot["totals"]["connects"] == 1 and snapshot["totals"]["frames_out"] == 1
    assert snapshot["totals"]["frames_in"] == 1 and snapshot["refusals"]["cap"] == 1
    if mode == "multiprocess":
        # One frame in metrics.LATENCY_SAMPLE timed: 2 of the 32, each of 3 ms.
        assert snapshot["latency"]["samples"] == 32 // metrics.LATENCY_SAMPLE
        assert 0.0025 <= snapshot["latency"]["p50"] <= 0.005
    else:
        assert snapshot["latency"] is None, "no histogram without prometheus-client"


# -- the reporter on a fake layer and clock ------------------------------------------------------


class FakeLayer:
    extensions = [STATUS]

    def __init__(self) -> None:
        self.published: list[tuple[str, dict[str, Any], float]] = []

    async def status_publish(self, process: str, snapshot: str, ttl: float) -> None:
        self.published.append((process, json.loads(snapshot), ttl))


class Clock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_the_reporter_publishes_at_the_first_socket_and_once_more_after_the_last() -> None:
    layer, clock = FakeLayer(), Clock()
    reporter = StatusReporter(layer, clock=clock, wall=clock)
    reporter.add("a")
    reporter.add("b")
    await settle()
    assert len(layer.published) == 1, "one publish at once, then the timer's"
    process, first, ttl = layer.published[0]
    assert process == status.this_process().id and first["pid"] == status.this_process().pid
    assert ttl == status.TTL and first["rates"] is None
    reporter.discard("a")
    reporter.discard("never-added")
    await settle()
    assert len(layer.published) == 1, "a socket left, another is open: no publish out of turn"
    clock.now += 1.0  # past MIN_GAP: the last publish does not wait for it
    reporter.discard("b")
    await asyncio.wait_for(reporter.task, 1)  # type: ignore[arg-type]
    _, last, ttl = layer.published[-1]
    assert len(layer.published) == 2 and ttl == status.IDLE_KEEP
    assert last["window"] == 1.0 and last["rates"] is not None
    # A new socket starts it again.
    clock.now += 1.0
    reporter.add("c")
    await settle()
    assert len(layer.published) == 3 and layer.published[-1][2] == status.TTL
    reporter.discard("c")
    await asyncio.wait_for(reporter.task, 1)  # type: ignore[arg-type]


async def test_the_reporters_rates_count_what_happened_between_two_snapshots() -> None:
    clock = Clock()
    reporter = StatusReporter(FakeLayer(), clock=clock, wall=clock)
    endpoint = f"Rated{secrets.token_hex(3)}"
    reporter.snapshot()
    metrics.count("wsgateway_connects_total", endpoint).inc(6)
    clock.now += 3.0
    snapshot = reporter.snapshot()
    # Other tests of this process may connect meanwhile: at least these six, over the three seconds.
    assert snapshot["window"] == 3.0 and snapshot["rates"]["connects"] >= 2.0
    assert snapshot["at"] == clock.now
    # Over RATE_WINDOW seconds, about: from the oldest reading that leaves no younger one that old.
    clock.now += 8.0
    assert reporter.snapshot()["window"] == 11.0, "the first reading is the oldest within the window"
    clock.now += 3.0
    assert reporter.snapshot()["window"] == 11.0, "the first is dropped: the second is 11 s old"
    assert len(reporter.readings) == 3


@pytest.mark.django_db(transaction=True)
async def test_a_socket_on_a_layer_without_the_extension_starts_no_reporter(alice: Any) -> None:
    assert not supports(InProcessChannelLayer, STATUS)
    async with connected(alice):
        assert not status._reporters.get(asyncio.get_running_loop())


# -- rendering -------------------------------------------------------------------------------------


def two_processes() -> list[dict[str, Any]]:
    first = status.build(
        counters(**histogram(0, 1, 1, 1)), counters(), PROCESS, at=2000.0, window=2.0
    )  # rates, latency
    second = status.build(
        {"wsgateway_sockets_open:GatewayConsumer": 2},
        None,
        Process("web-2-77-x", 77, "web-2", None, 1900.0),
        1999.0,
        0,
    )
    return [first, second]


def test_the_text_view_has_a_row_per_process_and_what_moved_under_it() -> None:
    on = State("Upgrading", 30, datetime(2026, 12, 5, 6, 0, tzinfo=UTC))
    text = render_text(report(two_processes(), 2001.0, on, 3))
    lines = text.splitlines()
    assert (
        "processes 2, sockets 6, users online 3, MAINTENANCE ON since 2026-12-05T06:00:00+00:00" in lines[0]
    )
    assert lines[2].split()[:3] == ["PID", "HOST", "SERVER"]
    row = next(line for line in lines if line.startswith("4242"))
    assert row.split()[:5] == ["4242", "web-1", "daphne", "16m40s", "4"]
    assert row.split()[-2:] == ["1s", "ago"]
    assert "    sockets: GatewayConsumer 3, NotifierConsumer 1" in lines
    assert "    refused: cap 2, maintenance 5" in lines
    assert "    layer: dropped 1, resyncs 4" in lines
    other = next(line for line in lines if line.startswith("77 "))
    assert other.split()[2:5] == ["?", "1m39s", "2"] and " - " in other, "no rate yet: '-'"
    empty = render_text(report([], 2001.0, None, None))
    assert "processes 0, sockets 0, users online ?, maintenance off" in empty
    assert "No process is publishing its status" in empty


def test_the_json_view_lists_the_processes_and_the_site() -> None:
    view = report(two_processes(), 2001.0, None, 12_345)
    assert json.loads(json.dumps(view)) == view
    assert [p["pid"] for p in view["processes"]] == [4242, 77]
    assert view["processes"][0]["age"] == 1.0 and view["processes"][1]["age"] == 2.0
    assert view["sockets"] == 6 and view["maintenance"] == {"on": False}
    assert view["online_users"] == 12_345
    assert report([], 1.0, "unknown", None)["maintenance"] == {"on": None}


# -- the command -----------------------------------------------------------------------------------


def test_the_command_says_it_needs_the_redis_layer() -> None:
    with pytest.raises(CommandError, match="wsgateway's Redis layer") as raised:
        call_command("wsgateway_status", "--once")
    assert "InProcessChannelLayer" in str(raised.value)


def test_the_command_refuses_an_interval_out_of_bounds() -> None:
    with pytest.raises(CommandError, match="interval"):
        call_command("wsgateway_status", "--once", "--interval", "0.01")


def test_the_command_says_so_when_redis_does_not_answer() -> None:
    from tests.support.servers import free_port

    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    layers = {"default": {"BACKEND": "wsgateway.layers.redis.RedisChannelLayer", "CONFIG": {"hosts": [url]}}}
    with override_settings(CHANNEL_LAYERS=layers), pytest.raises(CommandError, match="could not read"):
        call_command("wsgateway_status", "--once")


@pytest.fixture
async def redis_layer(redis_url: str) -> AsyncIterator[RedisChannelLayer]:
    layer = RedisChannelLayer(hosts=[redis_url], prefix=f"status-{secrets.token_hex(4)}")
    yield layer
    await layer.close()


@pytest.mark.redis
async def test_the_redis_layer_keeps_each_snapshot_for_its_life(redis_layer: RedisChannelLayer) -> None:
    assert supports(RedisChannelLayer, STATUS)
    await redis_layer.status_publish("a", '{"n": 1}', 10)
    await redis_layer.status_publish("b", '{"n": 2}', 0.3)
    await redis_layer.status_publish("a", '{"n": 3}', 10)  # replaces a's
    assert sorted(await redis_layer.status_read(10)) == ['{"n": 2}', '{"n": 3}']
    assert len(await redis_layer.status_read(1)) == 1, "bounded"
    await asyncio.sleep(0.5)
    assert await redis_layer.status_read(10) == ['{"n": 3}'], "b's expired, and is gone from the index"
    client = redis_layer._state().client
    assert await client.zrange(redis_layer.status_key, 0, -1) == [b"a"]
    assert 0 < await client.pttl(redis_layer.status_key) <= 11_000, "the index expires with its last"


@pytest.mark.redis
@pytest.mark.django_db
def test_the_command_reads_back_what_a_process_published(redis_url: str) -> None:
    prefix = f"status-{secrets.token_hex(4)}"
    snapshot = status.build(counters(), None, PROCESS, at=2000.0, window=0.0)

    async def publish() -> None:
        layer = RedisChannelLayer(hosts=[redis_url], prefix=prefix)
        await layer.status_publish(PROCESS.id, status.encode(snapshot), 10)
        await layer.close()

    asyncio.run(publish())
    layers = {
        "default": {
            "BACKEND": "wsgateway.layers.redis.RedisChannelLayer",
            "CONFIG": {"hosts": [redis_url], "prefix": prefix},
        }
    }
    with override_settings(CHANNEL_LAYERS=layers):
        out = io.StringIO()
        call_command("wsgateway_status", "--once", "--json", stdout=out)
        view = json.loads(out.getvalue())
        assert [p["pid"] for p in view["processes"]] == [4242]
        assert view["processes"][0]["endpoints"] == {"GatewayConsumer": 3, "NotifierConsumer": 1}
        assert view["maintenance"] == {"on": False} and view["online_users"] == 0
        out = io.StringIO()
        call_command("wsgateway_status", "--once", stdout=out)
        assert "processes 1, sockets 4" in out.getvalue() and "4242" in out.getvalue()


@pytest.mark.redis
@pytest.mark.django_db
def test_the_live_view_refreshes_until_ctrl_c(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from wsgateway.management.commands import wsgateway_status

    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(wsgateway_status, "wait", sleep)
    layers = {
        "default": {
            "BACKEND": "wsgateway.layers.redis.RedisChannelLayer",
            "CONFIG": {"hosts": [redis_url], "prefix": f"status-{secrets.token_hex(4)}"},
        }
    }
    with override_settings(CHANNEL_LAYERS=layers):
        out = io.StringIO()
        call_command("wsgateway_status", "--interval", "5", stdout=out)  # returns: no traceback
    assert waits == [5.0, 5.0, 5.0]
    assert out.getvalue().count("No process is publishing its status") == 3
    assert out.getvalue().endswith("\n\n"), "the prompt on a line of its own"
