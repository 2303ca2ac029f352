"""Who may connect: the Django session, bearer tokens, site authenticators, the token view, logging out."""

from __future__ import annotations

import time
from typing import Any
from unittest import mock

import pytest
from asgiref.sync import sync_to_async
from channels.auth import AuthMiddlewareStack
from channels.layers import get_channel_layer
from django.contrib.auth.models import AnonymousUser
from django.core import signing
from django.test import Client, override_settings

from tests.support.communicators import (
    PASSWORD,
    AnyText,
    bearer,
    connected,
    cookie,
    create_user,
    error_frame,
    frame,
    refused,
)
from wsgateway.consumers import GatewayConsumer
from wsgateway.groups import apush, user_group
from wsgateway.tokens import SALT, issue_token

pytestmark = pytest.mark.django_db(transaction=True)

API_KEY_AUTH = {
    "AUTHENTICATORS": [
        "tests.support.extensions.ApiKeyAuthenticator",
        "wsgateway.auth.BearerTokenAuthenticator",
        "wsgateway.auth.SessionAuthenticator",
    ]
}


def with_auth_middleware() -> Any:
    """The consumer as a site mounts it: behind Channels' AuthMiddlewareStack."""
    return AuthMiddlewareStack(GatewayConsumer.as_asgi())


@sync_to_async
def log_in(user: Any) -> Client:
    """A browser that logged in through the login form; its session cookie is ``session_of(client)``."""
    client = Client()
    response = client.post("/accounts/login/", {"username": user.username, "password": PASSWORD})
    assert response.status_code == 302, "login failed"
    return client


def session_of(client: Client) -> tuple[bytes, bytes]:
    return cookie(sessionid=client.cookies["sessionid"].value)


def issued_ago(user: Any, seconds: float) -> str:
    """A token signed ``seconds`` ago."""
    with mock.patch("django.core.signing.time.time", return_value=time.time() - seconds):
        return issue_token(user)


def connected_as_frame(user: Any) -> dict[str, Any]:
    return frame(
        "gateway",
        {
            "user": {"id": user.pk, "username": user.username},
            "services": ["notifications", "clipboard"],
            "window": 1024 * 1024,
        },
    )


async def assert_refused(socket: Any, code: str) -> None:
    """The documented refusal: an error frame on "gateway", then a close with 4401."""
    assert await socket.receive() == error_frame("gateway", code)
    assert await socket.close_code() == 4401


# -- the Django session -----------------------------------------------------------------


async def test_session_cookie_through_auth_middleware_stack(alice: Any) -> None:
    browser = await log_in(alice)
    async with connected(headers=[session_of(browser)], application=with_auth_middleware()) as socket:
        assert socket.connect_frames[0] == connected_as_frame(alice)


async def test_session_cookie_without_the_middleware_is_read_by_the_session_authenticator(alice: Any) -> None:
    browser = await log_in(alice)
    async with connected(headers=[session_of(browser)]) as socket:
        assert socket.connect_frames[0] == connected_as_frame(alice)


@pytest.mark.parametrize("middleware", [True, False], ids=["middleware", "no middleware"])
async def test_unknown_session_cookie_is_unauthorized(alice: Any, middleware: bool) -> None:
    application = with_auth_middleware() if middleware else None
    async with refused(
        headers=[cookie(sessionid="n0such5ession0000000000000000000")], application=application
    ) as s:
        await assert_refused(s, "unauthorized")


async def test_session_of_an_inactive_user_is_unauthorized(alice: Any) -> None:
    browser = await log_in(alice)
    alice.is_active = False
    await alice.asave()
    async with refused(headers=[session_of(browser)], application=with_auth_middleware()) as socket:
        await assert_refused(socket, "unauthorized")


async def test_session_is_ignored_when_not_among_the_authenticators(alice: Any) -> None:
    browser = await log_in(alice)
    with override_settings(WSGATEWAY={"AUTHENTICATORS": ["wsgateway.auth.BearerTokenAuthenticator"]}):
        async with refused(headers=[session_of(browser)], application=with_auth_middleware()) as socket:
            await assert_refused(socket, "unauthorized")


# -- no credentials ---------------------------------------------------------------------


async def test_no_credentials_is_unauthorized_then_4401() -> None:
    async with refused() as socket:
        assert await socket.receive() == error_frame("gateway", "unauthorized")
        assert await socket.close_code() == 4401


async def test_anonymous_user_from_the_middleware_is_unauthorized() -> None:
    async with refused(AnonymousUser()) as socket:
        await assert_refused(socket, "unauthorized")
    async with refused(application=with_auth_middleware()) as socket:
        await assert_refused(socket, "unauthorized")


@pytest.mark.parametrize("value", [b"Basic YWxpY2U6cHc=", b"Bearer", b"Bearer   ", b"Token abc", b""])
async def test_authorization_header_of_another_scheme_is_not_a_token(value: bytes) -> None:
    async with refused(headers=[(b"authorization", value)]) as socket:
        await assert_refused(socket, "unauthorized")


# -- bearer tokens ----------------------------------------------------------------------


async def test_bearer_token_in_the_authorization_header(alice: Any) -> None:
    async with connected(headers=[bearer(issue_token(alice))]) as socket:
        assert socket.connect_frames[0] == connected_as_frame(alice)


async def test_bearer_keyword_is_case_insensitive(alice: Any) -> None:
    async with connected(headers=[(b"authorization", f"bearer  {issue_token(alice)} ".encode())]) as socket:
        assert socket.connect_frames[0] == connected_as_frame(alice)


async def test_token_in_the_token_cookie(alice: Any) -> None:
    async with connected(headers=[cookie(wsgateway_token=issue_token(alice))]) as socket:
        assert socket.connect_frames[0] == connected_as_frame(alice)


async def test_token_cookie_name_is_a_setting(alice: Any) -> None:
    token = issue_token(alice)
    with override_settings(WSGATEWAY={"TOKEN_COOKIE_NAME": "api_token"}):
        async with connected(headers=[cookie(api_token=token)]) as socket:
            assert socket.connect_frames[0] == connected_as_frame(alice)
        async with refused(headers=[cookie(wsgateway_token=token)]) as socket:
            await assert_refused(socket, "unauthorized")


async def test_token_cookie_can_be_turned_off(alice: Any) -> None:
    with override_settings(WSGATEWAY={"TOKEN_COOKIE_NAME": None}):
        async with refused(headers=[cookie(wsgateway_token=issue_token(alice))]) as socket:
            await assert_refused(socket, "unauthorized")


async def test_token_wins_over_the_session(alice: Any, bob: Any) -> None:
    browser = await log_in(alice)
    headers = [session_of(browser), bearer(issue_token(bob))]
    async with connected(headers=headers, application=with_auth_middleware()) as socket:
        assert socket.connect_frames[0] == connected_as_frame(bob)


async def test_header_token_wins_over_the_cookie_token(alice: Any, bob: Any) -> None:
    headers = [cookie(wsgateway_token=issue_token(alice)), bearer(issue_token(bob))]
    async with connected(headers=headers) as socket:
        assert socket.connect_frames[0] == connected_as_frame(bob)


def tampered(token: str) -> str:
    return token[:-1] + ("A" if token[-1] != "A" else "B")


@pytest.mark.parametrize(
    "make_token",
    [
        lambda user: "not-a-token",
        lambda user: tampered(issue_token(user)),
        lambda user: signing.dumps({"u": str(user.pk), "h": "x"}, salt="another.salt"),
        lambda user: signing.dumps({"u": str(user.pk), "h": "wrong"}, salt=SALT),
        lambda user: signing.dumps({"h": "no user"}, salt=SALT),
        lambda user: signing.dumps({"u": "999999", "h": "x"}, salt=SALT),
        lambda user: signing.dumps({"u": "not-a-pk", "h": "x"}, salt=SALT),
        lambda user: signing.dumps(["u", str(user.pk)], salt=SALT),
    ],
    ids=[
        "garbage",
        "tampered",
        "other salt",
        "wrong hash",
        "no user",
        "no such user",
        "bad pk",
        "not a dict",
    ],
)
async def test_invalid_token_is_token_invalid_then_4401(alice: Any, make_token: Any) -> None:
    async with refused(headers=[bearer(make_token(alice))]) as socket:
        await assert_refused(socket, "token_invalid")


async def test_invalid_token_does_not_fall_back_to_the_session(alice: Any) -> None:
    browser = await log_in(alice)
    headers = [session_of(browser), bearer("not-a-token")]
    async with refused(headers=headers, application=with_auth_middleware()) as socket:
        await assert_refused(socket, "token_invalid")


async def test_invalid_token_cookie_is_token_invalid(alice: Any) -> None:
    async with refused(headers=[cookie(wsgateway_token="nope")]) as socket:
        await assert_refused(socket, "token_invalid")


async def test_expired_token_is_token_expired_then_4401(alice: Any) -> None:
    async with refused(headers=[bearer(issued_ago(alice, 60 * 60 + 5))]) as socket:
        await assert_refused(socket, "token_expired")


async def test_token_within_its_lifetime_is_accepted(alice: Any) -> None:
    async with connected(headers=[bearer(issued_ago(alice, 60 * 60 - 5))]) as socket:
        assert socket.connect_frames[0] == connected_as_frame(alice)


async def test_token_lifetime_is_the_token_max_age_setting(alice: Any) -> None:
    token = issued_ago(alice, 120)
    with override_settings(WSGATEWAY={"TOKEN_MAX_AGE": 60}):
        async with refused(headers=[bearer(token)]) as socket:
            await assert_refused(socket, "token_expired")
    with override_settings(WSGATEWAY={"TOKEN_MAX_AGE": 180}):
        async with connected(headers=[bearer(token)]) as socket:
            assert socket.connect_frames[0] == connected_as_frame(alice)


async def test_changing_the_password_revokes_tokens(alice: Any) -> None:
    token = issue_token(alice)
    alice.set_password("a new password")
    await alice.asave()
    async with refused(headers=[bearer(token)]) as socket:
        await assert_refused(socket, "token_invalid")
    async with connected(headers=[bearer(issue_token(alice))]) as socket:
        assert socket.connect_frames[0] == connected_as_frame(alice)


async def test_token_of_an_inactive_user_is_token_invalid(alice: Any) -> None:
    token = issue_token(alice)
    alice.is_active = False
    await alice.asave()
    async with refused(headers=[bearer(token)]) as socket:
        await assert_refused(socket, "token_invalid")


async def test_token_of_a_deleted_user_is_token_invalid(alice: Any) -> None:
    token = issue_token(alice)
    await alice.adelete()
    async with refused(headers=[bearer(token)]) as socket:
        await assert_refused(socket, "token_invalid")


async def test_a_revoked_token_leaves_the_users_group_and_hears_no_push(alice: Any) -> None:
    token = issue_token(alice)
    alice.set_password("a new password")
    await alice.asave()
    layer = get_channel_layer()
    async with refused(headers=[bearer(token)]) as socket:
        await assert_refused(socket, "token_invalid")
        await apush([alice.pk], "notifications", {"unread": 1})
        assert await socket.receive_nothing(0.2)
    assert not layer.local.groups.get(user_group(alice.pk))  # type: ignore[union-attr]


async def test_a_token_connect_reads_its_user_and_the_snapshots_in_one_trip(
    alice: Any, database_trips: list[str]
) -> None:
    async with connected(headers=[bearer(issue_token(alice))]) as socket:
        assert socket.connect_frames[0] == connected_as_frame(alice)
    assert database_trips == ["connect_reads"]


# -- a site's own authenticator ---------------------------------------------------------


async def test_authenticator_named_in_settings_authenticates() -> None:
    carol = await create_user("carol")
    with override_settings(WSGATEWAY=API_KEY_AUTH):
        async with connected(headers=[(b"x-api-key", b"key-of-carol")]) as socket:
            assert socket.connect_frames[0] == connected_as_frame(carol)


async def test_authenticator_named_in_settings_refuses_with_its_own_code() -> None:
    await create_user("carol")
    with override_settings(WSGATEWAY=API_KEY_AUTH):
        async with refused(headers=[(b"x-api-key", b"stolen")]) as socket:
            await assert_refused(socket, "api_key_invalid")


async def test_authenticators_are_tried_in_order(alice: Any) -> None:
    with override_settings(WSGATEWAY=API_KEY_AUTH):
        async with connected(headers=[bearer(issue_token(alice))]) as socket:
            assert socket.connect_frames[0] == connected_as_frame(alice)


async def test_custom_authenticator_is_not_used_unless_configured() -> None:
    await create_user("carol")
    async with refused(headers=[(b"x-api-key", b"key-of-carol")]) as socket:
        await assert_refused(socket, "unauthorized")


# -- the token view ---------------------------------------------------------------------


async def test_token_view_issues_a_working_token_to_a_logged_in_user(alice: Any) -> None:
    browser = await log_in(alice)
    response = await sync_to_async(browser.post)("/wsgateway/token/")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"token", "expires_in"} and body["expires_in"] == 60 * 60
    async with connected(headers=[bearer(body["token"])]) as socket:
        assert socket.connect_frames[0] == connected_as_frame(alice)


async def test_token_view_reports_the_token_max_age_setting(alice: Any) -> None:
    browser = await log_in(alice)
    with override_settings(WSGATEWAY={"TOKEN_MAX_AGE": 300}):
        response = await sync_to_async(browser.post)("/wsgateway/token/")
    assert response.json()["expires_in"] == 300


@pytest.mark.parametrize("enforce_csrf_checks", [False, True], ids=["csrf not checked", "csrf checked"])
async def test_token_view_answers_anonymous_with_json_401(enforce_csrf_checks: bool) -> None:
    # An app with no session has no CSRF cookie either: 401 all the same, not the CSRF middleware's 403.
    client = Client(enforce_csrf_checks=enforce_csrf_checks)
    response = await sync_to_async(client.post)("/wsgateway/token/")
    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"error": {"code": "unauthorized", "message": AnyText()}}


async def test_token_view_refuses_get(alice: Any) -> None:
    browser = await log_in(alice)
    response = await sync_to_async(browser.get)("/wsgateway/token/")
    assert response.status_code == 405


async def test_token_view_needs_the_csrf_token(alice: Any) -> None:
    @sync_to_async
    def post_without_csrf() -> int:
        browser = Client(enforce_csrf_checks=True)
        browser.force_login(alice)
        return browser.post("/wsgateway/token/").status_code

    assert await post_without_csrf() == 403


async def test_token_view_without_the_csrf_token_answers_json_and_issues_nothing(alice: Any) -> None:
    @sync_to_async
    def post_without_csrf() -> Any:
        browser = Client(enforce_csrf_checks=True)
        browser.force_login(alice)
        return browser.post("/wsgateway/token/")

    response = await post_without_csrf()
    assert response.status_code == 403
    assert response.json() == {"error": {"code": "csrf_failed", "message": AnyText()}}


async def test_token_view_issues_a_token_with_the_csrf_token(alice: Any) -> None:
    @sync_to_async
    def post_with_csrf() -> Any:
        browser = Client(enforce_csrf_checks=True)
        browser.force_login(alice)
        browser.get("/accounts/login/")  # a page with a form: it sets the CSRF cookie
        csrf_token = browser.cookies["csrftoken"].value
        return browser.post("/wsgateway/token/", headers={"X-CSRFToken": csrf_token})

    response = await post_with_csrf()
    assert response.status_code == 200
    async with connected(headers=[bearer(response.json()["token"])]) as socket:
        assert socket.connect_frames[0] == connected_as_frame(alice)


# -- logging out ------------------------------------------------------------------------


async def test_logging_out_closes_that_sessions_sockets_only(alice: Any, bob: Any) -> None:
    alice_browser, alice_phone, bob_browser = await log_in(alice), await log_in(alice), await log_in(bob)
    application = with_auth_middleware
    async with (
        connected(headers=[session_of(alice_browser)], application=application()) as tab,
        connected(headers=[session_of(alice_browser)]) as tab_without_middleware,
        connected(headers=[session_of(alice_phone)], application=application()) as phone,
        connected(headers=[bearer(issue_token(alice))]) as api_client,
        connected(headers=[session_of(bob_browser)], application=application()) as bobs_tab,
    ):
        response = await sync_to_async(alice_browser.post)("/accounts/logout/")
        assert response.status_code == 302
        for socket in (tab, tab_without_middleware):
            assert await socket.receive() == error_frame("gateway", "logged_out")
            assert await socket.close_code() == 4401
        for socket in (phone, api_client, bobs_tab):
            assert await socket.receive_nothing()
            await socket.assert_open()


async def test_session_cookie_no_longer_connects_after_logging_out(alice: Any) -> None:
    browser = await log_in(alice)
    stale_cookie = session_of(browser)
    await sync_to_async(browser.post)("/accounts/logout/")
    async with refused(headers=[stale_cookie], application=with_auth_middleware()) as socket:
        await assert_refused(socket, "unauthorized")
