"""An open socket ends with the login it was opened with: password, activity, deletion, session, expiry."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import channel_layers, get_channel_layer
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.sessions.models import Session
from django.core import signing
from django.db import transaction
from django.test import Client, override_settings
from django.utils import timezone

import wsgateway
from tests.support.communicators import (
    PASSWORD,
    Socket,
    bearer,
    connected,
    error_frame,
    refused,
)
from tests.test_auth import issued_ago, log_in, session_of, with_auth_middleware
from wsgateway import metrics, revocation
from wsgateway.consumers import GatewayConsumer
from wsgateway.groups import apush, user_group
from wsgateway.models import ClipboardEntry
from wsgateway.tokens import SALT, issue_token, unseal_session_key

pytestmark = pytest.mark.django_db(transaction=True)


async def assert_closed(socket: Socket, code: str, within: float = 2) -> None:
    """The socket says why (an error frame on "gateway") and closes with 4401."""
    assert await socket.receive(within) == error_frame("gateway", code)
    assert await socket.close_code() == 4401


async def assert_still_open(*sockets: Socket) -> None:
    for socket in sockets:
        assert await socket.receive_nothing()
        await socket.assert_open()


def session_socket(browser: Client) -> Any:
    return connected(headers=[session_of(browser)], application=with_auth_middleware())


def token_socket(user: Any) -> Any:
    return connected(headers=[bearer(issue_token(user))])


# -- the user changes ---------------------------------------------------------------------


async def test_set_password_closes_every_socket_of_the_user_and_no_other(alice: Any, bob: Any) -> None:
    laptop, phone, bobs_browser = await log_in(alice), await log_in(alice), await log_in(bob)
    async with (
        session_socket(laptop) as on_laptop,
        session_socket(phone) as on_phone,
        token_socket(alice) as api_client,
        session_socket(bobs_browser) as bobs_tab,
    ):
        alice.set_password("a new password")
        await alice.asave()
        for socket in (on_laptop, on_phone, api_client):
            await assert_closed(socket, "revoked")
        await assert_still_open(bobs_tab)


async def test_a_revoked_socket_stores_nothing_it_is_sent_and_hears_no_push(alice: Any) -> None:
    async with token_socket(alice) as socket:
        alice.set_password("a new password")
        await alice.asave()
        await assert_closed(socket, "revoked")
        await socket.send("clipboard", {"action": "clipboard_add", "data": {"text": "after"}}, id="late")
        await wsgateway.anotify(alice, "after the revocation")
        assert await socket.receive_nothing(0.3)
    assert await ClipboardEntry.objects.filter(user=alice).acount() == 0


async def test_a_save_that_changes_no_password_closes_nothing(alice: Any) -> None:
    browser = await log_in(alice)
    async with session_socket(browser) as tab, token_socket(alice) as api_client:
        alice.first_name = "Alice"
        await alice.asave()
        await alice.asave(update_fields=["last_login"])
        await assert_still_open(tab, api_client)


async def test_password_change_view_closes_the_sockets_opened_before_and_logout_closes_the_later_ones(
    alice: Any, bob: Any
) -> None:
    browser, other_browser, bobs_browser = await log_in(alice), await log_in(alice), await log_in(bob)
    async with (
        session_socket(browser) as before,
        session_socket(other_browser) as elsewhere,
        session_socket(bobs_browser) as bobs_tab,
    ):
        old_key = browser.cookies["sessionid"].value
        response = await sync_to_async(browser.post)(
            "/accounts/password_change/",
            {"old_password": PASSWORD, "new_password1": "n3w passw0rd", "new_password2": "n3w passw0rd"},
        )
        assert response.status_code == 302, "the password change failed"
        assert browser.cookies["sessionid"].value != old_key  # update_session_auth_hash cycled the key
        await assert_closed(before, "revoked")
        await assert_closed(elsewhere, "revoked")
        async with session_socket(browser) as after:  # the same browser, its new session
            await assert_still_open(after, bobs_tab)
            await sync_to_async(browser.post)("/accounts/logout/")
            await assert_closed(after, "logged_out")
            await assert_still_open(bobs_tab)


async def test_making_the_user_inactive_closes_their_sockets(alice: Any, bob: Any) -> None:
    browser = await log_in(alice)
    async with session_socket(browser) as tab, token_socket(alice) as api_client, token_socket(bob) as bobs:
        alice.is_active = False
        await alice.asave(update_fields=["is_active"])
        await assert_closed(tab, "revoked")
        await assert_closed(api_client, "revoked")
        await assert_still_open(bobs)


async def test_deleting_the_user_closes_their_sockets(alice: Any, bob: Any) -> None:
    async with token_socket(alice) as api_client, token_socket(bob) as bobs:
        await alice.adelete()
        await assert_closed(api_client, "revoked")
        await assert_still_open(bobs)


# -- the session ends ---------------------------------------------------------------------


async def test_deleting_the_session_closes_its_sockets_only(alice: Any) -> None:
    browser, phone = await log_in(alice), await log_in(alice)
    async with (
        session_socket(browser) as tab,
        session_socket(phone) as on_phone,
        token_socket(alice) as api_client,
    ):
        await Session.objects.filter(session_key=browser.cookies["sessionid"].value).adelete()
        await assert_closed(tab, "session_ended")
        await assert_still_open(on_phone, api_client)


async def test_an_expiring_session_closes_its_socket_when_it_expires(alice: Any) -> None:
    with override_settings(SESSION_COOKIE_AGE=2):
        browser = await log_in(alice)
    started = time.monotonic()
    async with session_socket(browser) as tab:
        await assert_closed(tab, "session_ended", within=4)
    assert 1 < time.monotonic() - started < 3.5


async def test_a_session_extended_before_it_expires_keeps_its_socket(alice: Any) -> None:
    with override_settings(SESSION_COOKIE_AGE=2):
        browser = await log_in(alice)
    async with session_socket(browser) as tab:
        key = browser.cookies["sessionid"].value
        await Session.objects.filter(session_key=key).aupdate(expire_date=timezone.now() + timedelta(hours=1))
        await asyncio.sleep(2.5)
        await assert_still_open(tab)


async def test_an_expiring_token_closes_its_socket_when_it_expires(alice: Any, bob: Any) -> None:
    # TOKEN_MAX_AGE is an hour; a token's time is in whole seconds, so it expires in 1.5 to 2.5 s.
    token = issued_ago(alice, 60 * 60 - 2.5)
    started = time.monotonic()
    async with connected(headers=[bearer(token)]) as socket, token_socket(bob) as bobs:
        await assert_closed(socket, "token_expired", within=4)
        await assert_still_open(bobs)
    assert 1 < time.monotonic() - started < 3.5


# -- what no signal reports: the periodic re-check -------------------------------------------


async def test_the_revalidate_interval_catches_a_change_that_bypassed_the_orm(alice: Any) -> None:
    browser = await log_in(alice)
    with override_settings(WSGATEWAY={"REVALIDATE_INTERVAL": 1}):
        async with session_socket(browser) as checked, token_socket(alice) as also_checked:
            await get_user_model().objects.filter(pk=alice.pk).aupdate(is_active=False)  # no signal
            await assert_closed(checked, "revoked", within=3)
            await assert_closed(also_checked, "revoked", within=1)


async def test_without_a_signal_nothing_closes_before_the_revalidate_interval(alice: Any) -> None:
    async with token_socket(alice) as socket:  # the default interval, minutes
        await get_user_model().objects.filter(pk=alice.pk).aupdate(is_active=False)
        await asyncio.sleep(1.5)
        await assert_still_open(socket)


async def test_a_recheck_is_one_trip_to_the_database_thread(alice: Any, database_trips: list[str]) -> None:
    with override_settings(WSGATEWAY={"REVALIDATE_INTERVAL": 1}):
        async with token_socket(alice) as socket:
            await asyncio.sleep(1.3)
            await assert_still_open(socket)
    assert database_trips == ["connect_reads", "check"]


# -- what no signal reports, told by the site: recheck_user_sockets() ------------------------


async def test_arecheck_user_sockets_closes_at_once_after_an_update_and_keeps_others(
    alice: Any, bob: Any
) -> None:
    browser = await log_in(alice)
    async with session_socket(browser) as tab, token_socket(alice) as api_client, token_socket(bob) as bobs:
        await get_user_model().objects.filter(pk=alice.pk).aupdate(is_active=False)  # no signal
        started = time.monotonic()
        await wsgateway.arecheck_user_sockets(alice)
        await assert_closed(tab, "revoked", within=1)
        await assert_closed(api_client, "revoked", within=1)
        assert time.monotonic() - started < 1
        await wsgateway.arecheck_user_sockets(bob)  # bob's login holds: nothing is sent, it stays
        await assert_still_open(bobs)


async def test_recheck_user_sockets_waits_for_the_commit(alice: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[str] = []
    send = revocation._asend

    async def recorded(user_id: Any, event: dict[str, Any]) -> None:
        sent.append(event["type"])
        await send(user_id, event)

    monkeypatch.setattr(revocation, "_asend", recorded)

    def deactivate_and_recheck() -> None:
        with transaction.atomic():
            get_user_model().objects.filter(pk=alice.pk).update(is_active=False)
            wsgateway.recheck_user_sockets(alice.pk)
            # Not sent yet: a socket re-checking now could read the row from before the change.
            assert sent == []

    async with token_socket(alice) as socket:
        await sync_to_async(deactivate_and_recheck)()
        assert sent == ["gateway.recheck"]
        await assert_closed(socket, "revoked", within=1)


async def test_a_recheck_asked_for_is_one_trip_to_the_database_thread(
    alice: Any, database_trips: list[str]
) -> None:
    async with token_socket(alice) as socket:
        await revocation.arecheck_user_sockets(alice.pk)
        await asyncio.sleep(0.2)
        await assert_still_open(socket)
    assert database_trips == ["connect_reads", "check"]


# -- the public call ----------------------------------------------------------------------


async def test_close_user_sockets_with_a_code_and_reason(alice: Any, bob: Any) -> None:
    browser = await log_in(alice)
    async with session_socket(browser) as tab, token_socket(alice) as api_client, token_socket(bob) as bobs:
        await sync_to_async(wsgateway.close_user_sockets)(alice, code=4403, reason="Banned.", error="banned")
        for socket in (tab, api_client):
            assert await socket.receive() == {
                "channel": "gateway",
                "error": {"code": "banned", "message": "Banned."},
            }
            assert await socket.close_code() == 4403
        await assert_still_open(bobs)


async def test_aclose_user_sockets_of_one_session_by_user_id(alice: Any) -> None:
    browser, phone = await log_in(alice), await log_in(alice)
    async with session_socket(browser) as tab, session_socket(phone) as on_phone:
        await wsgateway.aclose_user_sockets(alice.pk, session_key=browser.cookies["sessionid"].value)
        await assert_closed(tab, "revoked")
        await assert_still_open(on_phone)


@pytest.mark.parametrize("code", [1001, 1009, 2999, 5000])
async def test_close_user_sockets_refuses_a_code_an_application_may_not_send(alice: Any, code: int) -> None:
    with pytest.raises(ValueError, match=str(code)):
        await wsgateway.aclose_user_sockets(alice, code=code)


# -- tokens issued in a session -------------------------------------------------------------


@sync_to_async
def token_from_the_view(browser: Client) -> str:
    response = browser.post("/wsgateway/token/")
    assert response.status_code == 200
    return str(response.json()["token"])


async def test_logging_out_ends_the_tokens_issued_in_that_session(alice: Any) -> None:
    browser, phone = await log_in(alice), await log_in(alice)
    token, phones_token = await token_from_the_view(browser), await token_from_the_view(phone)
    async with (
        connected(headers=[bearer(token)]) as api_client,
        connected(headers=[bearer(phones_token)]) as phones_client,
        token_socket(alice) as sessionless,
    ):
        await sync_to_async(browser.post)("/accounts/logout/")
        await assert_closed(api_client, "logged_out")
        await assert_still_open(phones_client, sessionless)
    async with refused(headers=[bearer(token)]) as socket:
        await assert_closed(socket, "token_invalid")
    async with connected(headers=[bearer(phones_token)]) as socket:
        await socket.assert_open()


async def test_a_deleted_session_closes_the_sockets_of_its_tokens(alice: Any) -> None:
    browser = await log_in(alice)
    async with connected(headers=[bearer(await token_from_the_view(browser))]) as api_client:
        await Session.objects.filter(session_key=browser.cookies["sessionid"].value).adelete()
        await assert_closed(api_client, "session_ended")


async def test_the_token_carries_its_session_key_sealed_not_readable(alice: Any) -> None:
    browser = await log_in(alice)
    key = browser.cookies["sessionid"].value
    token = await token_from_the_view(browser)
    claims = signing.loads(token, salt=SALT)
    assert set(claims) == {"u", "h", "s"}
    assert key not in str(claims) and key not in token
    assert unseal_session_key(claims["s"]) == key
    assert issue_token(alice, session_key=key) != issue_token(alice, session_key=key)  # a fresh nonce each


@pytest.mark.parametrize("sealed", ["", "not base64!", "c2hvcnQ=", 42])
async def test_a_token_with_a_bad_sealed_session_is_token_invalid(alice: Any, sealed: Any) -> None:
    token = signing.dumps(
        {"u": str(alice.pk), "h": alice.get_session_auth_hash()[:20], "s": sealed}, salt=SALT
    )
    async with refused(headers=[bearer(token)]) as socket:
        await assert_closed(socket, "token_invalid")


async def test_a_re_check_that_fails_keeps_the_socket_and_runs_again(
    alice: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_check, calls = revocation.check, []

    def failing_once(credentials: Any) -> Any:
        calls.append(credentials)
        if len(calls) == 1:
            raise ConnectionError("the database is down")
        return real_check(credentials)

    monkeypatch.setattr(revocation, "check", failing_once)
    with override_settings(WSGATEWAY={"REVALIDATE_INTERVAL": 1}):
        async with token_socket(alice) as socket:
            await asyncio.sleep(1.3)
            assert len(calls) == 1 and "re-check of a socket's login failed" in caplog.text
            await assert_still_open(socket)
            await get_user_model().objects.filter(pk=alice.pk).aupdate(is_active=False)
            await assert_closed(socket, "revoked", within=2)
    assert len(calls) == 2


@override_settings(SESSION_ENGINE="django.contrib.sessions.backends.cache")
async def test_a_cache_session_closes_its_socket_when_it_expires_and_on_logout(alice: Any) -> None:
    with override_settings(SESSION_COOKIE_AGE=2):
        browser = await log_in(alice)
        async with session_socket(browser) as tab:
            await assert_closed(tab, "session_ended", within=4)
    browser = await log_in(alice)
    async with session_socket(browser) as tab:
        await sync_to_async(browser.post)("/accounts/logout/")
        await assert_closed(tab, "logged_out")


# -- whatever the socket is doing: a revocation waits for nothing ----------------------------------

#: A window a few pushes fill, and an ACK_TIMEOUT long enough that no 4408 can come first.
STALLED = {"OUTBOUND_WINDOW": 64 * 1024, "ACK_TIMEOUT": 30}
#: A push of about 8 KB: eight fill the window.
BIG = {"blob": "x" * 8000}


@pytest.fixture
def small_queues() -> Iterator[None]:
    """The in-process layer with ten places per socket: a stalled socket's queue overflows at once."""
    config = {"BACKEND": "wsgateway.layers.InProcessChannelLayer", "CONFIG": {"capacity": 10}}
    channel_layers.backends.clear()
    try:
        with override_settings(CHANNEL_LAYERS={"default": config}, WSGATEWAY=STALLED):
            yield
    finally:
        channel_layers.backends.clear()


async def push_big(user: Any, count: int) -> None:
    for _ in range(count):
        await apush([user.pk], "notifications", BIG)


async def read_until_stalled(socket: Socket) -> list[dict[str, Any]]:
    """What the server sends until it stops (its window is full, or it is done)."""
    received = []
    while not await socket.receive_nothing(0.3):
        received.append(await socket.receive())
    return received


async def closed_at_once(socket: Socket, code: str) -> float:
    """The error frame and the 4401 within a second; the seconds it took."""
    started = time.monotonic()
    await assert_closed(socket, code, within=1)
    took = time.monotonic() - started
    assert took < 1, f"closed {took:.2f} s after the revocation"
    return took


async def end_login(how: str, user: Any, browser: Client) -> str:
    """Change the password, or log the browser out; the error code its sockets are closed with."""
    if how == "password":
        user.set_password("a new password")
        await user.asave()
        return "revoked"
    await sync_to_async(browser.post)("/accounts/logout/")
    return "logged_out"


@pytest.mark.parametrize("how", ["password", "logout"])
async def test_a_revocation_closes_a_socket_whose_push_waits_for_room_at_once_with_4401(
    alice: Any, how: str
) -> None:
    """Not with 4408 after ACK_TIMEOUT: the push waiting for room holds the turn, and the
    revocation needs none; nothing sent after it reaches the client."""
    browser = await log_in(alice)
    with override_settings(WSGATEWAY=STALLED):
        async with session_socket(browser) as socket:
            await push_big(alice, 10)
            assert len(await read_until_stalled(socket)) < 10  # the window is full: a push waits
            code = await end_login(how, alice, browser)
            await closed_at_once(socket, code)
            await push_big(alice, 2)
            assert await socket.receive_nothing(0.3)


@pytest.mark.usefixtures("small_queues")
@pytest.mark.parametrize("how", ["password", "logout"])
async def test_a_socket_whose_queue_overflowed_is_still_revoked_at_once(alice: Any, how: str) -> None:
    """The revocation comes when the socket's queue in the layer is full, and pushes come after it:
    it is not dropped with them, nor queued behind them."""
    browser = await log_in(alice)
    dropped = metrics.value(metrics.LAYER_DROPPED)
    async with session_socket(browser) as socket:
        await push_big(alice, 30)  # 7 fit the window, one waits for room, 10 queued, the rest dropped
        assert len(await read_until_stalled(socket)) < 10
        assert metrics.value(metrics.LAYER_DROPPED) > dropped
        code = await end_login(how, alice, browser)
        await push_big(alice, 5)
        await closed_at_once(socket, code)
        assert await socket.receive_nothing(0.3)  # no push, no resync


@pytest.mark.usefixtures("small_queues")
async def test_the_catch_up_after_an_overflow_rechecks_the_login_before_it_sends_anything(alice: Any) -> None:
    """A password changed where no signal tells (an UPDATE), while the socket's queue overflowed: once
    the client reads again, it is sent what was queued, then closed, and never resynced."""
    async with token_socket(alice) as socket:
        await push_big(alice, 30)
        assert len(await read_until_stalled(socket)) < 30  # the window is full: a push waits
        await get_user_model().objects.filter(pk=alice.pk).aupdate(password=make_password("changed"))
        socket.acking = True  # acknowledge each mark as it comes, as a client that reads again does
        await socket.ack()
        while True:
            message = await socket.receive()
            if "error" in message:
                break
            assert message["channel"] == "notifications" and "blob" in message["payload"], message
        assert message == error_frame("gateway", "revoked")
        assert await socket.close_code() == 4401


class RacingConsumer(GatewayConsumer):
    """A revocation comes while the connect is under way: joined, not yet re-checking."""

    async def send_service_snapshots(self, read: Any = None) -> None:
        await self.channel_layer.group_send(user_group(self.user.pk), revocation.revoke_event())
        await asyncio.sleep(0.05)  # handed to the socket meanwhile
        await super().send_service_snapshots(read)


async def test_a_revocation_that_races_the_connect_closes_the_socket_once_it_is_accepted(alice: Any) -> None:
    async with connected(alice, RacingConsumer) as socket:
        await closed_at_once(socket, "revoked")


async def test_a_revocation_sent_from_another_thread_is_handled_on_the_sockets_loop(alice: Any) -> None:
    """Sync code outside any loop, on the in-process layer: the layer hands the event over in that
    thread, and the socket takes it on its own loop."""
    layer = get_channel_layer()
    async with token_socket(alice) as socket:
        event = revocation.revoke_event()
        await asyncio.to_thread(lambda: asyncio.run(layer.group_send(user_group(alice.pk), event)))
        await closed_at_once(socket, "revoked")
