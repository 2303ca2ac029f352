"""Refusing: maintenance mode (4503, with the reason and retry_after), a retired path (4410), and the
``wsgateway.v1`` subprotocol, through the real consumers."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.core.management import call_command
from django.test import override_settings
from django.utils.translation import gettext_lazy

from tests.support.communicators import (
    AnyText,
    communicator,
    connected,
    create_user,
    frame,
    origin,
    refused,
)
from wsgateway import maintenance, metrics
from wsgateway.bounds import MAX_RETRY_AFTER
from wsgateway.codes import CloseCode
from wsgateway.consumers import ClipboardConsumer, GatewayConsumer, RefusingConsumer
from wsgateway.frames import SUBPROTOCOL

pytestmark = pytest.mark.django_db(transaction=True)

GERMAN = (b"accept-language", b"de-DE,de;q=0.9")


@pytest.fixture(autouse=True)
def fresh_state() -> Iterator[None]:
    """Every test starts with no maintenance known to this process, and leaves none behind."""
    maintenance.forget()
    yield
    maintenance.forget()
    maintenance._cache.state = None


def maintenance_frame(message: Any, retry_after: int) -> dict[str, Any]:
    return {
        "channel": "gateway",
        "error": {"code": "maintenance", "message": message, "retry_after": retry_after},
    }


async def read_connect_frames(socket: Any) -> None:
    hello = await socket.receive()
    for _ in hello["payload"]["services"]:
        await socket.receive()


# -- maintenance ------------------------------------------------------------------------------


async def test_while_on_a_new_socket_is_told_the_reason_and_when_to_come_back_then_closed_4503(
    alice: Any,
) -> None:
    await sync_to_async(maintenance.enable)("Upgrading the database", 7)
    async with refused(alice) as socket:
        assert await socket.receive() == maintenance_frame("Upgrading the database", 7)
        assert await socket.close_code() == CloseCode.SERVICE_UNAVAILABLE == 4503


async def test_after_off_sockets_are_accepted_again(alice: Any) -> None:
    await sync_to_async(maintenance.enable)("Back soon", 5)
    assert await sync_to_async(maintenance.disable)() is True
    async with connected(alice) as socket:
        assert socket.connect_frames[0]["payload"]["user"]["id"] == alice.pk
    assert await sync_to_async(maintenance.disable)() is False  # off already


async def test_the_refusal_comes_before_authentication_an_anonymous_socket_reads_maintenance_too(
    database_trips: list[str],
) -> None:
    await sync_to_async(maintenance.enable)("Down", 3)
    maintenance.forget()
    async with refused(None) as socket:  # no user: would be 4401 outside maintenance
        assert await socket.receive() == maintenance_frame("Down", 3)
        assert await socket.close_code() == 4503
    # The one trip is the read of the state; no session, no user, no snapshot.
    assert database_trips == ["current"]


async def test_a_connect_storm_reads_the_state_once_per_interval(database_trips: list[str]) -> None:
    await sync_to_async(maintenance.enable)("Down", 3)
    maintenance.forget()
    for _ in range(20):
        async with refused(None) as socket:
            assert (await socket.receive())["error"]["code"] == "maintenance"
            assert await socket.close_code() == 4503
    assert database_trips == ["current"]


@override_settings(WSGATEWAY={"MAINTENANCE_CHECK_INTERVAL": 1})
async def test_another_process_switching_it_on_is_seen_once_the_interval_has_passed(alice: Any) -> None:
    from wsgateway.models import MAINTENANCE_ROW, Maintenance

    async with connected(alice):  # reads "off", and keeps it for the interval
        pass
    # What another process's `on` leaves: the row, and nothing in this process's memory.
    await Maintenance.objects.acreate(pk=MAINTENANCE_ROW, reason="Elsewhere", retry_after=4)
    async with connected(alice):  # within the interval: still what this process read
        pass
    maintenance._cache.read_at = 0.0  # the interval has passed (no sleep: time is not the point here)
    async with refused(alice) as socket:
        assert await socket.receive() == maintenance_frame("Elsewhere", 4)
        assert await socket.close_code() == 4503


async def test_without_a_reason_the_default_message_is_sent_in_the_sockets_language() -> None:
    await sync_to_async(maintenance.enable)()
    async with refused(None, headers=[GERMAN]) as socket:
        refusal = await socket.receive()
        assert refusal == maintenance_frame(AnyText(), 30)  # MAINTENANCE_RETRY_AFTER by default
        assert refusal["error"]["message"] != "The site is down for maintenance. Please come back later."
        assert await socket.close_code() == 4503


@override_settings(WSGATEWAY={"MAINTENANCE_RETRY_AFTER": 90})
async def test_retry_after_defaults_to_the_setting() -> None:
    state = await sync_to_async(maintenance.enable)("Down")
    assert state.retry_after == 90


@pytest.mark.parametrize("retry_after", [0, -1, MAX_RETRY_AFTER + 1, 2.5, True])
async def test_retry_after_out_of_bounds_is_refused(retry_after: Any) -> None:
    with pytest.raises(ValueError, match="retry_after"):
        await sync_to_async(maintenance.enable)("Down", retry_after)
    assert await sync_to_async(maintenance.current)() is None


async def test_refusals_are_counted_each_and_logged_once_per_maintenance(
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = metrics.value(metrics.CONNECTIONS_MAINTENANCE)
    await sync_to_async(maintenance.enable)("Counted", 2)
    with caplog.at_level(logging.WARNING, logger="wsgateway"):
        for _ in range(3):
            async with refused(None) as socket:
                await socket.receive()
                assert await socket.close_code() == 4503
    assert metrics.value(metrics.CONNECTIONS_MAINTENANCE) - before == 3
    state = await sync_to_async(maintenance.current)()
    assert state is not None
    logged = [r.getMessage() for r in caplog.records if "maintenance is on" in r.getMessage()]
    assert logged == [
        f"wsgateway: maintenance is on (since {state.since.isoformat()}): new sockets are refused "
        "with 4503, retry after 2 s: Counted"
    ]


async def test_open_sockets_stay_open_when_maintenance_starts(alice: Any) -> None:
    async with connected(alice) as socket:
        await sync_to_async(maintenance.enable)("Only new ones", 2)
        await socket.assert_open()


async def test_close_existing_tells_the_open_sockets_the_same_and_closes_them_4503(alice: Any) -> None:
    bob = await create_user("bob")
    async with refused(alice) as alices, refused(bob) as bobs:
        for socket in (alices, bobs):
            await read_connect_frames(socket)
        await sync_to_async(maintenance.enable)("Moving to a new server", 40, close_existing=True)
        for socket in (alices, bobs):
            # The frame a new socket is refused with: wsgateway.js waits retry_after, the same way.
            assert await socket.receive() == maintenance_frame("Moving to a new server", 40)
            assert await socket.close_code() == CloseCode.SERVICE_UNAVAILABLE
    async with refused(alice) as again:
        assert await again.receive() == maintenance_frame("Moving to a new server", 40)


async def test_the_command_closes_existing_sockets_only_when_asked(alice: Any) -> None:
    async with connected(alice) as kept:
        await sync_to_async(run_command)("on", "--retry-after", "9")
        assert await kept.receive_nothing()
        await kept.assert_open()
    await sync_to_async(maintenance.disable)()
    async with refused(alice) as socket:
        await read_connect_frames(socket)
        out = await sync_to_async(run_command)("on", "--retry-after", "9", "--close-existing")
        assert "closed, on every process" in out
        assert await socket.receive() == maintenance_frame(AnyText(), 9)
        assert await socket.close_code() == 4503


async def test_the_command_switches_it_on_shows_it_and_off() -> None:
    out = await sync_to_async(run_command)("on", "--reason", "Deploying", "--retry-after", "12")
    assert "retry after 12 s" in out and "Reason: Deploying" in out
    state = await sync_to_async(maintenance.current)()
    assert state is not None and (state.reason, state.retry_after) == ("Deploying", 12)
    assert "Maintenance is on since" in await sync_to_async(run_command)("status")
    assert "Maintenance is off." in await sync_to_async(run_command)("off")
    assert "Maintenance is off: sockets are accepted." in await sync_to_async(run_command)("status")


def run_command(*args: str) -> str:
    from io import StringIO

    out = StringIO()
    call_command("wsgateway_maintenance", *args, stdout=out)
    return out.getvalue()


def test_the_command_refuses_a_retry_after_out_of_bounds() -> None:
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="retry_after"):
        run_command("on", "--retry-after", "0")
    assert maintenance.current() is None


# -- a retired path ---------------------------------------------------------------------------


async def test_a_retired_path_says_why_and_closes_4410_with_no_user_and_no_database(
    database_trips: list[str],
) -> None:
    app = RefusingConsumer.as_asgi(reason="Use /ws/ instead.")
    async with refused(None, application=app) as socket:
        assert await socket.receive() == {
            "channel": "gateway",
            "error": {"code": "gone", "message": "Use /ws/ instead."},
        }
        assert await socket.close_code() == CloseCode.GONE == 4410
    assert database_trips == []


async def test_a_retired_path_takes_a_lazy_reason_in_the_sockets_language_and_its_own_code() -> None:
    app = RefusingConsumer.as_asgi(
        reason=gettext_lazy("Log in, or present a bearer token, to connect."), code=4404, error="moved"
    )
    async with refused(None, application=app, headers=[GERMAN]) as socket:
        refusal = await socket.receive()
        assert refusal["error"]["code"] == "moved"
        assert refusal["error"]["message"].startswith("Melden Sie sich an")  # the German catalog's
        assert await socket.close_code() == 4404


async def test_a_retired_path_refuses_during_maintenance_too_with_its_own_code() -> None:
    await sync_to_async(maintenance.enable)("Down", 2)
    async with refused(None, application=RefusingConsumer.as_asgi()) as socket:
        assert (await socket.receive())["error"] == {"code": "gone", "message": AnyText()}
        assert await socket.close_code() == 4410


def test_a_misspelt_argument_or_a_code_outside_4000_4999_fails_where_the_route_is_written() -> None:
    with pytest.raises(TypeError, match="reasons"):
        RefusingConsumer.as_asgi(reasons="typo")
    with pytest.raises(ValueError, match="4000 to 4999"):
        RefusingConsumer.as_asgi(code=1000)


async def test_a_retired_path_checks_the_origin_first() -> None:
    ws = communicator(None, application=RefusingConsumer.as_asgi(), headers=[origin("https://evil.example")])
    accepted, code = await ws.connect()
    assert (accepted, code) == (False, 1000)  # closed before accept: HTTP 403
    await ws.disconnect()


# -- the subprotocol --------------------------------------------------------------------------


def offering(*subprotocols: str, user: Any = None, application: Any = None) -> WebsocketCommunicator:
    ws = communicator(user, application=application or GatewayConsumer.as_asgi())
    ws.scope["subprotocols"] = list(subprotocols)
    return ws


async def accept_of(ws: WebsocketCommunicator) -> dict[str, Any]:
    """The server's accept message, as the ASGI server reads it (the subprotocol it selects)."""
    await ws.send_input({"type": "websocket.connect"})
    return await ws.receive_output(2)  # type: ignore[no-any-return]


async def test_a_client_offering_no_subprotocol_is_served_with_none_selected(alice: Any) -> None:
    ws = offering(user=alice)
    try:
        assert await accept_of(ws) == {"type": "websocket.accept", "subprotocol": None}
        assert (await ws.receive_json_from())["payload"]["user"]["id"] == alice.pk
    finally:
        await ws.disconnect()


@pytest.mark.parametrize("offer", [[SUBPROTOCOL], ["wsgateway.v2", SUBPROTOCOL, "chat"]])
async def test_a_client_offering_wsgateway_v1_among_others_gets_it(alice: Any, offer: list[str]) -> None:
    ws = offering(*offer, user=alice)
    try:
        assert await accept_of(ws) == {"type": "websocket.accept", "subprotocol": "wsgateway.v1"}
        assert (await ws.receive_json_from())["payload"]["user"]["id"] == alice.pk
    finally:
        await ws.disconnect()


@pytest.mark.parametrize("offer", [["wsgateway.v2"], ["chat", "mqtt"]])
async def test_a_client_offering_only_other_subprotocols_is_refused_before_accept(
    alice: Any, offer: list[str], database_trips: list[str]
) -> None:
    before = metrics.value(metrics.CONNECTIONS_SUBPROTOCOL_REFUSED)
    ws = offering(*offer, user=alice)
    accepted, code = await ws.connect()
    assert (accepted, code) == (False, 1000)  # a close before accept: HTTP 403
    assert metrics.value(metrics.CONNECTIONS_SUBPROTOCOL_REFUSED) - before == 1
    assert database_trips == []
    await ws.disconnect()


@pytest.mark.parametrize(
    "application",
    [None, RefusingConsumer.as_asgi(), ClipboardConsumer.as_asgi()],
    ids=["unauthorized", "retired", "clipboard-unauthorized"],
)
async def test_every_refusal_after_accept_selects_the_subprotocol(application: Any) -> None:
    ws = offering(SUBPROTOCOL, application=application)
    try:
        assert await accept_of(ws) == {"type": "websocket.accept", "subprotocol": "wsgateway.v1"}
        assert "error" in await ws.receive_json_from()
        assert (await ws.receive_output(2))["type"] == "websocket.close"
    finally:
        await ws.disconnect()


async def test_the_maintenance_refusal_selects_the_subprotocol() -> None:
    await sync_to_async(maintenance.enable)("Down", 2)
    ws = offering(SUBPROTOCOL)
    try:
        assert await accept_of(ws) == {"type": "websocket.accept", "subprotocol": "wsgateway.v1"}
        assert await ws.receive_json_from() == maintenance_frame("Down", 2)
        assert (await ws.receive_output(2))["code"] == 4503
    finally:
        await ws.disconnect()


async def test_a_served_socket_with_the_subprotocol_speaks_the_same_protocol(alice: Any) -> None:
    ws = offering(SUBPROTOCOL, user=alice)
    try:
        await accept_of(ws)
        for _ in range(3):
            await ws.receive_json_from()
        await ws.send_json_to({"channel": "gateway", "payload": {"action": "ping"}, "id": 1})
        assert await ws.receive_json_from() == frame("gateway", {"action": "pong"}, 1)
    finally:
        await ws.disconnect()


def test_the_models_and_their_migrations_agree() -> None:
    from io import StringIO

    out = StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)  # exits 1 if a migration is missing
    assert "No changes detected" in out.getvalue()
