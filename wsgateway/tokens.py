"""Signed, expiring bearer tokens for clients that have no session cookie."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.core import signing
from django.utils.crypto import constant_time_compare

from .codes import ErrorCode
from .conf import gateway_settings
from .exceptions import AuthenticationFailed
from .reads import fetch

SALT = "wsgateway.tokens"


def _auth_hash(user: AbstractBaseUser) -> str:
    # Tied to the password hash, like a session: changing the password revokes tokens.
    return user.get_session_auth_hash()[:20]


def issue_token(user: AbstractBaseUser) -> str:
    """A token that authenticates ``user`` for ``WSGATEWAY["TOKEN_MAX_AGE"]`` seconds."""
    return signing.dumps({"u": str(user.pk), "h": _auth_hash(user)}, salt=SALT, compress=True)


def token_claims(token: str) -> dict[str, Any]:
    """The claims of a well-signed, unexpired token; no database access, so fit for the event loop."""
    try:
        claims = signing.loads(token, salt=SALT, max_age=gateway_settings.TOKEN_MAX_AGE)
    except signing.SignatureExpired:
        raise AuthenticationFailed(ErrorCode.TOKEN_EXPIRED, "The token has expired; get a new one.") from None
    except signing.BadSignature:
        raise AuthenticationFailed(ErrorCode.TOKEN_INVALID, "The token is not valid.") from None
    if not isinstance(claims, dict) or not isinstance(claims.get("u"), str):
        raise AuthenticationFailed(ErrorCode.TOKEN_INVALID, "The token is not valid.")
    return claims


def token_user(claims: dict[str, Any]) -> Any:
    """The user :func:`token_claims` name, if active and with the same password; reads the database."""
    user_model = get_user_model()
    try:
        # Read on every token connect: plain SQL (see wsgateway.reads), by primary key.
        (user,) = fetch(user_model, user_model._meta.pk.name, claims["u"])
    except (TypeError, ValueError, OverflowError):  # ValueError: no such user, or a bad pk
        raise AuthenticationFailed(ErrorCode.TOKEN_INVALID, "The token is not valid.") from None
    if not getattr(user, "is_active", True) or not constant_time_compare(
        claims.get("h", ""), _auth_hash(user)
    ):
        raise AuthenticationFailed(ErrorCode.TOKEN_INVALID, "The token is not valid.")
    return user
