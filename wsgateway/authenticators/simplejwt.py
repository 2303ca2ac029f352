"""Access tokens of djangorestframework-simplejwt (``pip install wsgateway[simplejwt]``).

An app that logs in through simplejwt's views connects with the access token it already holds, with no
Django session and no wsgateway token. List it before ``BearerTokenAuthenticator``, which refuses what it
cannot read (a JWT) as ``token_invalid``, while this one passes what is not a JWT::

    WSGATEWAY = {
        "AUTHENTICATORS": [
            "wsgateway.authenticators.simplejwt.SimpleJWTAuthenticator",
            "wsgateway.auth.BearerTokenAuthenticator",
            "wsgateway.auth.SessionAuthenticator",
        ]
    }
"""

from __future__ import annotations

import re
from functools import partial
from typing import Any

from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.utils.translation import gettext_lazy
from rest_framework_simplejwt import settings as simplejwt_settings
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed as SimpleJWTAuthenticationFailed
from rest_framework_simplejwt.exceptions import ExpiredTokenError, TokenError
from rest_framework_simplejwt.tokens import Token

from ..auth import BaseAuthenticator, Identity, Scope, bearer_token
from ..codes import ErrorCode
from ..exceptions import AuthenticationFailed

__all__ = ["SimpleJWTAuthenticator"]


def api_settings() -> Any:
    # Read through the module on every use: simplejwt replaces the object when SIMPLE_JWT changes.
    return simplejwt_settings.api_settings


#: A JWS in compact form: three base64url parts. A wsgateway token has colons, so it is never one.
JWT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")

# Rendered when the refusal is sent, in the socket's language (wsgateway.i18n); the same msgids as
# wsgateway.tokens', so one translation serves both.
INVALID = gettext_lazy("The token is not valid.")
EXPIRED = gettext_lazy("The token has expired; get a new one.")


class SimpleJWTAuthenticator(BaseAuthenticator):
    """A simplejwt access token, validated by simplejwt (its signing key, algorithm, audience, leeway,
    ``AUTH_TOKEN_CLASSES``, ``USER_ID_CLAIM``), in the places ``BearerTokenAuthenticator`` reads:

    - ``Authorization: <type> <jwt>``, the type one of ``SIMPLE_JWT["AUTH_HEADER_TYPES"]`` (``Bearer``);
    - else the ``WSGATEWAY["TOKEN_COOKIE_NAME"]`` cookie, which a browser's script sets before it opens
      the socket (a browser cannot set headers on a WebSocket).

    Not the query string: a URL is written to the access logs of the server and of every proxy on the way.

    The socket closes when the token expires (its ``exp``), as one opened with a wsgateway token; and as
    any socket, when the user is made inactive, deleted, or changes password (``revoked``).
    """

    async def authenticate(self, scope: Scope) -> Identity | None:
        raw = self.get_token(scope)
        if raw is None or not JWT.fullmatch(raw):
            return None  # not a JWT: another authenticator's
        # In the event loop: an access token's signature and claims need no database (a token class that
        # checks simplejwt's blacklist, or SIMPLE_JWT["JWK_URL"], would block it: neither is supported).
        token = self.validate(raw)
        expires_at = float(token["exp"])  # every token simplejwt validates has one (Token.check_exp)
        if _user_id_is_the_primary_key():
            # The user is read with the services' snapshots, in the consumer's one trip to the database.
            try:
                user_id = token[api_settings().USER_ID_CLAIM]
            except KeyError:
                raise AuthenticationFailed(ErrorCode.TOKEN_INVALID, INVALID) from None
            return Identity(user_id=user_id, load_user=partial(self.get_user, token), expires_at=expires_at)
        # The token names its user by another field: the group (by primary key) needs the user first.
        user = await database_sync_to_async(self.get_user)(token)
        return Identity(user, expires_at=expires_at)

    def get_token(self, scope: Scope) -> str | None:
        return bearer_token(scope, _header_types())

    def validate(self, raw: str) -> Token:
        """The token, as the first of ``AUTH_TOKEN_CLASSES`` that accepts it.

        What ``JWTAuthentication.get_validated_token`` does, but keeping simplejwt's reason: that
        method folds "expired" into one ``InvalidToken`` for every class.
        """
        expired = False
        for token_class in api_settings().AUTH_TOKEN_CLASSES:
            try:
                token: Token = token_class(raw)
            except ExpiredTokenError:
                expired = True
            except TokenError:
                pass
            else:
                return token
        if expired:
            raise AuthenticationFailed(ErrorCode.TOKEN_EXPIRED, EXPIRED)
        raise AuthenticationFailed(ErrorCode.TOKEN_INVALID, INVALID)

    def get_user(self, token: Token) -> Any:
        """The token's user, by simplejwt's rules (inactive, ``CHECK_REVOKE_TOKEN``); reads the database."""
        try:
            user = JWTAuthentication().get_user(token)
        except SimpleJWTAuthenticationFailed:  # InvalidToken too: no such user, no user claim
            raise AuthenticationFailed(ErrorCode.TOKEN_INVALID, INVALID) from None
        # Whatever SIMPLE_JWT["CHECK_USER_IS_ACTIVE"] says: the socket's re-check would close it anyway.
        if not getattr(user, "is_active", True):
            raise AuthenticationFailed(ErrorCode.TOKEN_INVALID, INVALID)
        return user


def _header_types() -> set[str]:
    types = api_settings().AUTH_HEADER_TYPES
    return {kind.lower() for kind in ([types] if isinstance(types, str) else types)}


def _user_id_is_the_primary_key() -> bool:
    pk = get_user_model()._meta.pk
    return pk is not None and api_settings().USER_ID_FIELD in (pk.name, pk.attname)
