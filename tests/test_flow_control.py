"""Flow control: a client acknowledges what it read, and a socket that does not is closed with 4408.

daphne's ``send`` never waits for the client, so what a socket does not read stays in the
server's memory. The hello tells the client its window (``OUTBOUND_WINDOW`` bytes); every quarter
of it the server puts a random mark in the stream, and the client acknowledges what it has read by
echoing the last mark it read, ``{"action": "ack", "data": "<mark>"}`` on the gateway channel; a
frame that would leave more than the window unacknowledged waits for an ack, ``ACK_TIMEOUT``
seconds at most, and then the socket is closed with 4408 instead. The client reconnects and
catches up (tests/test_catch_up.py). A client that acknowledges without reading (a count of bytes,
a guessed mark) moves nothing: it is closed as one that does not read.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

import pytest
from django.test import override_settings

from tests.support.communicators import TIMEOUT, Socket, connected, create_user, error_frame, frame
from wsgateway import frames, metrics
from wsgateway.codes import CloseCode
from wsgateway.groups import apush
from wsgateway.signals import client_disconnected

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

#: The least window the settings allow: small enough that a test fills it with a few pushes.
WINDOW = 64 * 1024
#: Each test's settings: the least window, and a frame waits a second for an ack.
FLOW = {"OUTBOUND_WINDOW": WINDOW, "ACK_TIMEOUT": 1}
#: A push payload that makes a frame of about 8 KB.
BIG = {"blob": "x" * 8000}


def connect_bytes(socket: Socket) -> int:
    """Bytes of the connect frames the socket has read, as the server wrote them (compact JSON)."""
    return sum(len(frames.data(f["channel"], f["payload"])) for f in socket.connect_frames)


def push_bytes(payload: Any) -> int:
    return len(frames.data("notifications", payload))


async def receive_text(socket: Socket) -> str | None:
    """The next frame's text but marks (kept in ``socket.marks``); ``None`` for a close, which stays
    for ``close_code()`` to read."""
    message = await socket.receive_output(TIMEOUT)
    if message["type"] == "websocket.close":
        socket.held.append(message)
        return None
    return message["text"]  # type: ignore[no-any-return]


async def ack(socket: Socket, data: Any, id: str | None = None) -> None:
    """An ack as the client writes it, whatever its ``data``."""
    await socket.send("gateway", {"action": "ack", "data": data}, id)


async def with_a_mark(socket: Socket, ann: Any, marks: int = 1) -> int:
    """Push and read until the server has put ``marks`` marks in the stream (one a quarter of the
    window); the pushes read."""
    pushes = 0
    while len(socket.marks) < marks:
        await apush([ann.pk], "notifications", BIG)
        assert await receive_text(socket) is not None
        pushes += 1
    return pushes


@override_settings(WSGATEWAY=FLOW)
async def test_the_hello_tells_the_client_its_window() -> None:
    ann = await create_user("ann")
    async with connected(ann) as socket:
        assert socket.connect_frames[0]["payload"]["window"] == WINDOW


@override_settings(WSGATEWAY=FLOW)
async def test_a_socket_that_does_not_acknowledge_is_closed_with_4408_once_its_window_stays_full() -> None:
    ann = await create_user("ann")
    closed_before = metrics.value(metrics.OUTBOUND_CLOSED)
    async with connected(ann) as socket:
        for _ in range(20):  # 160 KB of pushes: well over the window
            await apush([ann.pk], "notifications", BIG)
        received = []
        while (text := await receive_text(socket)) is not None:
            received.append(text)
        # Every push that fitted in the window came, then the reason in an error frame (daphne drops a
        # close's), then the close, and nothing after it.
        *pushes, closing = received
        assert len(pushes) == (WINDOW - connect_bytes(socket)) // push_bytes(BIG)
        assert json.loads(closing) == error_frame("gateway", "not_reading")
        # A mark after each quarter of the window, and one right before the push that waited: the
        # client could have freed the whole window. Each mark is new.
        assert len(socket.marks) == 3 and len(set(socket.marks)) == 3
        assert await socket.close_code() == CloseCode.NOT_READING
        assert socket.unread_output() == []
    assert metrics.value(metrics.OUTBOUND_CLOSED) == closed_before + 1


@override_settings(WSGATEWAY=FLOW)
async def test_client_disconnected_reports_4408_for_a_socket_closed_for_not_reading() -> None:
    """The code the socket was closed with, by the server: not the 1006 a server reports when the
    client never answers its close (daphne), nor the client's code."""
    ann = await create_user("ann")
    codes: list[Any] = []

    def on_disconnected(sender: Any, code: Any, **kwargs: Any) -> None:
        codes.append(code)

    client_disconnected.connect(on_disconnected)
    try:
        async with connected(ann) as socket:
            for _ in range(20):
                await apush([ann.pk], "notifications", BIG)
            while await receive_text(socket) is not None:
                pass
            assert await socket.close_code() == CloseCode.NOT_READING
            await socket.communicator.disconnect(code=1006)
    finally:
        client_disconnected.disconnect(on_disconnected)
    assert codes == [CloseCode.NOT_READING]


@override_settings(WSGATEWAY=FLOW)
async def test_a_socket_that_acknowledges_what_it_read_gets_many_windows_and_stays_open() -> None:
    ann = await create_user("ann")
    async with connected(ann) as socket:
        for n in range(5 * WINDOW // push_bytes(BIG)):
            await apush([ann.pk], "notifications", BIG)
            text = await receive_text(socket)
            assert text is not None, "closed, though it acknowledged"
            if n % 2:  # every other frame, with the last mark read: always well within the window
                await socket.ack()
        # A mark each quarter of the window, give or take the push that passes it.
        assert len(socket.marks) >= 5 * WINDOW // (WINDOW // 4 + push_bytes(BIG))
        await socket.assert_open()


@override_settings(WSGATEWAY=FLOW)
async def test_a_push_past_the_window_waits_for_the_ack_and_then_goes_out() -> None:
    ann = await create_user("ann")
    async with connected(ann) as socket:
        fit = (WINDOW - connect_bytes(socket)) // push_bytes(BIG)
        for _ in range(fit + 3):
            await apush([ann.pk], "notifications", BIG)
        for _ in range(fit):
            assert await receive_text(socket) is not None
        assert await socket.receive_nothing(0.3), "a push went past the window"
        # The ack comes while a push waits for room, its socket's turn held: it is read all the same.
        # Its mark came right before the wait, after every push read: it frees the whole window.
        await socket.ack()
        for _ in range(3):
            assert await receive_text(socket) is not None
        await socket.assert_open()


@override_settings(WSGATEWAY=FLOW)
@override_settings(WSGATEWAY=FLOW)
async def test_an_acknowledgement_with_an_id_is_answered_with_an_empty_reply() -> None:
    ann = await create_user("ann")
    async with connected(ann) as socket:
        await with_a_mark(socket, ann)
        await socket.ack("a1")
        assert await socket.receive() == frame("gateway", {}, "a1")


@pytest.mark.parametrize(
    ("forged", "why"),
    [
        ("bytes", "the bytes read, as the protocol had it: a client can count them without reading"),
        ("guess", "a mark never sent"),
        ("12", "not a mark"),
        (1.5, "not a mark"),
        (True, "not a mark"),
        (None, "nothing acknowledged"),
        (["mark"], "not a mark"),
    ],
)
@override_settings(WSGATEWAY=FLOW)
async def test_an_acknowledgement_of_anything_but_a_mark_sent_is_invalid_data(forged: Any, why: str) -> None:
    ann = await create_user("ann")
    async with connected(ann) as socket:
        pushes = await with_a_mark(socket, ann)
        read = connect_bytes(socket) + pushes * push_bytes(BIG)  # all it was sent, as an old client acks
        data = read if forged == "bytes" else secrets.token_urlsafe(8) if forged == "guess" else forged
        await ack(socket, data, "a1")
        assert await socket.receive() == error_frame("gateway", "invalid_data", "a1"), why
        await socket.assert_open()


@override_settings(WSGATEWAY=FLOW)
async def test_an_acknowledgement_may_not_go_back_nor_repeat() -> None:
    ann = await create_user("ann")
    async with connected(ann) as socket:
        await with_a_mark(socket, ann, marks=2)
        first = socket.marks[0]
        await socket.ack()
        await ack(socket, first, "a2")  # older than the mark acknowledged
        assert await socket.receive() == error_frame("gateway", "invalid_data", "a2")
        await ack(socket, socket.acked, "a3")  # acknowledged already
        assert await socket.receive() == error_frame("gateway", "invalid_data", "a3")


@override_settings(WSGATEWAY=FLOW)
async def test_a_mark_of_another_socket_is_invalid_data() -> None:
    ann = await create_user("ann")
    async with connected(ann) as socket, connected(ann) as other:
        pushes = await with_a_mark(socket, ann)
        for _ in range(pushes):  # the same pushes reached ann's other socket, and marks of its own
            assert await receive_text(other) is not None
        assert other.marks and not set(socket.marks) & set(other.marks)
        await ack(other, socket.marks[-1], "a1")
        assert await other.receive() == error_frame("gateway", "invalid_data", "a1")


@override_settings(WSGATEWAY=FLOW)
async def test_a_client_that_forges_acks_without_reading_is_closed_with_4408_as_a_non_reader() -> None:
    """The liar: it acknowledges, as the protocol had it, every byte it was sent, and guesses marks;
    every ack is refused, nothing moves, and after ACK_TIMEOUT the socket is closed."""
    ann = await create_user("ann")
    async with connected(ann) as socket:
        for _ in range(20):  # 160 KB of pushes: well over the window
            await apush([ann.pk], "notifications", BIG)
        sent = connect_bytes(socket)
        refused = 0
        for _ in range(8):
            sent += push_bytes(BIG)
            await ack(socket, sent, "bytes")
            await ack(socket, secrets.token_urlsafe(8), "guess")
            refused += 2
        received = []
        while (text := await receive_text(socket)) is not None:
            received.append(json.loads(text))
        errors = [f for f in received if "error" in f]
        assert errors[:-1] == [error_frame("gateway", "invalid_data", f["id"]) for f in errors[:-1]]
        assert len(errors) - 1 == refused
        assert errors[-1] == error_frame("gateway", "not_reading")
        pushes = [f for f in received if f["channel"] == "notifications"]
        assert len(pushes) == (WINDOW - connect_bytes(socket)) // push_bytes(BIG)  # not one more
        assert await socket.close_code() == CloseCode.NOT_READING


#: Rate limits out of the way, for a test that sends a thousand frames at once.
UNLIMITED = {"RATE_LIMIT": 10_000, "RATE_BURST": 10_000, "USER_RATE_LIMIT": 10_000, "USER_RATE_BURST": 10_000}


@override_settings(WSGATEWAY={**FLOW, **UNLIMITED})
async def test_replies_count_against_the_window_as_pushes_do() -> None:
    ann = await create_user("ann")
    async with connected(ann) as socket:
        sent = connect_bytes(socket)
        # A pong is 51 bytes or so: the window holds over a thousand of them unacknowledged, and
        # then the socket is closed rather than answered.
        pings = 0
        while True:
            await socket.send("gateway", {"action": "ping"}, pings)
            message = await socket.receive_output(TIMEOUT)
            if "not_reading" in message.get("text", ""):
                assert json.loads(message["text"]) == error_frame("gateway", "not_reading")
                message = await socket.receive_output(TIMEOUT)
                assert message["type"] == "websocket.close"
                assert message["code"] == CloseCode.NOT_READING
                break
            sent += len(message["text"])
            pings += 1
            assert sent <= WINDOW
        # The pong that did not fit is the one that closed it.
        assert sent + len(frames.data("gateway", {"action": "pong"}, pings)) > WINDOW


async def test_pushes_that_overflow_the_layer_while_a_socket_waits_for_its_ack_come_by_the_catch_up() -> None:
    """The window's bound and the layer's capacity together: while a push waits for room, the socket's
    queue in the layer (capacity 10) overflows; once the client acknowledges again, it is sent what
    fitted live, then a resync carrying the rest. Every notification comes once."""
    from channels.db import database_sync_to_async
    from channels.layers import channel_layers

    from wsgateway.notifications import notify

    config = {"BACKEND": "wsgateway.layers.InProcessChannelLayer", "CONFIG": {"capacity": 10}}
    # A valid pair (check E013): a page of what was missed, at most MAX_SEND_SIZE, fits in the window.
    settings = {**FLOW, "MAX_SEND_SIZE": WINDOW // 2}
    with override_settings(CHANNEL_LAYERS={"default": config}, WSGATEWAY=settings):
        ann = await create_user("ann")
        async with connected(ann) as socket:
            socket.acking = True  # each mark acknowledged as it is read, as wsgateway.js does
            # From a worker thread, all at once: 30 pushes of about 8 KB, over three windows.
            await database_sync_to_async(notify)([ann] * 30, "burst", data=BIG)
            # Reads nothing for a while: the window fills, and the layer's queue overflows behind it.
            await asyncio.sleep(0.3)
            live: list[int] = []
            missed: list[int] = []
            more = False
            while True:
                text = await receive_text(socket)
                assert text is not None, "closed, though it acknowledged"
                payload = json.loads(text)["payload"]
                if "last" in payload:
                    live.append(payload["last"]["seq"])
                elif "missed" in payload:
                    missed = [n["seq"] for n in payload["missed"]]
                    more = payload["has_more"]
                elif "clipboard" in payload:
                    break  # the resync's last connect frame
            assert missed, "no resync: the layer's queue did not overflow"
            while more:  # the page was cut to MAX_SEND_SIZE: the rest by sync, as a client does
                await socket.send("notifications", {"action": "sync", "data": {"since": missed[-1]}}, "s")
                text = await receive_text(socket)
                assert text is not None
                page = json.loads(text)["payload"]
                missed += [n["seq"] for n in page["notifications"]]
                more = page["has_more"]
            assert sorted(live + missed) == list(range(1, 31)), (live, missed)
            assert live == sorted(live)
        channel_layers.backends.clear()
