"""wsgateway's Prometheus series (wsgateway.metrics) and their scrape (wsgateway:metrics).

The part (SocketMeter) and the table of named counters without a socket; then a socket of the
in-process layer moving them; then the view's answers. Every assertion reads a sample before and
after: other tests count in the same registry, and nothing here resets it.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client, override_settings
from prometheus_client import REGISTRY

from tests.support.communicators import connected, error_frame
from wsgateway import aask, abroadcast, metrics
from wsgateway.codes import CloseCode
from wsgateway.exceptions import FrameTooLarge
from wsgateway.groups import push

TOKEN = "scrape-token-of-the-tests-thirty-two-or-more"


def sample(name: str, **labels: str) -> float:
    """A sample of the default registry (the one django-prometheus exposes); 0 for one not made yet."""
    value = REGISTRY.get_sample_value(name, labels)
    return 0.0 if value is None else value


def label_sets(name: str) -> set[tuple[tuple[str, str], ...]]:
    """The label sets ``name`` has samples for: what a hostile client must not be able to grow."""
    return {
        tuple(sorted(s.labels.items()))
        for family in REGISTRY.collect()
        for s in family.samples
        if s.name == name
    }


# -- the table of named counters ------------------------------------------------------------------


def test_every_named_counter_has_a_route() -> None:
    names = {
        value
        for attribute, value in vars(metrics).items()
        if attribute.isupper() and isinstance(value, str) and re.fullmatch(r"[a-z_]+(\.[a-z_]+)+", value)
    }
    # EMAIL_SKIPPED is a prefix: each reason has its own counter, email.skipped.<reason>.
    assert names - {metrics.EMAIL_SKIPPED} == set(metrics.ROUTES)
    for route in metrics.ROUTES.values():
        assert route is None or route[0] in metrics.COUNTERS


def test_a_named_counter_moves_its_integer_and_its_series_once() -> None:
    before = (
        metrics.value(metrics.CONNECTIONS_MAINTENANCE),
        sample("wsgateway_refusals_total", reason="maintenance"),
    )
    metrics.increment(metrics.CONNECTIONS_MAINTENANCE)
    metrics.increment(metrics.CONNECTIONS_MAINTENANCE, 2)
    assert metrics.value(metrics.CONNECTIONS_MAINTENANCE) == before[0] + 3
    assert sample("wsgateway_refusals_total", reason="maintenance") == before[1] + 3


def test_an_e_mail_skipped_is_counted_by_its_reason() -> None:
    before = sample("wsgateway_emails_skipped_total", reason="read")
    metrics.increment(f"{metrics.EMAIL_SKIPPED}.read")
    assert sample("wsgateway_emails_skipped_total", reason="read") == before + 1


def wsgateway_samples() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in REGISTRY.collect()
        for s in family.samples
        if s.name.startswith("wsgateway_") and not s.name.endswith("_created")
    }


@pytest.mark.parametrize("name", [metrics.INBOUND_CLOSED, metrics.OUTBOUND_CLOSED])
def test_a_close_counted_by_the_closes_series_adds_to_no_other(name: str) -> None:
    before = wsgateway_samples(), metrics.value(name)
    metrics.increment(name)
    assert wsgateway_samples() == before[0]
    assert metrics.value(name) == before[1] + 1


# -- the socket's part -----------------------------------------------------------------------------


def test_a_meter_counts_its_socket_open_once_and_closed_once() -> None:
    meter = metrics.SocketMeter("MeterTest", frozenset({"gateway"}))
    connects, open_, closes = (
        sample("wsgateway_connects_total", endpoint="MeterTest"),
        sample("wsgateway_sockets_open", endpoint="MeterTest"),
        sample("wsgateway_closes_total", endpoint="MeterTest", code="4429"),
    )
    meter.opened()
    meter.opened()
    assert sample("wsgateway_connects_total", endpoint="MeterTest") == connects + 1
    assert sample("wsgateway_sockets_open", endpoint="MeterTest") == open_ + 1
    meter.closed(CloseCode.TOO_MANY_REQUESTS)
    meter.closed(1000)  # the end's second step: counted already
    assert sample("wsgateway_closes_total", endpoint="MeterTest", code="4429") == closes + 1
    assert sample("wsgateway_closes_total", endpoint="MeterTest", code="1000") == 0
    assert sample("wsgateway_sockets_open", endpoint="MeterTest") == open_


def test_a_meter_never_closed_open_is_not_counted_closed() -> None:
    meter = metrics.SocketMeter("NeverOpened", frozenset({"gateway"}))
    meter.closed(1000)
    assert sample("wsgateway_closes_total", endpoint="NeverOpened", code="1000") == 0
    assert sample("wsgateway_sockets_open", endpoint="NeverOpened") == 0


def test_a_client_cannot_create_series_with_its_close_codes_or_channels() -> None:
    """A client chooses its close code (3000-4999) and a frame's channel: labels from fixed sets only."""
    codes_before = label_sets("wsgateway_closes_total")
    channels_before = label_sets("wsgateway_frames_received_total")
    for n in range(200):
        meter = metrics.SocketMeter("Hostile", frozenset({"gateway", "clipboard"}))
        meter.opened()
        meter.received(f"channel-{n}")
        meter.closed(3000 + n)
    assert label_sets("wsgateway_closes_total") - codes_before <= {
        (("code", "other"), ("endpoint", "Hostile"))
    }
    assert label_sets("wsgateway_frames_received_total") - channels_before <= {(("channel", "unknown"),)}
    assert sample("wsgateway_closes_total", endpoint="Hostile", code="other") >= 200


def test_labels_of_codes_come_from_the_tables() -> None:
    assert metrics.close_label(4409) == "4409"
    assert metrics.close_label(1006) == "1006"
    assert metrics.close_label(4999) == metrics.close_label(None) == "other"
    assert metrics.error_label("rate_limited") == "rate_limited"
    assert metrics.error_label("made-up") == "other"


def test_without_prometheus_client_wsgateway_counts_in_its_integers() -> None:
    """The extra not installed: the module imports, every call counts, nothing raises."""
    code = (
        "import sys; sys.modules['prometheus_client'] = None\n"
        "from wsgateway import metrics\n"
        "assert metrics.prometheus_client is None and metrics.SERIES == {}\n"
        "metrics.increment(metrics.CONNECTIONS_REFUSED)\n"
        "meter = metrics.SocketMeter('GatewayConsumer', frozenset({'gateway'}))\n"
        "meter.opened(); meter.sent('gateway'); meter.closed(4409); metrics.pushed(3)\n"
        "assert metrics.value(metrics.CONNECTIONS_REFUSED) == 1\n"
        "assert metrics.value(metrics.key('wsgateway_closes_total', 'GatewayConsumer', '4409')) == 1\n"
        "assert metrics.value(metrics.key('wsgateway_sockets_open', 'GatewayConsumer')) == 0\n"
        "assert metrics.value(metrics.key('wsgateway_pushes_total')) == 3\n"
        "print('ok')\n"
    )
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


# -- a socket moving them --------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_a_socket_moves_connects_frames_errors_and_closes(alice: Any) -> None:
    endpoint = "GatewayConsumer"
    before = {
        "connects": sample("wsgateway_connects_total", endpoint=endpoint),
        "open": sample("wsgateway_sockets_open", endpoint=endpoint),
        "closes": sample("wsgateway_closes_total", endpoint=endpoint, code="1000"),
        "in": sample("wsgateway_frames_received_total", channel="gateway"),
        "unknown": sample("wsgateway_frames_received_total", channel="unknown"),
        "out": sample("wsgateway_frames_sent_total", channel="gateway"),
        "errors": sample("wsgateway_errors_total", code="unknown_channel"),
    }
    async with connected(alice) as socket:
        assert sample("wsgateway_connects_total", endpoint=endpoint) == before["connects"] + 1
        assert sample("wsgateway_sockets_open", endpoint=endpoint) == before["open"] + 1
        await socket.assert_open()  # a ping, and its pong
        await socket.send("no-such-channel", {}, "x")
        assert await socket.receive() == error_frame("no-such-channel", "unknown_channel", "x")
        assert sample("wsgateway_frames_received_total", channel="gateway") == before["in"] + 1
        assert sample("wsgateway_frames_received_total", channel="unknown") == before["unknown"] + 1
        # The hello and the pong; the services' connect frames are on their own channels.
        assert sample("wsgateway_frames_sent_total", channel="gateway") == before["out"] + 2
        assert sample("wsgateway_errors_total", code="unknown_channel") == before["errors"] + 1
    assert sample("wsgateway_sockets_open", endpoint=endpoint) == before["open"]
    assert sample("wsgateway_closes_total", endpoint=endpoint, code="1000") == before["closes"] + 1


@pytest.mark.django_db(transaction=True)
async def test_a_sync_page_is_counted_and_a_refused_sync_is_not(alice: Any) -> None:
    before = sample("wsgateway_catchup_pages_total", source="sync")
    async with connected(alice) as socket:
        await socket.send("notifications", {"action": "sync", "data": {"since": 0}}, "s1")
        page = await socket.receive()
        assert page["id"] == "s1" and "notifications" in page["payload"], page
        assert sample("wsgateway_catchup_pages_total", source="sync") == before + 1
        await socket.send("notifications", {"action": "sync", "data": {"since": -1}}, "s2")
        assert await socket.receive() == error_frame("notifications", "invalid_data", "s2")
    assert sample("wsgateway_catchup_pages_total", source="sync") == before + 1


@pytest.mark.django_db(transaction=True)
def test_a_push_is_counted_once_per_user_and_its_fan_out_once() -> None:
    before = (
        sample("wsgateway_pushes_total"),
        sample("wsgateway_push_fanout_users_count"),
        sample("wsgateway_push_fanout_users_bucket", le="2.0"),
        sample("wsgateway_push_fanout_users_bucket", le="5.0"),
    )
    push([1, 2, 3], "notifications", {"hello": True})
    assert sample("wsgateway_pushes_total") == before[0] + 3
    assert sample("wsgateway_push_fanout_users_count") == before[1] + 1
    assert sample("wsgateway_push_fanout_users_bucket", le="2.0") == before[2]  # three users: not <= 2
    assert sample("wsgateway_push_fanout_users_bucket", le="5.0") == before[3] + 1


@pytest.mark.django_db(transaction=True)
async def test_a_broadcast_is_counted_once_and_one_too_large_not_at_all(alice: Any) -> None:
    before = sample("wsgateway_broadcasts_total")
    async with connected(alice) as socket:
        await abroadcast("notifications", {"news": 1})
        assert (await socket.receive())["payload"] == {"news": 1}
    assert sample("wsgateway_broadcasts_total") == before + 1
    with override_settings(WSGATEWAY={"MAX_SEND_SIZE": 1024}), pytest.raises(FrameTooLarge):
        await abroadcast("notifications", {"news": "x" * 2000})
    assert sample("wsgateway_broadcasts_total") == before + 1


@pytest.mark.django_db(transaction=True)
async def test_a_push_sent_on_a_socket_is_timed(alice: Any) -> None:
    from wsgateway.groups import apush

    before = (
        sample("wsgateway_push_latency_seconds_count"),
        sample("wsgateway_frames_sent_total", channel="notifications"),
    )
    async with connected(alice) as socket:
        # One frame in LATENCY_SAMPLE is timed, wherever the process's count of frames stands now.
        for n in range(metrics.LATENCY_SAMPLE):
            await apush([alice.pk], "notifications", {"hello": n})
            assert (await socket.receive())["payload"] == {"hello": n}
    assert sample("wsgateway_push_latency_seconds_count") == before[0] + 1
    # Well under a second on one machine; the bound is the bucket's, not a speed claim.
    assert sample("wsgateway_push_latency_seconds_bucket", le="10.0") >= before[0] + 1
    assert (
        sample("wsgateway_frames_sent_total", channel="notifications")
        >= before[1] + metrics.LATENCY_SAMPLE + 1
    )


@pytest.mark.django_db(transaction=True)
async def test_a_request_to_a_client_is_counted_sent_then_answered(alice: Any) -> None:
    before = (
        sample("wsgateway_requests_total", outcome="sent"),
        sample("wsgateway_requests_total", outcome="answered"),
    )
    async with connected(alice) as socket:
        task = asyncio.create_task(aask(alice, "editor", {"action": "which"}))
        frame = await socket.receive()
        assert sample("wsgateway_requests_total", outcome="sent") == before[0] + 1
        await socket.send_json({"channel": "editor", "reply": frame["request"], "payload": {"document": 7}})
        assert await task == {"document": 7}
    assert sample("wsgateway_requests_total", outcome="answered") == before[1] + 1


def test_a_delay_across_clocks_is_never_negative(monkeypatch: pytest.MonkeyPatch) -> None:
    """A push from a machine whose clock is ahead: counted as 0 s, not below the first bucket's sum."""
    before = sample("wsgateway_push_latency_seconds_sum"), sample("wsgateway_push_latency_seconds_count")
    for _ in range(metrics.LATENCY_SAMPLE):  # one of them is timed
        metrics.push_delivered(time.time() + 60)
    assert sample("wsgateway_push_latency_seconds_sum") == before[0]
    assert sample("wsgateway_push_latency_seconds_count") == before[1] + 1


def test_one_frame_in_the_sample_is_timed() -> None:
    before = sample("wsgateway_push_latency_seconds_count")
    for _ in range(10 * metrics.LATENCY_SAMPLE):
        metrics.push_delivered(time.time())
    assert sample("wsgateway_push_latency_seconds_count") == before + 10


# -- the scrape ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_scrape_is_refused_to_anyone_but_staff() -> None:
    assert Client().get("/wsgateway/metrics").status_code == 403
    client = Client()
    client.force_login(create_user_sync("plain"))
    assert client.get("/wsgateway/metrics").status_code == 403
    client.force_login(create_user_sync("staff", is_staff=True))
    answer = client.get("/wsgateway/metrics")
    assert answer.status_code == 200
    assert answer["Content-Type"].startswith("text/plain")
    assert b"# TYPE wsgateway_sockets_open gauge" in answer.content
    assert b"# TYPE wsgateway_refusals_total counter" in answer.content


@pytest.mark.django_db
def test_the_scrape_takes_the_bearer_token_and_nothing_like_it() -> None:
    with override_settings(WSGATEWAY={"METRICS_TOKEN": TOKEN}):
        assert Client(HTTP_AUTHORIZATION=f"Bearer {TOKEN}").get("/wsgateway/metrics").status_code == 200
        assert Client(HTTP_AUTHORIZATION=f"Bearer {TOKEN}x").get("/wsgateway/metrics").status_code == 403
        assert Client(HTTP_AUTHORIZATION=TOKEN).get("/wsgateway/metrics").status_code == 403
    # No token configured: a bearer header opens nothing.
    assert Client(HTTP_AUTHORIZATION="Bearer ").get("/wsgateway/metrics").status_code == 403
    assert Client(HTTP_AUTHORIZATION="Bearer None").get("/wsgateway/metrics").status_code == 403


@pytest.mark.django_db
def test_the_scrape_is_a_get() -> None:
    with override_settings(WSGATEWAY={"METRICS_TOKEN": TOKEN}):
        assert Client(HTTP_AUTHORIZATION=f"Bearer {TOKEN}").post("/wsgateway/metrics").status_code == 405


@pytest.mark.django_db
def test_without_prometheus_client_the_scrape_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "prometheus_client", None)
    with override_settings(WSGATEWAY={"METRICS_TOKEN": TOKEN}):
        answer = Client(HTTP_AUTHORIZATION=f"Bearer {TOKEN}").get("/wsgateway/metrics")
    assert answer.status_code == 501
    assert b"wsgateway[metrics]" in answer.content


def create_user_sync(username: str, **fields: Any) -> Any:
    return get_user_model().objects.create_user(username=username, password="x", **fields)


def test_a_dead_process_s_live_gauges_are_forgotten_and_its_counters_kept(tmp_path: Any) -> None:
    from wsgateway.metrics_view import forget_dead

    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    for name in (
        f"gauge_liveall_{ended.pid}.db",
        f"counter_{ended.pid}.db",
        f"gauge_liveall_{os.getpid()}.db",
    ):
        (tmp_path / name).write_bytes(b"")
    assert forget_dead(str(tmp_path)) == [ended.pid]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"counter_{ended.pid}.db", f"gauge_liveall_{os.getpid()}.db"]  # a counter stays in the sum
    )
    assert forget_dead(str(tmp_path)) == []
