"""Authenticators: each turns a handshake scope into a user, or passes.

``WSGATEWAY["AUTHENTICATORS"]`` lists them in order. ``authenticate`` returns an
:class:`Identity` when its kind of credential is present and valid, ``None``
when its kind is absent, and raises :class:`AuthenticationFailed` when present
but wrong, which stops the search: a bad token never falls back to a session.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from channels.auth import get_user
from django.conf import settings
from django.utils.functional import empty

from .conf import gateway_settings, import_from_setting
from .scope import Scope, cookies, header
from .sessions import read_user_together, session_store
from .tokens import TokenUser, token_claims, token_expiry, unseal_session_key

# Authenticators of a site read the handshake with these too (``from wsgateway.auth import header``).
__all__ = [
    "BaseAuthenticator",
    "BearerTokenAuthenticator",
    "Identity",
    "Scope",
    "SessionAuthenticator",
    "authenticate",
    "authenticator_classes",
    "bearer_token",
    "cookies",
    "header",
]


@dataclass(frozen=True)
class Identity:
    user: Any = None
    #: The Django session the socket belongs to, so that logging out closes it.
    session_key: str | None = None
    #: Instead of ``user``, for a credential that names its user without the database (a signed
    #: token): the user's primary key, and a sync function that reads the user, or raises
    #: AuthenticationFailed. The consumer runs it in the same trip to the database thread as the
    #: services' snapshots, after joining the group of ``user_id``; a refusal leaves the group.
    #: A ``load_user`` whose class has a classmethod ``read_together(loaders)`` has the users of the
    #: connects of a trip that share its class read at once, before each is called
    #: (wsgateway.tokens.TokenUser).
    user_id: Any = None
    load_user: Callable[[], Any] | None = None
    #: Unix time the credential expires, if it does (a token's): the socket closes then. A
    #: ``session_key``'s expiry is read from the session itself.
    expires_at: float | None = None
    #: When the session of ``session_key`` ends (Unix time), if the authenticator read it with the
    #: session: the connect then does not read it again. None: read at the connect.
    session_expires_at: float | None = None

    def __post_init__(self) -> None:
        if (self.user is None) == (self.load_user is None or self.user_id is None):
            raise ValueError("An Identity has a user, or a user_id and load_user, not both")

    @property
    def pk(self) -> Any:
        return self.user.pk if self.user is not None else self.user_id


class BaseAuthenticator:
    async def authenticate(self, scope: Scope) -> Identity | None:
        raise NotImplementedError


class BearerTokenAuthenticator(BaseAuthenticator):
    """``Authorization: Bearer <token>``, else the ``TOKEN_COOKIE_NAME`` cookie."""

    keyword = "bearer"

    def get_token(self, scope: Scope) -> str | None:
        return bearer_token(scope, {self.keyword})

    async def authenticate(self, scope: Scope) -> Identity | None:
        token = self.get_token(scope)
        if token is None:
            return None
        claims = token_claims(token)  # the signature and age; the user is read with the snapshots
        # A token issued in a session is tied to it (wsgateway.tokens): its socket too.
        session_key = unseal_session_key(claims["s"]) if "s" in claims else None
        return Identity(
            user_id=claims["u"],
            load_user=TokenUser(claims),  # its user read with the other token connects of a trip
            session_key=session_key,
            expires_at=token_expiry(token),
        )


class SessionAuthenticator(BaseAuthenticator):
    """The Django session of a logged-in browser.

    Uses the user Channels' ``AuthMiddlewareStack`` put in the scope; without that
    middleware it reads the session cookie itself, so a site cannot forget it.
    """

    async def authenticate(self, scope: Scope) -> Identity | None:
        session = scope.get("session")
        user = scope.get("user")
        expires_at = None
        if user is not None and getattr(user, "_wrapped", None) is empty:  # lazy, not resolved yet
            user = await get_user(scope) if session is not None else None
        if user is None:
            if session is None:
                session = self.session_from_cookie(scope)
                if session is None:
                    return None
            # One trip to the database thread, shared with the session connects waiting now; with the
            # db engine, one statement for their sessions and expiries (which the connects'
            # credentials then need not read again), one for their users.
            user, expires_at = await read_user_together(session)
        if not user.is_authenticated:
            return None
        return Identity(
            user, session_key=getattr(session, "session_key", None), session_expires_at=expires_at
        )

    @staticmethod
    def session_from_cookie(scope: Scope) -> Any:
        session_key = cookies(scope).get(settings.SESSION_COOKIE_NAME)
        if not session_key:
            return None
        return session_store(session_key)


def bearer_token(scope: Scope, keywords: Collection[str]) -> str | None:
    """The token of an ``Authorization: <keyword> <token>`` header whose keyword is one of ``keywords``
    (lower case; the header's is compared without case), else the ``TOKEN_COOKIE_NAME`` cookie's.

    The cookie is for browsers, which cannot set headers on a WebSocket. Never the query string: a
    URL is written to the access logs of the server and of every proxy on the way.
    """
    authorization = header(scope, b"authorization")
    if authorization:
        keyword, _, token = authorization.strip().partition(" ")
        if keyword.lower() in keywords and token.strip():
            return token.strip()
    cookie_name = gateway_settings.TOKEN_COOKIE_NAME
    if cookie_name:
        return cookies(scope).get(cookie_name) or None
    return None


def authenticator_classes() -> list[type[BaseAuthenticator]]:
    """The classes named in ``AUTHENTICATORS``, in the order they are tried; each imported once, until
    a setting changes (:func:`wsgateway.conf.import_from_setting`)."""
    return [import_from_setting(path) for path in gateway_settings.AUTHENTICATORS]


async def authenticate(scope: Scope) -> Identity | None:
    """Run the configured authenticators in order; see the module docstring."""
    for authenticator in authenticator_classes():
        identity = await authenticator().authenticate(scope)
        if identity is not None:
            return identity
    return None
