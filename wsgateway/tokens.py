"""Signed, expiring bearer tokens for clients that have no session cookie.

A token issued in a Django session (the token view's) is tied to it: logging out, or the session
ending otherwise, ends the token too, and the sockets opened with it. The token carries the session
key sealed (:func:`seal_session_key`), never in the clear: a token is read by the page's scripts,
where the session cookie is ``HttpOnly``, so a readable key would make a leaked token a stolen session.
"""

from __future__ import annotations

import binascii
import secrets
import time
from base64 import urlsafe_b64decode, urlsafe_b64encode
from collections import Counter
from collections.abc import Sequence
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.core import signing
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.utils.crypto import constant_time_compare, salted_hmac
from django.utils.translation import gettext

from .codes import ErrorCode
from .conf import gateway_settings
from .exceptions import AuthenticationFailed
from .reads import fetch, whole_table
from .sessions import session_expiry

SALT = "wsgateway.tokens"


def _auth_hash(user: AbstractBaseUser) -> str:
    # Tied to the password hash, like a session: changing the password revokes tokens.
    return user.get_session_auth_hash()[:20]


def issue_token(user: AbstractBaseUser, session_key: str | None = None) -> str:
    """A token that authenticates ``user`` for ``WSGATEWAY["TOKEN_MAX_AGE"]`` seconds.

    With ``session_key``, only while that Django session lasts: it is refused once the session has
    ended, and its sockets close with it (logging out closes them with ``logged_out``).
    """
    claims = {"u": str(user.pk), "h": _auth_hash(user)}
    if session_key:
        claims["s"] = seal_session_key(session_key)
    return signing.dumps(claims, salt=SALT, compress=True)


#: Bytes of the random nonce that starts a sealed session key.
NONCE_BYTES = 16


def _pad(nonce: bytes) -> bytes:
    # A pseudo-random function of the nonce, keyed by SECRET_KEY: 64 bytes, more than a session key
    # (Django's are 32 characters, at most 40). A fresh nonce per token: no pad is used twice.
    return salted_hmac(SALT + ".session", nonce, algorithm="sha512").digest()


def seal_session_key(session_key: str) -> str:
    """The session key, encrypted (XOR with a keyed pad); the token's signature keeps it intact."""
    data = session_key.encode()
    nonce = secrets.token_bytes(NONCE_BYTES)
    pad = _pad(nonce)
    if len(data) > len(pad):
        raise ValueError("A session key longer than 64 bytes cannot be sealed into a token")
    return urlsafe_b64encode(nonce + bytes(a ^ b for a, b in zip(data, pad, strict=False))).decode()


def unseal_session_key(sealed: Any) -> str:
    """The key :func:`seal_session_key` sealed; AuthenticationFailed if it is not one."""
    try:
        raw = urlsafe_b64decode(str(sealed).encode())
        nonce, body = raw[:NONCE_BYTES], raw[NONCE_BYTES:]
        if len(nonce) < NONCE_BYTES or not body:
            raise ValueError
        return bytes(a ^ b for a, b in zip(body, _pad(nonce), strict=False)).decode("ascii")
    except (ValueError, binascii.Error):  # UnicodeDecodeError is a ValueError
        raise AuthenticationFailed(ErrorCode.TOKEN_INVALID, gettext("The token is not valid.")) from None


def token_claims(token: str) -> dict[str, Any]:
    """The claims of a well-signed, unexpired token; no database access, so fit for the event loop."""
    try:
        claims = signing.loads(token, salt=SALT, max_age=gateway_settings.TOKEN_MAX_AGE)
    except signing.SignatureExpired:
        raise AuthenticationFailed(
            ErrorCode.TOKEN_EXPIRED, gettext("The token has expired; get a new one.")
        ) from None
    except signing.BadSignature:
        raise AuthenticationFailed(ErrorCode.TOKEN_INVALID, gettext("The token is not valid.")) from None
    if not isinstance(claims, dict) or not isinstance(claims.get("u"), str):
        raise AuthenticationFailed(ErrorCode.TOKEN_INVALID, gettext("The token is not valid."))
    return claims


def token_expiry(token: str) -> float:
    """When a token that :func:`token_claims` accepted expires (Unix time), by ``TOKEN_MAX_AGE`` now."""
    # The signed value is "<payload>:<timestamp in base 62>:<signature>" (signing.TimestampSigner).
    _, timestamp, _ = token.rsplit(":", 2)
    return float(signing.b62_decode(timestamp) + gateway_settings.TOKEN_MAX_AGE)


def token_user(claims: dict[str, Any]) -> Any:
    """The user :func:`token_claims` name, if active and with the same password; reads the database."""
    return _checked(claims, _user_named(claims))


def _user_named(claims: dict[str, Any]) -> Any:
    """The user of ``claims["u"]``; AuthenticationFailed when there is none, or the pk is not one."""
    user_model = get_user_model()
    try:
        # Read on every token connect: plain SQL (see wsgateway.reads), by primary key; through the
        # model's manager when that hides rows, as Django's ModelBackend reads a user.
        if whole_table(user_model):
            (user,) = fetch(user_model, user_model._meta.pk.name, claims["u"])
        else:
            user = user_model._default_manager.get(pk=claims["u"])
    # ValueError: no such user (none to unpack), or a bad pk; through the manager, the last two.
    except (TypeError, ValueError, OverflowError, ValidationError, ObjectDoesNotExist):
        raise AuthenticationFailed(ErrorCode.TOKEN_INVALID, gettext("The token is not valid.")) from None
    return user


def _checked(claims: dict[str, Any], user: Any) -> Any:
    """``user`` if the token still holds for it: active, the same password, its session not ended."""
    if not getattr(user, "is_active", True) or not constant_time_compare(
        claims.get("h", ""), _auth_hash(user)
    ):
        raise AuthenticationFailed(ErrorCode.TOKEN_INVALID, gettext("The token is not valid."))
    if "s" in claims:
        expires_at = session_expiry(unseal_session_key(claims["s"]))
        if expires_at is None or expires_at <= time.time():
            raise AuthenticationFailed(
                ErrorCode.TOKEN_INVALID,
                gettext("The session this token was issued in has ended; log in again."),
            )
    return user


#: A :class:`TokenUser` whose user was not read with others.
_UNREAD: Any = object()


class TokenUser:
    """A token connect's ``Identity.load_user``: :func:`token_user` of its claims, unless
    :meth:`read_together` read its user already, with the users of the other token connects of a trip."""

    __slots__ = ("claims", "found")

    def __init__(self, claims: dict[str, Any]) -> None:
        self.claims = claims
        #: The user read with the others (None: there is none), or _UNREAD.
        self.found: Any = _UNREAD

    def __call__(self) -> Any:
        if self.found is _UNREAD:
            return token_user(self.claims)
        if self.found is None:
            raise AuthenticationFailed(ErrorCode.TOKEN_INVALID, gettext("The token is not valid."))
        return _checked(self.claims, self.found)  # the checks are each connect's, in its language

    @classmethod
    def read_together(cls, loaders: Sequence[TokenUser]) -> None:
        """The users of many token connects in one query, each then checked by its own call. Only
        where :func:`token_user` reads the whole table; a pk named twice is read by each call alone
        (each socket its own user object), as is every one when the query cannot be made (a pk
        that is not one: each then fails alone)."""
        user_model = get_user_model()
        if not whole_table(user_model):
            return
        named = Counter(loader.claims["u"] for loader in loaders)
        once = [loader for loader in loaders if named[loader.claims["u"]] == 1]
        try:
            users = user_model._default_manager.filter(pk__in=[loader.claims["u"] for loader in once])
            by_pk = {str(user.pk): user for user in users}
        except (TypeError, ValueError, OverflowError, ValidationError):
            return
        for loader in once:
            loader.found = by_pk.get(loader.claims["u"])
