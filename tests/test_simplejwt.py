"""Apps that log in with djangorestframework-simplejwt connect with its access tokens."""

from __future__ import annotations

import base64
import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from channels.layers import get_channel_layer
from django.test import override_settings
from rest_framework_simplejwt import authentication as simplejwt_authentication
from rest_framework_simplejwt import settings as simplejwt_settings
from rest_framework_simplejwt import tokens as simplejwt_tokens
from rest_framework_simplejwt.backends import TokenBackend
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken
from rest_framework_simplejwt.utils import aware_utcnow

from tests.support.communicators import bearer, connected, cookie, error_frame, frame, refused
from wsgateway.checks import check_settings
from wsgateway.groups import user_group
from wsgateway.tokens import issue_token

pytestmark = pytest.mark.django_db(transaction=True)

SIMPLEJWT = "wsgateway.authenticators.simplejwt.SimpleJWTAuthenticator"
#: The order the docs advise: this one passes what is not a JWT; the bearer one would refuse a JWT.
AUTHENTICATORS = [SIMPLEJWT, "wsgateway.auth.BearerTokenAuthenticator", "wsgateway.auth.SessionAuthenticator"]


@pytest.fixture(autouse=True)
def jwt_first() -> Iterator[None]:
    with override_settings(WSGATEWAY={"AUTHENTICATORS": AUTHENTICATORS}):
        yield


def access(user: Any, lifetime: timedelta | None = None, issued: timedelta = timedelta(0)) -> str:
    """A real access token, as simplejwt's TokenObtainPairView hands out; ``issued`` ago, for ``lifetime``."""
    token = AccessToken.for_user(user)
    if lifetime is not None or issued:
        token.set_exp(from_time=aware_utcnow() - issued, lifetime=lifetime or AccessToken.lifetime)
    return str(token)


@contextmanager
def simple_jwt(**values: Any) -> Iterator[None]:
    """``SIMPLE_JWT`` for simplejwt's modules too: they import its settings object once, by name, so
    ``override_settings`` reaches only the modules that read it through ``settings.api_settings``."""
    with override_settings(SIMPLE_JWT=values):
        replaced = simplejwt_settings.api_settings
        with (
            mock.patch.object(simplejwt_authentication, "api_settings", replaced),
            mock.patch.object(simplejwt_tokens, "api_settings", replaced),
        ):
            yield


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
    assert await socket.receive() == error_frame("gateway", code)
    assert await socket.close_code() == 4401


def with_payload(token: str, **claims: Any) -> str:
    """``token`` with its payload changed and its signature kept: a forgery."""
    header, payload, signature = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data.update(claims)
    forged = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


# -- connecting -------------------------------------------------------------------------


async def test_access_token_in_the_authorization_header(alice: Any) -> None:
    async with connected(headers=[bearer(access(alice))]) as socket:
        assert socket.connect_frames[0] == connected_as_frame(alice)


async def test_access_token_in_the_token_cookie(alice: Any) -> None:
    # What a browser's script does: it cannot set headers on a WebSocket.
    async with connected(headers=[cookie(wsgateway_token=access(alice))]) as socket:
        assert socket.connect_frames[0] == connected_as_frame(alice)


async def test_a_connect_reads_the_user_and_the_snapshots_in_one_trip(
    alice: Any, database_trips: list[str]
) -> None:
    async with connected(headers=[bearer(access(alice))]) as socket:
        assert socket.connect_frames[0] == connected_as_frame(alice)
    assert database_trips == ["connect_reads"]


async def test_wsgateway_tokens_still_work_behind_it(alice: Any) -> None:
    async with connected(headers=[bearer(issue_token(alice))]) as socket:
        assert socket.connect_frames[0] == connected_as_frame(alice)


async def test_the_header_types_of_simplejwt_settings(alice: Any) -> None:
    with simple_jwt(AUTH_HEADER_TYPES=("JWT",)):
        async with connected(headers=[(b"authorization", f"JWT {access(alice)}".encode())]) as socket:
            assert socket.connect_frames[0] == connected_as_frame(alice)


async def test_a_user_id_field_other_than_the_primary_key(alice: Any) -> None:
    with simple_jwt(USER_ID_FIELD="username"):
        token = access(alice)
        assert AccessToken(token)["user_id"] == "alice"
        async with connected(headers=[bearer(token)]) as socket:
            assert socket.connect_frames[0] == connected_as_frame(alice)
            # The socket is in the group of alice's primary key, where pushes to her go.
            assert get_channel_layer().local.groups.get(user_group(alice.pk))  # type: ignore[union-attr]


async def test_what_is_not_a_jwt_is_left_to_the_next_authenticator(alice: Any) -> None:
    with override_settings(WSGATEWAY={"AUTHENTICATORS": [SIMPLEJWT]}):
        async with refused(headers=[bearer(issue_token(alice))]) as socket:
            await assert_refused(socket, "unauthorized")


async def test_listed_after_the_bearer_authenticator_a_jwt_is_refused(alice: Any) -> None:
    # Why the docs say to list it first.
    with override_settings(WSGATEWAY={"AUTHENTICATORS": list(reversed(AUTHENTICATORS))}):
        async with refused(headers=[bearer(access(alice))]) as socket:
            await assert_refused(socket, "token_invalid")


# -- refusals ---------------------------------------------------------------------------


async def test_expired_token_is_token_expired_then_4401(alice: Any) -> None:
    token = access(alice, lifetime=timedelta(minutes=5), issued=timedelta(minutes=6))
    async with refused(headers=[bearer(token)]) as socket:
        await assert_refused(socket, "token_expired")


@pytest.mark.parametrize(
    "make_token",
    [
        lambda alice, bob: with_payload(access(alice), user_id=str(bob.pk)),
        lambda alice, bob: with_payload(access(alice), exp=int(time.time()) + 86400),
        lambda alice, bob: str(RefreshToken.for_user(alice)),
        lambda alice, bob: access(alice)[:-2],
    ],
    ids=["another user", "a later exp", "a refresh token", "truncated signature"],
)
async def test_a_token_that_is_not_an_access_token_of_this_site_is_token_invalid(
    alice: Any, bob: Any, make_token: Any
) -> None:
    async with refused(headers=[bearer(make_token(alice, bob))]) as socket:
        await assert_refused(socket, "token_invalid")


async def test_a_token_signed_with_another_key_is_token_invalid(alice: Any) -> None:
    token = AccessToken.for_user(alice)
    token._token_backend = TokenBackend("HS256", "another key, as long as a key should be: 32 bytes")
    async with refused(headers=[bearer(str(token))]) as socket:
        await assert_refused(socket, "token_invalid")


async def test_a_bad_jwt_does_not_fall_back_to_the_session_or_the_cookie(alice: Any) -> None:
    headers = [bearer(with_payload(access(alice), user_id="0")), cookie(wsgateway_token=issue_token(alice))]
    async with refused(headers=headers) as socket:
        await assert_refused(socket, "token_invalid")


@pytest.mark.parametrize("check_user_is_active", [True, False])
async def test_an_inactive_user_is_refused(alice: Any, check_user_is_active: bool) -> None:
    token = access(alice)
    alice.is_active = False
    await alice.asave()
    with simple_jwt(CHECK_USER_IS_ACTIVE=check_user_is_active):
        async with refused(headers=[bearer(token)]) as socket:
            await assert_refused(socket, "token_invalid")


async def test_a_password_change_refuses_the_token_with_check_revoke_token(alice: Any) -> None:
    with simple_jwt(CHECK_REVOKE_TOKEN=True):
        token = access(alice)
        alice.set_password("a new password")
        await alice.asave()
        async with refused(headers=[bearer(token)]) as socket:
            await assert_refused(socket, "token_invalid")
        async with connected(headers=[bearer(access(alice))]) as socket:
            assert socket.connect_frames[0] == connected_as_frame(alice)


async def test_a_deleted_user_is_refused(alice: Any) -> None:
    token = access(alice)
    await alice.adelete()
    async with refused(headers=[bearer(token)]) as socket:
        await assert_refused(socket, "token_invalid")


# -- an open socket -----------------------------------------------------------------------


async def test_the_socket_closes_when_its_token_expires(alice: Any) -> None:
    # exp is in whole seconds: the token expires in 1 to 2 s.
    token = access(alice, lifetime=timedelta(seconds=2))
    started = time.monotonic()
    async with connected(headers=[bearer(token)]) as socket:
        assert await socket.receive(within=3) == error_frame("gateway", "token_expired")
        assert await socket.close_code() == 4401
    assert 0.9 < time.monotonic() - started < 2.9


async def test_the_socket_closes_when_the_user_is_made_inactive(alice: Any) -> None:
    async with connected(headers=[bearer(access(alice))]) as socket:
        alice.is_active = False
        await alice.asave()
        assert await socket.receive() == error_frame("gateway", "revoked")
        assert await socket.close_code() == 4401


# -- the system check ---------------------------------------------------------------------


def test_e004_when_simplejwt_is_not_installed() -> None:
    with mock.patch.dict(sys.modules, {"rest_framework_simplejwt": None}):
        sys.modules.pop("wsgateway.authenticators.simplejwt", None)  # imported again, as in a new process
        messages = check_settings()
    assert [m.id for m in messages] == ["wsgateway.E004"]
    assert SIMPLEJWT in messages[0].msg
    assert "wsgateway[simplejwt]" in (messages[0].hint or "")


def test_no_check_when_simplejwt_is_installed() -> None:
    assert check_settings() == []
