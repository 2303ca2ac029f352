"""Requests from the server to a client (wsgateway.asking): the wire, who wins, and what is forgotten."""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc
from collections import Counter
from typing import Any, ClassVar

import pytest
from channels.layers import get_channel_layer
from django.test import override_settings

from tests.support.communicators import Socket, error_frame
from tests.support.communicators import connected as connected_as
from wsgateway import aask, ask, metrics
from wsgateway.consumers import GatewayConsumer
from wsgateway.exceptions import FrameTooLarge, RequestDropped, RequestRejected, RequestTimeout
from wsgateway.layers.base import FORGOTTEN_FOR, MAX_FORGOTTEN, LocalDelivery

pytestmark = pytest.mark.django_db(transaction=True)


class Tracked(GatewayConsumer):
    """The gateway, with its instances kept: a test reads their tables of pending requests."""

    instances: ClassVar[list[Tracked]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        Tracked.instances.append(self)


@pytest.fixture(autouse=True)
def forget_instances() -> Any:
    Tracked.instances.clear()
    yield
    Tracked.instances.clear()


def connected(user: Any) -> Any:
    return connected_as(user, Tracked)


async def asked(socket: Socket, channel: str = "editor") -> tuple[str, Any]:
    """The next frame, which must be a request on ``channel``: its id and payload."""
    frame = await socket.receive()
    assert set(frame) == {"channel", "payload", "request"} and frame["channel"] == channel, frame
    return frame["request"], frame["payload"]


def pending() -> list[int]:
    return [len(consumer.asked) for consumer in Tracked.instances]


async def test_a_request_reaches_the_socket_and_its_answer_is_the_result(ann: Any) -> None:
    async with connected(ann) as socket:
        task = asyncio.create_task(aask(ann, "editor", {"action": "which", "data": None}))
        request_id, payload = await asked(socket)
        assert payload == {"action": "which", "data": None}
        assert isinstance(request_id, str) and len(request_id) >= 16
        await socket.send_json({"channel": "editor", "reply": request_id, "payload": {"document": 7}})
        assert await task == {"document": 7}
        assert await socket.receive_nothing()  # a reply is never answered
        assert pending() == [0]


async def test_a_socket_is_asked_by_its_channel_name(ann: Any) -> None:
    async with connected(ann) as first, connected(ann) as second:
        target = Tracked.instances[1].channel_name
        task = asyncio.create_task(aask(target, "editor", "which?"))
        request_id, _ = await asked(second)
        assert await first.receive_nothing()
        await second.send_json({"channel": "editor", "reply": request_id, "payload": "two"})
        assert await task == "two"


async def test_the_clients_error_answer_raises_request_rejected(ann: Any) -> None:
    async with connected(ann) as socket:
        task = asyncio.create_task(aask(ann, "editor", {}))
        request_id, _ = await asked(socket)
        await socket.send_json(
            {"channel": "editor", "reply": request_id, "error": {"code": "refused", "message": "No."}}
        )
        with pytest.raises(RequestRejected) as caught:
            await task
        assert (caught.value.code, caught.value.message) == ("refused", "No.")


async def test_no_answer_in_time_raises_request_timeout_and_the_client_is_told_to_drop_it(ann: Any) -> None:
    async with connected(ann) as socket:
        task = asyncio.create_task(aask(ann, "editor", {}, timeout=0.2))
        request_id, _ = await asked(socket)
        with pytest.raises(RequestTimeout) as caught:
            await task
        assert caught.value.code == "timeout"
        assert await socket.receive() == {"channel": "editor", "cancel": request_id}
        assert pending() == [0]
        before = metrics.value(metrics.REQUESTS_UNMATCHED_REPLY)
        await socket.send_json({"channel": "editor", "reply": request_id, "payload": "late"})
        await socket.assert_open()  # the late reply was dropped, unanswered
        assert metrics.value(metrics.REQUESTS_UNMATCHED_REPLY) == before + 1


async def test_a_user_without_sockets_fails_at_once(ann: Any) -> None:
    with pytest.raises(RequestDropped) as caught:
        await aask(ann, "editor", {}, timeout=60)
    assert caught.value.code == "no_socket"


async def test_a_socket_that_closes_with_the_request_fails_it_at_once(ann: Any) -> None:
    async with connected(ann) as socket:
        task = asyncio.create_task(aask(ann, "editor", {}, timeout=60))
        await asked(socket)
    with pytest.raises(RequestDropped) as caught:
        await asyncio.wait_for(task, 10)  # long before its timeout of 60 s
    assert caught.value.code == "closed"


async def test_the_first_answer_wins_and_the_other_socket_is_told_to_cancel(ann: Any) -> None:
    async with connected(ann) as first, connected(ann) as second:
        task = asyncio.create_task(aask(ann, "editor", {}))
        request_id, _ = await asked(first)
        assert (await asked(second))[0] == request_id
        await second.send_json({"channel": "editor", "reply": request_id, "payload": "second"})
        assert await task == "second"
        assert await first.receive() == {"channel": "editor", "cancel": request_id}
        before = metrics.value(metrics.REQUESTS_UNMATCHED_REPLY)
        await first.send_json({"channel": "editor", "reply": request_id, "payload": "first, too late"})
        await first.assert_open()
        assert metrics.value(metrics.REQUESTS_UNMATCHED_REPLY) == before + 1
        assert pending() == [0, 0]


async def test_an_error_answer_does_not_win_over_another_sockets_answer(ann: Any) -> None:
    async with connected(ann) as first, connected(ann) as second:
        task = asyncio.create_task(aask(ann, "editor", {}))
        request_id, _ = await asked(first)
        await asked(second)
        no_handler = {"code": "unknown_action", "message": "No handler."}
        await first.send_json({"channel": "editor", "reply": request_id, "error": no_handler})
        await second.send_json({"channel": "editor", "reply": request_id, "payload": "answered"})
        assert await task == "answered"
        assert await first.receive_nothing()  # it has answered already: no cancel for it


async def test_every_socket_answering_with_an_error_raises_the_first_error(ann: Any) -> None:
    async with connected(ann) as first, connected(ann) as second:
        task = asyncio.create_task(aask(ann, "editor", {}))
        request_id, _ = await asked(first)
        await asked(second)
        await first.send_json(
            {"channel": "editor", "reply": request_id, "error": {"code": "one", "message": "1"}}
        )
        await second.send_json(
            {"channel": "editor", "reply": request_id, "error": {"code": "two", "message": "2"}}
        )
        with pytest.raises(RequestRejected) as caught:
            await task
        assert caught.value.code == "one"


@override_settings(WSGATEWAY={"MAX_PENDING_REQUESTS": 2})
async def test_a_socket_holding_max_pending_requests_refuses_the_next_at_once(ann: Any) -> None:
    async with connected(ann) as socket:
        held = [asyncio.create_task(aask(ann, "editor", n)) for n in (1, 2)]
        ids = [(await asked(socket))[0] for _ in held]
        before = metrics.value(metrics.REQUESTS_BUSY)
        with pytest.raises(RequestDropped) as caught:
            await aask(ann, "editor", 3, timeout=60)
        assert caught.value.code == "busy"
        assert metrics.value(metrics.REQUESTS_BUSY) == before + 1
        for request_id in ids:
            await socket.send_json({"channel": "editor", "reply": request_id, "payload": request_id})
        assert await asyncio.gather(*held) == ids


@pytest.mark.parametrize(
    "reply",
    [
        {"reply": 1, "payload": "x"},
        {"reply": None},
        {"reply": "r" * 129},
        {"reply": "r", "payload": "x", "error": {"code": "c", "message": "m"}},
        {"reply": "r", "error": "no"},
        {"reply": "r", "error": {"code": "c"}},
        {"reply": "r", "error": {"code": 1, "message": "m"}},
    ],
)
async def test_a_malformed_reply_is_invalid_frame(ann: Any, reply: dict[str, Any]) -> None:
    async with connected(ann) as socket:
        await socket.send_json({"channel": "editor", "id": "m", **reply})
        assert await socket.receive() == error_frame("editor", "invalid_frame", "m")


async def test_a_reply_on_another_channel_than_the_request_is_not_its_answer(ann: Any) -> None:
    async with connected(ann) as socket:
        task = asyncio.create_task(aask(ann, "editor", {}, timeout=1))
        request_id, _ = await asked(socket)
        await socket.send_json({"channel": "notifications", "reply": request_id, "payload": "wrong"})
        with pytest.raises(RequestTimeout):
            await task
        assert await socket.receive() == {"channel": "editor", "cancel": request_id}


async def test_requests_are_checked_before_anything_is_sent(ann: Any) -> None:
    for timeout in (0, -1, 301, True, "5", float("nan")):
        with pytest.raises(ValueError, match="MAX_REQUEST_TIMEOUT"):
            await aask(ann, "editor", {}, timeout=timeout)  # type: ignore[arg-type]
    for channel in ("gateway", "", None):
        with pytest.raises(ValueError, match="channel"):
            await aask(ann, channel, {})  # type: ignore[arg-type]
    with override_settings(WSGATEWAY={"MAX_SEND_SIZE": 1024}), pytest.raises(FrameTooLarge):
        await aask(ann, "editor", "x" * 1024)


async def test_ask_from_a_thread_waits_for_the_answer(ann: Any) -> None:
    async with connected(ann) as socket:
        thread = asyncio.create_task(asyncio.to_thread(ask, ann.pk, "editor", "from a worker"))
        request_id, payload = await asked(socket)
        assert payload == "from a worker"
        await socket.send_json({"channel": "editor", "reply": request_id, "payload": "ok"})
        assert await thread == "ok"


async def test_ask_on_the_event_loop_is_refused(ann: Any) -> None:
    with pytest.raises(RuntimeError, match="await aask"):
        ask(ann, "editor", {})


#: What each of a user's two sockets does with the requests of one round of the long run.
MODES = [
    ("answer", "answer"),
    ("refuse", "answer"),
    ("silent", "answer"),
    ("silent", "silent"),
    ("refuse", "refuse"),
]


#: Replies count against the inbound rate limits like any frame: the long run sends faster than a person.
UNLIMITED = {key: 10_000 for key in ("RATE_LIMIT", "RATE_BURST", "USER_RATE_LIMIT", "USER_RATE_BURST")}


@pytest.mark.slow  # about 8 s
@override_settings(WSGATEWAY=UNLIMITED)
async def test_a_long_run_leaves_no_pending_request_and_no_reply_inbox(ann: Any) -> None:
    """Thousands of requests, answered, refused, timing out, cancelled, refused busy, and sockets
    closing with some: every socket's table ends empty, and the layer keeps nothing once its sweep
    has run (as it does every ``expiry`` seconds)."""
    local = get_channel_layer().local
    rounds, per_round = 50, 40

    async def answer(socket: Socket, mode: str) -> None:
        while True:
            frame = await socket.receive(within=5)
            if "cancel" in frame:
                continue
            if mode == "answer":
                await socket.send_json({"channel": "editor", "reply": frame["request"], "payload": 1})
            elif mode == "refuse":
                error = {"code": "no", "message": "no"}
                await socket.send_json({"channel": "editor", "reply": frame["request"], "error": error})

    def kind(outcome: Any) -> Any:
        return outcome if outcome == 1 else f"{type(outcome).__name__}:{outcome.code}"

    async def one_round(index: int) -> Counter[Any]:
        async with connected(ann) as first, connected(ann) as second:
            modes = MODES[index % len(MODES)]
            readers = [
                asyncio.create_task(answer(socket, mode))
                for socket, mode in zip((first, second), modes, strict=True)
            ]
            try:
                outcomes = await asyncio.gather(
                    *(aask(ann, "editor", n, timeout=0.5) for n in range(per_round)), return_exceptions=True
                )
            finally:
                for reader in readers:
                    reader.cancel()
                await asyncio.gather(*readers, return_exceptions=True)
            if index % 5 == 0:  # and some that nobody answers before the sockets close
                held = [asyncio.create_task(aask(ann, "editor", "held", timeout=30)) for _ in range(5)]
                for socket in (first, second):
                    for _ in held:
                        await asked(socket)
            first.unread_output(), second.unread_output()
        if index % 5 == 0:
            outcomes += await asyncio.gather(*held, return_exceptions=True)
        assert pending() == [0, 0]
        Tracked.instances.clear()
        return Counter(kind(outcome) for outcome in outcomes)

    await one_round(0)  # warm up: first imports, first allocations
    gc.collect()
    tracemalloc.start()
    try:
        baseline = tracemalloc.take_snapshot()
        kinds: Counter[Any] = Counter()
        clock = time.monotonic()
        for index in range(1, rounds + 1):
            kinds += await one_round(index)
            if index % 10 == 0:
                # The run is compressed: ten rounds stand for the `expiry` seconds between two of the
                # layer's sweeps, so that what waits for a sweep does not pile up past a real one.
                clock += local.expiry + 1
                local.sweep(clock)
        # The layer's next two sweeps, `expiry` seconds apart: the first expires the late replies
        # and forgets the empty inboxes, the second the marks of the replies it expired.
        local.sweep(clock + local.expiry + 1)
        local.sweep(clock + 2 * (local.expiry + 1))
        gc.collect()
        stats = tracemalloc.take_snapshot().compare_to(baseline, "filename")
        grown = sum(stat.size_diff for stat in stats)
    finally:
        tracemalloc.stop()
    # Answered; refused by both sockets; unanswered; refused busy by both sockets (past
    # MAX_PENDING_REQUESTS, 32, of the 40 at once); and dropped by sockets that closed.
    assert set(kinds) == {
        1,
        "RequestRejected:no",
        "RequestTimeout:timeout",
        "RequestDropped:busy",
        "RequestDropped:closed",
    }, kinds
    assert sum(kinds.values()) == rounds * per_round + rounds // 5 * 5
    assert (local.inboxes, local.groups, local.memberships, local.overflowed) == ({}, {}, {}, {})
    print(f"long run: {dict(kinds)}, memory grown by {grown} bytes")
    assert grown < 256 * 1024, [str(stat) for stat in stats[:5]]


async def test_a_cancelled_receive_and_a_forgotten_reply_channel_leave_no_inbox() -> None:
    """What a request that timed out leaves in wsgateway's layers: nothing, once swept or forgotten."""
    layer = get_channel_layer()
    local = layer.local
    waiting = await layer.new_channel()
    receive = asyncio.create_task(layer.receive(waiting))
    await asyncio.sleep(0)
    receive.cancel()
    with pytest.raises(asyncio.CancelledError):
        await receive
    local.sweep(time.monotonic() + local.expiry + 1)
    assert waiting not in local.inboxes
    answered = await layer.new_channel()
    await layer.send(answered, {"type": "gateway.reply"})
    await layer.send(answered, {"type": "gateway.reply", "late": True})
    assert await layer.receive(answered) == {"type": "gateway.reply"}
    layer.forget_channel(answered)
    assert answered not in local.inboxes
    # A reply that comes after its requester gave up is dropped as it arrives, and counted: before, it
    # made a new inbox that held it until it expired (a megabyte and more over ten thousand requests).
    late = metrics.value(metrics.LAYER_LATE)
    await layer.send(answered, {"type": "gateway.reply", "later": True})
    assert answered not in local.inboxes and metrics.value(metrics.LAYER_LATE) == late + 1
    local.sweep(time.monotonic() + FORGOTTEN_FOR + 1)  # remembered a few seconds, no longer
    assert answered not in local.forgotten


def test_the_memory_of_forgotten_channels_is_bounded_in_count_and_time() -> None:
    now = [0.0]
    local = LocalDelivery(
        expiry=60, group_expiry=86400, capacity_of=lambda channel: 100, clock=lambda: now[0]
    )
    for n in range(MAX_FORGOTTEN + 5):
        local.forget(f"reply.{n}")
    assert len(local.forgotten) == MAX_FORGOTTEN
    assert "reply.4" not in local.forgotten and "reply.5" in local.forgotten  # the oldest let go
    local.put("reply.0", {"type": "gateway.reply"}, 0.0)  # let go: queued, to expire unread as before
    assert len(local.inboxes["reply.0"].messages) == 1
    now[0] = FORGOTTEN_FOR + 1
    local.forget("reply.next")  # each forget lets go of what is older than FORGOTTEN_FOR
    assert list(local.forgotten) == ["reply.next"]


def ping(frame_id: Any) -> dict[str, Any]:
    return {"channel": "gateway", "payload": {"action": "ping"}, "id": frame_id}


# A budget of 5 frames, one more a second: the burst's answers alone are twenty times that.
TIGHT = {
    "RATE_LIMIT": 1,
    "RATE_BURST": 5,
    "USER_RATE_LIMIT": 1,
    "USER_RATE_BURST": 5,
    "MAX_PENDING_REQUESTS": 100,
}


@override_settings(WSGATEWAY=TIGHT)
async def test_a_tab_answering_a_burst_of_100_requests_spends_none_of_its_rate_budget(ann: Any) -> None:
    before = metrics.value(metrics.INBOUND_RATE_LIMITED)
    async with connected(ann) as socket:
        held = [asyncio.create_task(aask(ann, "editor", n, timeout=30)) for n in range(100)]
        ids = [(await asked(socket))[0] for _ in held]
        for request_id in ids:
            await socket.send_json({"channel": "editor", "reply": request_id, "payload": request_id})
        assert await asyncio.gather(*held) == ids
        # Its own budget is whole, and no more than whole: 5 frames, and the 6th refused.
        for n in range(6):
            await socket.send_json(ping(n))
        # (A refusal is answered at the door, before the replies waiting for their turn.)
        answers = {
            answer["id"]: answer.get("error", {}).get("code")
            for answer in [await socket.receive() for _ in range(6)]
        }
        assert answers == {0: None, 1: None, 2: None, 3: None, 4: None, 5: "rate_limited"}
    assert metrics.value(metrics.INBOUND_RATE_LIMITED) - before == 1
    assert pending() == [0]


@override_settings(WSGATEWAY=TIGHT)
async def test_a_client_gets_one_frame_over_its_limits_per_request_asked_and_no_more(ann: Any) -> None:
    async with connected(ann) as socket:
        held = [asyncio.create_task(aask(ann, "editor", n, timeout=30)) for n in range(3)]
        ids = [(await asked(socket))[0] for _ in held]
        # Its 5 tokens, then the 3 frames its 3 requests let through, spent on something else.
        for n in range(9):
            await socket.send_json(ping(n))
        answers = {
            answer["id"]: answer.get("error", {}).get("code")
            for answer in [await socket.receive() for _ in range(9)]
        }
        assert answers == {**dict.fromkeys(range(8)), 8: "rate_limited"}
        # So the answers come over the limits: refused, and their requests are not answered.
        await socket.send_json({"channel": "editor", "reply": ids[0], "payload": 0, "id": "r"})
        assert await socket.receive() == error_frame("editor", "rate_limited", "r")
        for task in held:
            task.cancel()
        await asyncio.gather(*held, return_exceptions=True)


@override_settings(WSGATEWAY={"MAX_PENDING_REQUESTS": 100})
async def test_a_client_frame_waiting_has_its_turn_before_the_rest_of_a_burst_of_requests(ann: Any) -> None:
    async with connected(ann) as socket:
        consumer = Tracked.instances[0]
        # The turn held (as by a long handler) while ten requests reach the socket's queue and a
        # client frame its inbox; then let go.
        await consumer.turn.acquire()
        held = [asyncio.create_task(aask(ann, "editor", n, timeout=30)) for n in range(10)]
        await asyncio.sleep(0.1)
        await socket.send_json(ping("waiting"))
        await asyncio.sleep(0.1)
        consumer.turn.release()
        frames = [await socket.receive() for _ in range(11)]
        # One request was being dispatched already; the client's frame comes next, not after the burst.
        assert ["request" in frame for frame in frames] == [True, False] + [True] * 9
        assert frames[1] == {"channel": "gateway", "payload": {"action": "pong"}, "id": "waiting"}
        for frame in frames:
            if "request" in frame:
                await socket.send_json({"channel": "editor", "reply": frame["request"], "payload": 1})
        assert await asyncio.gather(*held) == [1] * 10
