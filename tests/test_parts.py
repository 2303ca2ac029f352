"""The parts a socket is wired from, each a plain object tested without a socket or a communicator:
the transport (wsgateway.transport), the outbound window (flow), the inbound limiter (limits), the
requests a socket holds (answering), the login's re-checks (rechecks), the layer outage as connects
see it (refusals) and the memberships (membership). The consumer's tests (test_protocol.py and the
others) show them wired together."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
import secrets
import time
from typing import Any

import pytest
from django.test import override_settings

from wsgateway import frames, limits, metrics, revocation
from wsgateway.answering import Pending, PendingRequests
from wsgateway.codes import CloseCode, ErrorCode
from wsgateway.exceptions import GatewayError
from wsgateway.flow import MARK_BYTES, MAX_MARKS, OutboundWindow
from wsgateway.layers import InProcessChannelLayer
from wsgateway.layers.base import LocalCooldowns
from wsgateway.limits import InboundLimiter, Refusal, TokenBucket
from wsgateway.membership import Membership
from wsgateway.rechecks import COALESCE_SECONDS, RECHECK_MARGIN, LoginRecheck, schedule_of
from wsgateway.refusals import LayerOutage
from wsgateway.transport import SocketState, Transport, send_close


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Server:
    """An ASGI server's ``send``: records what it is sent; may refuse codes, or say the socket is gone."""

    def __init__(self, refuse_codes: tuple[int, ...] = (), gone: bool = False) -> None:
        self.sent: list[dict[str, Any]] = []
        self.refuse_codes = refuse_codes
        self.gone = gone

    async def __call__(self, message: dict[str, Any]) -> None:
        if self.gone:
            raise ConnectionResetError("the client left")
        if message.get("code") in self.refuse_codes:
            raise ValueError(f"refused close code {message['code']}")
        self.sent.append(message)


# -- the transport ------------------------------------------------------------------------


async def test_the_transport_opens_on_accept_and_sends_nothing_after_its_close() -> None:
    server = Server()
    transport = Transport(server)
    assert transport.state is SocketState.CONNECTING
    await transport.send({"type": "websocket.accept"})
    assert transport.state is SocketState.OPEN
    await transport.send_text("one")
    await send_close(transport.send, CloseCode.NOT_READING, "bye")
    await transport.send_text("after")
    assert [m["type"] for m in server.sent] == ["websocket.accept", "websocket.send", "websocket.close"]
    assert transport.closed and transport.close_code == 4408


async def test_the_close_code_is_this_sides_close_whoever_disconnects_after() -> None:
    transport = Transport(Server())
    await transport.send({"type": "websocket.accept"})
    await send_close(transport.send, CloseCode.TOO_MANY_REQUESTS, None)
    transport.end(1006)  # daphne's code for a close the client never answered
    assert transport.close_code == 4429


async def test_without_a_close_from_this_side_the_close_code_is_the_clients() -> None:
    transport = Transport(Server())
    await transport.send({"type": "websocket.accept"})
    transport.end(1001)
    transport.end(None)  # the application's end, after the disconnect
    assert transport.close_code == 1001


async def test_a_code_the_server_refuses_is_sent_as_its_private_code_with_the_reason_cut() -> None:
    server = Server(refuse_codes=(1009,))
    transport = Transport(server)
    await send_close(transport.send, CloseCode.MESSAGE_TOO_BIG, "é" * 100)
    (close,) = server.sent
    assert close["code"] == 4413 and type(close["code"]) is int
    assert len(close["reason"].encode()) <= 123 and close["reason"] == "é" * 61


async def test_a_refused_code_with_no_private_code_raises() -> None:
    transport = Transport(Server(refuse_codes=(4429,)))
    with pytest.raises(ValueError, match="4429"):
        await send_close(transport.send, CloseCode.TOO_MANY_REQUESTS, None)


async def test_a_send_the_server_refuses_as_gone_closes_the_transport_without_raising() -> None:
    server = Server()
    transport = Transport(server)
    await transport.send({"type": "websocket.accept"})
    server.gone = True
    await transport.send_text("lost")
    assert transport.closed and transport.close_code is None


async def test_a_frame_too_large_for_the_socket_is_replaced_by_a_too_large_error() -> None:
    server = Server()
    transport = Transport(server)
    transport.send_limit = 200
    await transport.send_frame("clipboard", {"pad": "x" * 500}, "q1")
    error = frames.parse_json(server.sent[0]["text"])
    assert error["channel"] == "clipboard" and error["id"] == "q1"
    assert error["error"]["code"] == ErrorCode.TOO_LARGE


# -- the outbound window ------------------------------------------------------------------


def test_a_mark_is_due_each_quarter_of_the_window_and_covers_what_was_sent() -> None:
    window = OutboundWindow(100)
    assert window.next_mark == 25
    window.count(30)
    mark = window.place_mark()
    assert mark is not None and len(mark) == 11  # 64 random bits, in base64url
    assert window.marks == [(mark, 30)] and window.next_mark == 55
    assert window.place_mark() is None  # nothing sent since: the mark there covers it
    window.count(1)
    assert window.place_mark() not in (None, mark)


def test_the_window_counts_what_was_sent_less_what_its_marks_acknowledge() -> None:
    window = OutboundWindow(100)
    assert window.fits(100) and not window.fits(101)
    window.count(50)
    mark = window.place_mark()
    window.count(30)
    assert not window.fits(21)
    window.acknowledge(mark)
    assert window.acked == 50 and window.unacknowledged == 30 and window.fits(70)


def test_an_acknowledgement_drops_its_mark_and_the_older_ones() -> None:
    window = OutboundWindow(100)
    marks = []
    for _ in range(3):
        window.count(20)
        marks.append(window.place_mark())
    window.acknowledge(marks[1])
    assert window.acked == 40 and window.marks == [(marks[2], 60)]
    for stale in marks[:2]:  # older than the last acknowledged, or that one again
        with pytest.raises(GatewayError):
            window.acknowledge(stale)
    assert window.acked == 40


@pytest.mark.parametrize(
    "forged", ["bytes sent", "bytes acknowledged", "another window's", "guessed", "", None, True, 1.5, ["m"]]
)
def test_an_acknowledgement_of_anything_but_an_outstanding_mark_is_invalid_data_and_moves_nothing(
    forged: Any,
) -> None:
    window, other = OutboundWindow(100), OutboundWindow(100)
    window.count(30)
    other.count(30)
    window.place_mark()
    stand_ins = {
        "bytes sent": 30,  # what a client that counts bytes says, without reading
        "bytes acknowledged": 0,
        "another window's": other.place_mark(),
        "guessed": secrets.token_urlsafe(MARK_BYTES),
    }
    data = stand_ins[forged] if isinstance(forged, str) and forged in stand_ins else forged
    with pytest.raises(GatewayError) as raised:
        window.acknowledge(data)
    assert raised.value.code == ErrorCode.INVALID_DATA
    assert window.acked == 0 and len(window.marks) == 1


def test_the_marks_outstanding_are_bounded_whatever_the_client_does() -> None:
    """A client that never acknowledges: past MAX_MARKS no mark is placed (nor kept); one
    acknowledgement frees the slots again."""
    window = OutboundWindow(1000)
    for _ in range(100):
        window.count(1)
        window.place_mark()
    assert len(window.marks) == MAX_MARKS
    window.count(1)
    assert window.place_mark() is None
    window.acknowledge(window.marks[-1][0])
    assert window.marks == [] and window.acked == MAX_MARKS
    assert window.place_mark() is not None


async def no_mark() -> None:
    pass


async def test_a_send_waiting_for_room_goes_on_at_the_acknowledgement() -> None:
    window = OutboundWindow(100)
    window.count(100)
    mark = window.place_mark()
    waiting = asyncio.ensure_future(window.room_for(10, lambda: False, no_mark))
    await asyncio.sleep(0)
    assert not waiting.done()
    window.acknowledge(mark)
    assert await waiting is True


async def test_a_send_waiting_for_room_puts_a_mark_before_each_wait() -> None:
    """So that a client that read everything can free the whole window, whatever the frame's size."""
    window = OutboundWindow(100)
    placed: list[str | None] = []

    async def mark() -> None:
        placed.append(window.place_mark())

    window.count(90)
    waiting = asyncio.ensure_future(window.room_for(20, lambda: False, mark))
    await asyncio.sleep(0)
    assert not waiting.done() and window.marks == [(placed[0], 90)]
    window.acknowledge(placed[0])
    assert await waiting is True
    assert len(placed) == 1  # none more: it fitted at the acknowledgement


async def test_a_send_waiting_for_room_gives_up_when_the_socket_ends() -> None:
    window = OutboundWindow(100)
    window.count(100)
    closed = False
    waiting = asyncio.ensure_future(window.room_for(10, lambda: closed, no_mark))
    await asyncio.sleep(0)
    closed = True
    window.wake()
    assert await waiting is False


async def test_a_send_waiting_past_the_ack_timeout_raises() -> None:
    window = OutboundWindow(100)
    window.count(100)
    with override_settings(WSGATEWAY={"ACK_TIMEOUT": 0.05}), pytest.raises(TimeoutError):
        await window.room_for(10, lambda: False, no_mark)


async def test_a_transport_that_waits_past_the_ack_timeout_closes_with_4408() -> None:
    server = Server()
    transport = Transport(server)
    await transport.send({"type": "websocket.accept"})
    transport.open(OutboundWindow(10, owner="ann"), 1000)
    await transport.send_text("x" * 10)
    before = metrics.value(metrics.OUTBOUND_CLOSED)
    with override_settings(WSGATEWAY={"ACK_TIMEOUT": 0.05}):
        await transport.send_text("more")
    assert [m["type"] for m in server.sent][-1] == "websocket.close"
    assert transport.close_code == 4408
    assert metrics.value(metrics.OUTBOUND_CLOSED) == before + 1


async def test_what_the_door_sends_is_counted_but_never_waits() -> None:
    server = Server()
    transport = Transport(server)
    await transport.send({"type": "websocket.accept"})
    transport.open(OutboundWindow(10), 1000)
    await transport.send_text("x" * 10)
    await transport.send_text("error", wait=False)
    assert transport.window is not None and transport.window.sent == 15
    assert not transport.closed


async def test_the_transport_puts_a_mark_after_each_quarter_of_the_window_not_counted() -> None:
    server = Server()
    transport = Transport(server)
    await transport.send({"type": "websocket.accept"})
    window = OutboundWindow(100)
    transport.open(window, 1000)
    for text in ("a" * 20, "b" * 10, "c" * 10, "d" * 20):
        await transport.send_text(text)
    first, second = (mark for mark, _ in window.marks)
    assert [m["text"] for m in server.sent[1:]] == [
        "a" * 20,
        "b" * 10,
        frames.mark(first),  # at 30: a quarter (25) passed
        "c" * 10,
        "d" * 20,
        frames.mark(second),  # at 60: a quarter past the last mark (55)
    ]
    assert window.marks == [(first, 30), (second, 60)] and window.sent == 60


async def test_a_send_that_waits_for_room_puts_a_mark_first_whose_ack_frees_the_whole_window() -> None:
    """A frame up to the window's size never waits for ever on a client that reads: the mark before
    the wait covers every byte sent, so its acknowledgement frees them all."""
    server = Server()
    transport = Transport(server)
    await transport.send({"type": "websocket.accept"})
    window = OutboundWindow(100)
    transport.open(window, 1000)
    await transport.send_text("a" * 30)  # a mark at 30
    await transport.send_text("b" * 20)
    with override_settings(WSGATEWAY={"ACK_TIMEOUT": 60}):
        waiting = asyncio.ensure_future(transport.send_text("c" * 100))
        await asyncio.sleep(0)
        assert not waiting.done()
        before_the_wait = window.marks[-1]
        assert before_the_wait[1] == 50 and server.sent[-1]["text"] == frames.mark(before_the_wait[0])
        window.acknowledge(before_the_wait[0])
        async with asyncio.timeout(1):
            await waiting
    assert server.sent[-2]["text"] == "c" * 100 and window.acked == 50 and window.sent == 150
    assert not transport.closed


async def test_an_abort_wakes_a_send_waiting_for_room_and_closes_past_the_window() -> None:
    """A revocation: it needs no turn, waits for no room, and is the last thing sent."""
    server = Server()
    transport = Transport(server)
    await transport.send({"type": "websocket.accept"})
    transport.open(OutboundWindow(10), 1000)
    await transport.send_text("x" * 10)
    with override_settings(WSGATEWAY={"ACK_TIMEOUT": 60}):
        waiting = asyncio.ensure_future(transport.send_text("a push that waits for room"))
        await asyncio.sleep(0)
        assert not waiting.done()
        async with asyncio.timeout(1):
            await transport.abort('{"error": "revoked"}', CloseCode.UNAUTHORIZED, None)
            await waiting  # gave up: the socket is closing
    await transport.send_text("sent after")
    assert transport.window is not None and transport.window.sent == 10  # neither counted
    [(mark, _)] = transport.window.marks  # after the frame; none more before the wait: nothing new
    assert [m.get("text") or m["type"] for m in server.sent] == [
        "websocket.accept",
        "x" * 10,
        frames.mark(mark),
        '{"error": "revoked"}',
        "websocket.close",
    ]
    assert transport.close_code == 4401 and transport.state is SocketState.CLOSED


async def test_frames_sent_while_an_abort_is_under_way_are_dropped_and_a_second_abort_sends_nothing() -> None:
    release = asyncio.Event()
    sent: list[dict[str, Any]] = []

    async def slow_server(message: dict[str, Any]) -> None:
        if message.get("text") == "error":
            await release.wait()  # the server's send yields: others run meanwhile
        sent.append(message)

    transport = Transport(slow_server)
    await transport.send({"type": "websocket.accept"})
    aborting = asyncio.ensure_future(transport.abort("error", CloseCode.UNAUTHORIZED, "reason"))
    await asyncio.sleep(0)
    assert transport.state is SocketState.CLOSING and transport.closed
    await transport.send_text("a push from a handler")
    await transport.abort("another revocation", 4000, None)
    release.set()
    await aborting
    assert [m.get("text") or m["code"] for m in sent[1:]] == ["error", 4401]
    assert sent[-1]["reason"] == "reason"


async def test_an_abort_of_a_socket_not_open_sends_nothing() -> None:
    server = Server()
    transport = Transport(server)
    await transport.abort("error", CloseCode.UNAUTHORIZED, None)  # not accepted yet
    await transport.send({"type": "websocket.accept"})
    transport.end(1001)
    await transport.abort("error", CloseCode.UNAUTHORIZED, None)  # the client has gone
    assert [m["type"] for m in server.sent] == ["websocket.accept"]


# -- the inbound limiter ------------------------------------------------------------------


def limiter(clock: FakeClock, *, rate: float = 10, burst: float = 3, close_after: int = 2) -> InboundLimiter:
    return InboundLimiter(TokenBucket(rate, burst, clock), TokenBucket(100, 100, clock), close_after, clock)


def test_the_limiter_admits_a_burst_then_gives_the_wait() -> None:
    clock = FakeClock()
    part = limiter(clock)
    assert [part.admit(0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert part.admit(0) == pytest.approx(0.1)


def test_a_full_inbox_refuses_a_frame_but_not_an_acknowledgement() -> None:
    part = limiter(FakeClock())
    assert part.admit(3) == pytest.approx(0.1)
    assert part.admit(3, ack=True) == 0.0


def test_with_no_token_a_frame_is_refused_without_asking_whether_it_is_an_acknowledgement() -> None:
    part = limiter(FakeClock())
    asked: list[int] = []

    def is_ack() -> bool:  # what the consumer answers by decoding the frame
        asked.append(1)
        return True

    assert [part.admit(0, ack=is_ack) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert part.admit(3, ack=is_ack) > 0  # the buckets are empty: an ack is refused too, unread
    assert part.admit(0, ack=is_ack) > 0
    assert asked == []


def test_only_a_full_inbox_with_tokens_left_asks_whether_the_frame_is_an_acknowledgement() -> None:
    part = limiter(FakeClock())
    asked: list[bool] = []

    def answer(value: bool) -> Any:
        def is_ack() -> bool:
            asked.append(value)
            return value

        return is_ack

    assert part.admit(3, ack=answer(False)) == pytest.approx(0.1)  # not an ack: refused, no token taken
    assert part.admit(3, ack=answer(True)) == 0.0
    assert part.admit(0, ack=answer(True)) == 0.0  # room in the inbox: not asked
    assert asked == [False, True]
    assert part.socket.tokens == pytest.approx(1.0)


def test_cooldowns_end_with_their_time_and_say_when_an_episode_is_new() -> None:
    clock = FakeClock()
    cooldowns = LocalCooldowns(clock)
    assert cooldowns.left("ann") == 0.0
    assert cooldowns.start("ann", 15) is True
    assert cooldowns.start("ann", 15) is False  # the same episode, restarted
    clock.now += 10
    assert cooldowns.left("ann") == pytest.approx(5)
    clock.now += 5
    assert cooldowns.left("ann") == 0.0 and len(cooldowns) == 0  # ended, and forgotten
    assert cooldowns.start("ann", 15) is True


def test_cooldowns_are_bounded_the_first_to_end_makes_room() -> None:
    clock = FakeClock()
    cooldowns = LocalCooldowns(clock, most=3)
    for n, seconds in enumerate([10, 5, 20]):
        cooldowns.start(n, seconds)
    cooldowns.start("new", 30)
    assert len(cooldowns) == 3 and cooldowns.left(1) == 0.0 and cooldowns.left("new") == 30
    clock.now += 25  # all but one ended: pruned as the next comes, nothing live is dropped
    cooldowns.start("next", 30)
    assert sorted(map(str, cooldowns.until)) == ["new", "next"]


def test_the_handshakes_credentials_are_kept_as_a_digest_and_only_when_there_are_some() -> None:
    bearer = {"headers": [(b"authorization", b"Bearer secret-token"), (b"origin", b"http://x")]}
    assert limits.credentials_key({"headers": [(b"origin", b"http://x")]}) is None
    key = limits.credentials_key(bearer)
    assert key is not None and b"secret-token" not in key[1]
    assert limits.credentials_key({"headers": [(b"Authorization", b"Bearer secret-token")]}) == key
    assert limits.credentials_key({"headers": [(b"authorization", b"Bearer other")]}) != key
    assert limits.credentials_key({"headers": [(b"cookie", b"sessionid=abc")]}) is not None


def test_this_processes_record_of_a_cooldown_refuses_by_user_and_by_credentials() -> None:
    clock = FakeClock()
    scope = {"headers": [(b"cookie", b"sessionid=abc")]}
    cooldowns = LocalCooldowns(clock)
    original, limits.cooldowns = limits.cooldowns, cooldowns
    try:
        assert limits.cooldown_before_auth(scope) == 0.0
        assert limits.cooling_down(scope, 7, 15) is True
        assert limits.cooling_down(scope, 7, 15) is False
        assert limits.cooldown_before_auth(scope) == 15
        assert limits.cooldown_known(7) == 15 and limits.cooldown_known(8) == 0.0
        assert limits.retry_after(0.2) == 1 and limits.retry_after(14.1) == 15
    finally:
        limits.cooldowns = original


def test_the_users_bucket_limits_every_socket_of_the_user() -> None:
    clock = FakeClock()
    shared = TokenBucket(10, 2, clock)
    first = InboundLimiter(TokenBucket(10, 10, clock), shared, 5, clock)
    second = InboundLimiter(TokenBucket(10, 10, clock), shared, 5, clock)
    assert (first.admit(0), second.admit(0)) == (0.0, 0.0)
    assert second.admit(0) > 0 and first.admit(0) > 0


def test_an_answer_owed_lets_one_frame_over_the_limits_and_an_answer_paid_gets_its_tokens_back() -> None:
    part = limiter(FakeClock(), burst=2)
    part.expect_answer(most=2)
    part.expect_answer(most=2)
    part.expect_answer(most=2)  # at most ``most`` owed
    assert part.answers == 2
    # Paid from the buckets while they hold tokens; given back when it answers a request.
    assert part.admit(0) == 0.0 and not part.free
    part.answered()
    assert (part.socket.tokens, part.answers) == (2, 1)
    assert [part.admit(0), part.admit(0)] == [0.0, 0.0]
    # The buckets are empty: the one answer still owed lets one frame through, whatever it is.
    assert part.admit(0) == 0.0 and part.free and part.answers == 0
    part.answered()  # took no token: nothing to give back
    assert part.socket.tokens == 0
    assert part.admit(0) > 0  # and no more than was asked
    part.answered()  # nothing owed: nothing given back
    assert part.socket.tokens == 0


def test_a_full_inbox_lets_an_answer_owed_through() -> None:
    part = limiter(FakeClock())
    part.expect_answer(most=5)
    assert part.admit(3) == 0.0 and part.free
    assert part.admit(3) > 0


def test_refusals_are_answered_then_close_and_a_quiet_minute_forgives_them() -> None:
    clock = FakeClock()
    part = limiter(clock, close_after=2)
    assert [part.refuse("ann") for _ in range(3)] == [Refusal.ANSWER, Refusal.ANSWER, Refusal.CLOSE]
    clock.now += 60
    assert part.refuse("ann") is Refusal.ANSWER


# -- the requests a socket holds ----------------------------------------------------------


class Outlet:
    """A socket as the requests see it: its frames and what its requesters are told."""

    channel_name = "socket-1"

    def __init__(self) -> None:
        self.is_open = True
        self.frames: list[str] = []
        self.told: list[tuple[str, dict[str, Any]]] = []
        outlet = self

        class Layer:
            async def send(self, channel: str, message: dict[str, Any]) -> None:
                outlet.told.append((channel, message))

        self.channel_layer = Layer()

    async def send_text(self, text: str) -> None:
        self.frames.append(text)


def request_event(request_id: str, *, deadline: float = math.inf, text: str = "{}") -> dict[str, Any]:
    return {
        "request": request_id,
        "reply_to": f"reply-{request_id}",
        "channel": "tabs",
        "text": text,
        "deadline": deadline,
    }


async def test_a_request_is_passed_on_and_its_answer_goes_to_its_requester() -> None:
    outlet, pending = Outlet(), PendingRequests()
    await pending.on_request(outlet, request_event("r1"), 1000)
    assert outlet.frames == ["{}"] and len(pending) == 1
    await pending.on_reply(outlet, frames.Frame(channel="tabs", payload={"page": 1}, reply="r1"))
    assert outlet.told == [
        ("reply-r1", {"type": "gateway.reply", "request": "r1", "socket": "socket-1", "payload": {"page": 1}})
    ]
    assert len(pending) == 0


async def test_a_reply_on_another_channel_or_to_an_unknown_request_is_dropped() -> None:
    outlet, pending = Outlet(), PendingRequests()
    await pending.on_request(outlet, request_event("r1"), 1000)
    before = metrics.value(metrics.REQUESTS_UNMATCHED_REPLY)
    await pending.on_reply(outlet, frames.Frame(channel="other", payload=1, reply="r1"))
    await pending.on_reply(outlet, frames.Frame(channel="tabs", payload=1, reply="nope"))
    assert outlet.told == [] and len(pending) == 1
    assert metrics.value(metrics.REQUESTS_UNMATCHED_REPLY) == before + 2


async def test_past_the_limit_a_request_is_refused_busy_and_too_large_ones_too_large() -> None:
    outlet, pending = Outlet(), PendingRequests()
    with override_settings(WSGATEWAY={"MAX_PENDING_REQUESTS": 1}):
        await pending.on_request(outlet, request_event("r1"), 1000)
        await pending.on_request(outlet, request_event("r2"), 1000)
        await pending.on_request(outlet, request_event("r3", text="x" * 2000), 1000)
    assert [message["dropped"] for _, message in outlet.told] == ["busy", "too_large"]
    assert len(pending) == 1 and outlet.frames == ["{}"]


async def test_a_closed_socket_tells_the_requester_at_once() -> None:
    outlet, pending = Outlet(), PendingRequests()
    outlet.is_open = False
    await pending.on_request(outlet, request_event("r1"), 1000)
    assert [message["dropped"] for _, message in outlet.told] == ["closed"]
    assert len(pending) == 0


async def test_expired_requests_are_cancelled_to_the_client_and_the_rest_dropped_on_close() -> None:
    outlet, pending = Outlet(), PendingRequests()
    now = asyncio.get_running_loop().time()  # any clock: deadlines are compared with what is given
    pending.add("old", Pending("tabs", "reply-old", now - 1), 10)
    pending.add("new", Pending("tabs", "reply-new", math.inf), 10)
    await pending.expire_due(outlet, now)
    assert [frames.parse_json(text) for text in outlet.frames] == [{"channel": "tabs", "cancel": "old"}]
    await pending.drop_all(outlet)
    assert [(to, message["dropped"]) for to, message in outlet.told] == [("reply-new", "closed")]
    assert len(pending) == 0 and pending.next_deadline == math.inf


async def test_a_cancel_drops_the_request_and_tells_the_client_once() -> None:
    outlet, pending = Outlet(), PendingRequests()
    await pending.on_request(outlet, request_event("r1"), 1000)
    await pending.on_cancel(outlet, "r1")
    await pending.on_cancel(outlet, "r1")
    assert [frames.parse_json(text) for text in outlet.frames[1:]] == [{"channel": "tabs", "cancel": "r1"}]


# -- the login's re-checks ----------------------------------------------------------------


def credentials(*, expires_at: float | None = None) -> revocation.Credentials:
    return revocation.Credentials(1, None, None, None, expires_at)


def test_the_next_check_is_the_expiry_when_it_comes_before_the_interval() -> None:
    clock = FakeClock(1000.0)

    async def ended(verdict: revocation.Verdict) -> None:
        raise AssertionError

    with override_settings(WSGATEWAY={"REVALIDATE_INTERVAL": 300}):
        assert LoginRecheck(credentials(), ended, clock=clock).delay() == 300
        soon = LoginRecheck(credentials(expires_at=1010.0), ended, clock=clock)
        assert soon.delay() == pytest.approx(10 + RECHECK_MARGIN)
        past = LoginRecheck(credentials(expires_at=900.0), ended, clock=clock)
        assert past.delay() == RECHECK_MARGIN


@pytest.mark.django_db  # the check runs in Channels' database thread, which closes old connections
async def test_a_login_that_ended_is_reported_once_and_nothing_is_scheduled_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    verdicts: list[revocation.Verdict] = []

    async def ended(verdict: revocation.Verdict) -> None:
        verdicts.append(verdict)

    monkeypatch.setattr(revocation, "check", lambda credentials: revocation.TOKEN_EXPIRED)
    part = LoginRecheck(credentials(), ended)
    part.schedule(0.01)
    await asyncio.sleep(0.2)
    assert verdicts == [revocation.TOKEN_EXPIRED] and part.due is None and part.task is None


async def test_a_stopped_recheck_runs_no_check(monkeypatch: pytest.MonkeyPatch) -> None:
    checks: list[Any] = []
    monkeypatch.setattr(revocation, "check", checks.append)

    async def ended(verdict: revocation.Verdict) -> None:
        raise AssertionError

    part = LoginRecheck(credentials(), ended)
    part.schedule(0.01)
    part.stop()
    part.schedule()
    await asyncio.sleep(0.1)
    assert checks == [] and part.due is None


@pytest.mark.django_db
async def test_now_checks_at_once_and_then_on_the_usual_schedule(monkeypatch: pytest.MonkeyPatch) -> None:
    checks: list[Any] = []
    monkeypatch.setattr(revocation, "check", checks.append)

    async def ended(verdict: revocation.Verdict) -> None:
        raise AssertionError

    with override_settings(WSGATEWAY={"REVALIDATE_INTERVAL": 300}):
        part = LoginRecheck(credentials(), ended)
        part.schedule()
        part.now()
        await asyncio.sleep(0.2)
        assert len(checks) == 1 and part.task is None
        assert part.due is not None and part.due - asyncio.get_running_loop().time() > 299
        part.stop()


@pytest.mark.django_db
async def test_now_during_a_check_runs_one_more_after_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # The running check may have read the row before the change the caller committed.
    checks: list[Any] = []

    def slow_check(credentials: Any) -> None:
        checks.append(credentials)
        time.sleep(0.1)

    monkeypatch.setattr(revocation, "check", slow_check)

    async def ended(verdict: revocation.Verdict) -> None:
        raise AssertionError

    part = LoginRecheck(credentials(), ended)
    part.now()
    await asyncio.sleep(0.02)
    part.now()
    part.now()  # one more, not two
    await asyncio.sleep(0.5)
    assert len(checks) == 2
    part.stop()


async def test_now_after_stop_checks_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    checks: list[Any] = []
    monkeypatch.setattr(revocation, "check", checks.append)

    async def ended(verdict: revocation.Verdict) -> None:
        raise AssertionError

    part = LoginRecheck(credentials(), ended)
    part.stop()
    part.now()
    await asyncio.sleep(0.05)
    assert checks == [] and part.task is None


class Timed(LoginRecheck):
    """A re-check that notes when the schedule starts it, and reads nothing."""

    __slots__ = ("started",)

    def __init__(self) -> None:
        super().__init__(credentials(), _never_ended)
        self.started: list[float] = []

    def start(self) -> None:
        self.started.append(asyncio.get_running_loop().time())


async def _never_ended(verdict: revocation.Verdict) -> None:
    raise AssertionError


async def test_the_schedule_starts_each_check_once_never_early_on_one_timer() -> None:
    loop = asyncio.get_running_loop()
    schedule = schedule_of(loop)
    delays = [0.02, 0.03, 0.031, 0.3, 1.2, 0.0]
    parts = [Timed() for _ in delays]
    for part, delay in zip(parts, delays, strict=True):
        part.schedule(delay)
    asked = {id(part): part.due for part in parts}
    # One timer, at the earliest, for all of them; the parts keep no timer of their own.
    assert schedule.timer is not None and schedule.timer_at == min(asked.values()) and len(schedule) == 6
    await asyncio.sleep(1.5)
    for part in parts:
        (started,) = part.started  # once
        due = asked[id(part)]
        assert due is not None and started >= due  # never early: an expiry would still look valid
    # Started together when due together: never more than the coalescing apart from the due time,
    # give or take a busy loop (the margin is for the machine, not the schedule).
    assert max(part.started[0] - (asked[id(part)] or 0) for part in parts) < COALESCE_SECONDS + 0.2
    assert len(schedule) == 0 and schedule.buckets == {} and schedule.seconds == []
    assert schedule.timer is None


async def test_a_check_taken_out_of_the_schedule_does_not_start() -> None:
    schedule = schedule_of(asyncio.get_running_loop())
    kept, stopped, checked_at_once = Timed(), Timed(), Timed()
    for part in (kept, stopped, checked_at_once):
        part.schedule(0.05)
    stopped.stop()
    checked_at_once.now()  # started at once, not again at its time
    assert stopped.due is None and checked_at_once.due is None and len(schedule) == 1
    await asyncio.sleep(0.3)
    assert len(kept.started) == 1 and stopped.started == [] and len(checked_at_once.started) == 1


async def test_a_check_that_fails_to_start_costs_the_others_nothing(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(Timed):
        __slots__ = ()

        def start(self) -> None:
            raise RuntimeError("a bug")

    before, broken, after, later = Timed(), Broken(), Timed(), Timed()
    for part in (before, broken, after):
        part.schedule(0.02)
    later.schedule(0.2)
    with caplog.at_level(logging.ERROR, logger="wsgateway"):
        await asyncio.sleep(0.5)
    assert len(before.started) == len(after.started) == len(later.started) == 1
    assert [record.getMessage() for record in caplog.records] == [
        "wsgateway: a socket's login re-check could not start"
    ]


async def test_a_check_rescheduled_runs_at_its_new_time_only() -> None:
    part = Timed()
    part.schedule(0.05)
    part.schedule(0.2)
    await asyncio.sleep(0.12)
    assert part.started == []
    await asyncio.sleep(0.3)
    assert len(part.started) == 1


async def test_a_thousand_checks_due_in_a_second_share_a_set_or_two() -> None:
    schedule = schedule_of(asyncio.get_running_loop())
    parts = [Timed() for _ in range(1000)]
    for n, part in enumerate(parts):
        part.schedule(300 + n / 1000)
    assert len(schedule) == 1000 and len(schedule.buckets) <= 2
    for part in parts:
        part.stop()
    assert len(schedule) == 0


@pytest.mark.django_db  # the check runs in Channels' database thread, which closes old connections
async def test_a_check_runs_in_a_context_of_its_own_not_the_one_that_scheduled_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The schedule's timer is armed by whichever socket is due first: what that socket set in its context
    # must not reach another socket's check (what a check says is written in its socket's language).
    socket_var: contextvars.ContextVar[str] = contextvars.ContextVar("socket_var")
    seen: list[str | None] = []

    def check(credentials: revocation.Credentials) -> None:
        seen.append(socket_var.get(None))

    monkeypatch.setattr(revocation, "check", check)
    socket_var.set("the first socket's")
    part = LoginRecheck(credentials(), _never_ended)
    part.schedule(0.01)
    await asyncio.sleep(0.3)
    part.stop()
    assert seen == [None]


# -- the layer outage, as connects see it -------------------------------------------------


def test_an_outage_is_logged_once_and_its_end_once(caplog: pytest.LogCaptureFixture) -> None:
    outage = LayerOutage()
    before = metrics.value(metrics.CONNECTIONS_UNAVAILABLE)
    with caplog.at_level(logging.DEBUG, logger="wsgateway"):
        for _ in range(5):
            outage.failed(ConnectionError("Connection refused"))
        outage.served()
        outage.served()
        outage.failed(TimeoutError())  # a new outage: a paused layer
    assert metrics.value(metrics.CONNECTIONS_UNAVAILABLE) - before == 6
    said = [(record.levelno, record.getMessage()) for record in caplog.records if not record.exc_info]
    assert [level for level, _ in said] == [logging.WARNING, logging.INFO, logging.WARNING]
    assert "Connection refused" in said[0][1] and "5 refused" in said[1][1]
    assert "no answer in LAYER_CONNECT_TIMEOUT" in said[2][1]
    # The traceback only at DEBUG, once per outage: the example project logs from INFO.
    assert [record.levelno for record in caplog.records if record.exc_info] == [logging.DEBUG] * 2


@pytest.mark.django_db  # the check runs in Channels' database thread, which closes old connections
async def test_check_now_reads_the_login_at_once_whatever_the_schedule(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What a recovery from a loss asks before it sends anything."""
    checked: list[revocation.Credentials] = []

    def check(credentials: revocation.Credentials) -> revocation.Verdict:
        checked.append(credentials)
        return revocation.PASSWORD_CHANGED

    async def ended(verdict: revocation.Verdict) -> None:
        raise AssertionError  # check_now answers; the caller closes

    monkeypatch.setattr(revocation, "check", check)
    part = LoginRecheck(credentials(), ended)
    assert await part.check_now() == revocation.PASSWORD_CHANGED
    assert checked == [part.credentials] and part.due is None


# -- the memberships ----------------------------------------------------------------------


async def test_membership_joins_both_groups_and_leaves_them_with_its_place() -> None:
    layer = InProcessChannelLayer()
    channel = await layer.new_channel()
    part = Membership(layer, channel)
    assert await part.register(7, limit=1)
    assert not await Membership(layer, await layer.new_channel()).register(7, limit=1)
    await part.join(7)
    assert {group for group, _ in part.memberships()} == {"wsgateway.user.7", "wsgateway.all"}
    assert part.registrations() == [("7", channel)]
    await part.leave()
    assert part.memberships() == [] and part.registrations() == []
    assert await Membership(layer, await layer.new_channel()).register(7, limit=1)


async def test_a_failed_join_raises_only_after_both_joins_settled() -> None:
    settled: list[str] = []

    class Layer:
        async def group_add(self, group: str, channel: str) -> None:
            if group.endswith(".all"):
                raise ConnectionError("down")
            await asyncio.sleep(0.01)
            settled.append(group)

    with pytest.raises(ConnectionError):
        await Membership(Layer(), "c").join(7)
    assert settled == ["wsgateway.user.7"]
