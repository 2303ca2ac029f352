"""Inbound limits: the token bucket on a fake clock, then rate limits through the real consumer."""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import time
from typing import Any

import pytest
from channels.layers import get_channel_layer
from django.test import override_settings

from tests.support.communicators import connected, cookie, create_user, error_frame, frame, refused
from wsgateway import limits, metrics, refusals
from wsgateway.consumers import GatewayConsumer
from wsgateway.limits import SharedBuckets, TokenBucket, take
from wsgateway.models import ClipboardEntry

# -- the bucket, on a fake clock --------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_starts_full_and_refuses_once_empty_with_the_wait_for_one_token() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=4, burst=3, clock=clock)
    assert [take(bucket) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert take(bucket) == pytest.approx(0.25)
    clock.now += 0.1
    assert take(bucket) == pytest.approx(0.15)


def test_a_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=10, burst=5, clock=clock)
    for _ in range(5):
        take(bucket)
    clock.now += 0.2  # two tokens
    assert [take(bucket) for _ in range(2)] == [0.0, 0.0]
    assert take(bucket) > 0
    clock.now += 60  # long idle: still at most the burst
    assert bucket.refill() == 5


def test_a_clock_that_goes_back_adds_nothing() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=10, burst=1, clock=clock)
    take(bucket)
    clock.now -= 5
    assert take(bucket) > 0
    clock.now += 0.1
    assert take(bucket) == 0.0


def test_take_takes_from_every_bucket_or_from_none() -> None:
    clock = FakeClock()
    socket, user = TokenBucket(1, 5, clock), TokenBucket(2, 1, clock)
    assert take(socket, user) == 0.0
    assert take(socket, user) == pytest.approx(0.5)  # the user's is empty
    assert socket.tokens == 4  # and the socket's was not charged for the refused frame
    clock.now += 0.5
    assert take(socket, user) == 0.0
    assert socket.tokens == pytest.approx(3.5)


def test_shared_buckets_are_one_per_key_and_go_with_their_last_holder() -> None:
    shared = SharedBuckets(FakeClock())
    first = shared.get(1, 2, 3)
    assert shared.get(1, 2, 3) is first
    assert shared.get(2, 2, 3) is not first
    del first
    gc.collect()
    assert 1 not in shared.buckets


# -- through the consumer ---------------------------------------------------------------

pytestmark_db = pytest.mark.django_db(transaction=True)


def ping(frame_id: Any) -> dict[str, Any]:
    return {"channel": "gateway", "payload": {"action": "ping"}, "id": frame_id}


def pong(frame_id: Any) -> dict[str, Any]:
    return frame("gateway", {"action": "pong"}, frame_id)


def clipboard_add(frame_id: Any) -> dict[str, Any]:
    return {"channel": "clipboard", "payload": {"action": "clipboard_add", "data": "x"}, "id": frame_id}


@pytestmark_db
async def test_frames_over_the_burst_are_rate_limited_unhandled_then_the_socket_closes_with_4429(
    caplog: Any,
) -> None:
    ann = await create_user("ann")
    limited, closed = metrics.value(metrics.INBOUND_RATE_LIMITED), metrics.value(metrics.INBOUND_CLOSED)
    dropped = metrics.value(metrics.INBOUND_DROPPED_AFTER_CLOSE)
    settings = {"RATE_LIMIT": 1, "RATE_BURST": 3, "RATE_LIMIT_CLOSE_AFTER": 2}
    with override_settings(WSGATEWAY=settings), caplog.at_level(logging.INFO, "wsgateway"):
        async with connected(ann) as socket:
            for n in range(3):
                await socket.send_json(ping(n))
            assert [await socket.receive() for _ in range(3)] == [pong(0), pong(1), pong(2)]
            await socket.send_json(clipboard_add("a"))
            await socket.send_json(clipboard_add(7))
            await socket.send_json(clipboard_add("closes"))
            # Behind the close: dropped unread.
            await socket.send_json(clipboard_add("after"))
            await socket.send_json(ping("after"))
            first = await socket.receive()
            assert first == error_frame("clipboard", "rate_limited", "a")
            assert re.search(r"Retry in [01]\.\d\d s", first["error"]["message"]), first
            assert await socket.receive() == error_frame("clipboard", "rate_limited", 7)
            # The close's reason, in an error frame before it: daphne drops a close's reason.
            closing = await socket.receive()
            # With when to come back: the cool-down (RATE_LIMIT_COOLDOWN), which wsgateway.js waits for.
            assert closing == {**error_frame("gateway", "too_many_frames"), "error": closing["error"]}
            assert closing["error"] == {
                "code": "too_many_frames",
                "message": "Too many frames.",
                "retry_after": 15,
            }
            assert await socket.close_code() == 4429
            assert await socket.receive_nothing()
    assert await ClipboardEntry.objects.acount() == 0
    assert metrics.value(metrics.INBOUND_RATE_LIMITED) - limited == 3
    assert metrics.value(metrics.INBOUND_CLOSED) - closed == 1
    assert metrics.value(metrics.INBOUND_DROPPED_AFTER_CLOSE) - dropped == 2
    messages = [r.getMessage() for r in caplog.records if r.name == "wsgateway"]
    assert f"rate-limited the socket of user {ann.pk}" in messages[0], messages
    assert any("4429" in m and "over 2 frames refused" in m for m in messages)


@pytestmark_db
async def test_a_socket_that_stays_under_the_rate_is_never_limited() -> None:
    ann = await create_user("ann")
    # A bucket of one: each frame needs the one token the rate brings back between two frames.
    with override_settings(WSGATEWAY={"RATE_LIMIT": 20, "RATE_BURST": 1, "RATE_LIMIT_CLOSE_AFTER": 1}):
        async with connected(ann) as socket:
            for n in range(15):
                assert await socket.request("gateway", {"action": "ping"}, n) == pong(n)
                await asyncio.sleep(0.06)  # under 20 a second


@pytestmark_db
async def test_the_sockets_of_one_user_share_the_users_bucket_and_others_are_not_charged() -> None:
    ann, bob = await create_user("ann"), await create_user("bob")
    settings = {"USER_RATE_LIMIT": 1, "USER_RATE_BURST": 4, "RATE_BURST": 10}
    with override_settings(WSGATEWAY=settings):
        async with connected(ann) as tab, connected(ann) as other_tab, connected(bob) as bobs:
            for n in range(2):
                assert await tab.request("gateway", {"action": "ping"}, n) == pong(n)
                assert await other_tab.request("gateway", {"action": "ping"}, n) == pong(n)
            assert await tab.request("gateway", {"action": "ping"}, "t") == error_frame(
                "gateway", "rate_limited", "t"
            )
            assert await other_tab.request("clipboard", {"action": "clipboard_flush"}, "o") == error_frame(
                "clipboard", "rate_limited", "o"
            )
            for n in range(4):
                assert await bobs.request("gateway", {"action": "ping"}, n) == pong(n)


@pytestmark_db
async def test_a_refused_frame_that_is_not_an_envelope_is_rate_limited_without_channel_or_id() -> None:
    ann = await create_user("ann")
    with override_settings(WSGATEWAY={"RATE_LIMIT": 1, "RATE_BURST": 1}):
        async with connected(ann) as socket:
            await socket.assert_open()
            await socket.send_text("not json")
            assert await socket.receive() == error_frame(None, "rate_limited")
            await socket.send_json({"payload": {}, "id": "no-channel"})
            assert await socket.receive() == error_frame(None, "rate_limited", "no-channel")


@pytestmark_db
async def test_a_refused_frame_too_long_to_read_cheaply_is_answered_without_its_channel_or_id() -> None:
    ann = await create_user("ann")
    with override_settings(WSGATEWAY={"RATE_LIMIT": 1, "RATE_BURST": 1}):
        async with connected(ann) as socket:
            await socket.assert_open()
            # A valid envelope, but past what the door decodes of a refused frame (consumers.PEEK_SIZE).
            big = {
                "channel": "clipboard",
                "payload": {"action": "clipboard_add", "data": "x" * 2000},
                "id": "long",
            }
            await socket.send_json(big)
            assert await socket.receive() == error_frame(None, "rate_limited")
            await socket.send_json(clipboard_add("short"))
            assert await socket.receive() == error_frame("clipboard", "rate_limited", "short")
    assert await ClipboardEntry.objects.acount() == 0


COOLING = {"RATE_LIMIT": 1, "RATE_BURST": 1, "RATE_LIMIT_CLOSE_AFTER": 1, "RATE_LIMIT_COOLDOWN": 20}


async def closed_4429(user: Any, headers: Any = ()) -> None:
    """Open a socket of ``user`` and flood it until it is closed 4429."""
    async with connected(user, headers=headers) as socket:
        await socket.assert_open()
        for n in range(3):
            await socket.send_json(ping(n))
        outputs = [await socket.communicator.receive_output()]
        while outputs[-1]["type"] != "websocket.close":
            outputs.append(await socket.communicator.receive_output())
        assert outputs[-1]["code"] == 4429


@pytest.fixture
def no_refusal_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    """A refused handshake answered at once: the delay that slows a hostile client's reconnects
    (refusals.COOLING_DOWN_DELAY) is measured in bench/, not waited for here."""
    monkeypatch.setattr(refusals, "COOLING_DOWN_DELAY", 0.0)


async def refusal_of(user: Any, headers: Any = ()) -> Any:
    async with refused(user, headers=headers) as socket:
        error = await socket.receive()
        assert await socket.close_code() == 4429
        return error


@pytestmark_db
async def test_a_user_closed_4429_is_refused_new_sockets_with_retry_after_until_the_cooldown_ends(
    caplog: Any, monkeypatch: pytest.MonkeyPatch, no_refusal_delay: None
) -> None:
    ann, bob = await create_user("ann"), await create_user("bob")
    cooling = metrics.value(metrics.CONNECTIONS_COOLING_DOWN)
    with override_settings(WSGATEWAY=COOLING), caplog.at_level(logging.INFO, "wsgateway"):
        await closed_4429(ann)
        # This process's record refuses it at once (no log: the close said it).
        assert (await refusal_of(ann))["error"]["retry_after"] == 20
        # A process that knows nothing of it: the layer's cooldown extension, asked with the place,
        # refuses it, and the process logs the episode once and remembers it.
        limits.cooldowns.until.clear()
        first, second = await refusal_of(ann), await refusal_of(ann)
        assert first == error_frame("gateway", "too_many_frames") | {"error": first["error"]}
        assert first["error"]["retry_after"] == 20 and "20 s" in first["error"]["message"]
        assert second["error"]["retry_after"] in (19, 20)
        async with connected(bob) as socket:  # another user is not concerned
            await socket.assert_open()
        # Once it is over, the user is welcome again: move the layer's clock and this process's on.
        layer = get_channel_layer()
        later = [0.0]
        monkeypatch.setattr(layer.cooldowns, "clock", lambda: time.monotonic() + later[0])
        monkeypatch.setattr(limits.cooldowns, "clock", lambda: time.monotonic() + later[0])
        later[0] = 21
        async with connected(ann) as socket:
            await socket.assert_open()
    assert metrics.value(metrics.CONNECTIONS_COOLING_DOWN) - cooling == 3
    # Logged at the close, with the cool-down; then once by the "other" process, not for each refusal.
    messages = [r.getMessage() for r in caplog.records if r.name == "wsgateway"]
    assert any("4429" in m and "refused for 20 s" in m for m in messages), messages
    assert sum("refusing new sockets" in m for m in messages) == 1, messages
    assert not any(r.exc_info for r in caplog.records)


@pytestmark_db
async def test_a_reconnect_with_the_same_credentials_is_refused_before_authentication(
    monkeypatch: pytest.MonkeyPatch, no_refusal_delay: None
) -> None:
    ann = await create_user("ann")
    credentials = [cookie(sessionid="ann-session")]
    with override_settings(WSGATEWAY=COOLING):
        await closed_4429(ann, credentials)

        async def no_authentication(scope: Any) -> Any:
            raise AssertionError("authenticated a handshake this process knows is cooling down")

        monkeypatch.setattr("wsgateway.consumers.authenticate", no_authentication)
        error = await refusal_of(ann, credentials)
        assert error["error"]["code"] == "too_many_frames" and error["error"]["retry_after"] == 20


@pytestmark_db
async def test_a_frame_after_the_server_closed_the_socket_is_not_handled() -> None:
    ann = await create_user("ann")
    dropped = metrics.value(metrics.INBOUND_DROPPED_AFTER_CLOSE)
    async with connected(ann) as socket:
        await socket.send_text("x" * (64 * 1024 + 1))
        assert await socket.close_code() == 1009
        await socket.send_json(clipboard_add("late"))
        assert await socket.receive_nothing()
    assert await ClipboardEntry.objects.acount() == 0
    assert metrics.value(metrics.INBOUND_DROPPED_AFTER_CLOSE) - dropped == 1


class SlowConsumer(GatewayConsumer):
    """A ping that waits for the test."""

    release: asyncio.Event

    async def gateway_message(self, payload: Any) -> Any:
        if payload == {"action": "slow"}:
            await self.release.wait()
            return {"action": "done"}
        return await super().gateway_message(payload)


@pytestmark_db
async def test_frames_are_screened_while_a_handler_runs_and_at_most_the_burst_wait_for_their_turn() -> None:
    ann = await create_user("ann")
    SlowConsumer.release = asyncio.Event()
    with override_settings(WSGATEWAY={"RATE_LIMIT": 1000, "RATE_BURST": 2}):
        async with connected(ann, SlowConsumer) as socket:
            for frame_id, action in [("s", "slow"), (1, "ping"), (2, "ping"), (3, "ping")]:
                await socket.send("gateway", {"action": action}, frame_id)
                await asyncio.sleep(0.02)  # the bucket is full again: only the wait bounds them
            # The third ping found two frames waiting: refused at once, while the slow one still runs.
            assert await socket.receive() == error_frame("gateway", "rate_limited", 3)
            SlowConsumer.release.set()
            assert await socket.receive() == frame("gateway", {"action": "done"}, "s")
            assert [await socket.receive() for _ in range(2)] == [pong(1), pong(2)]
