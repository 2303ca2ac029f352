"""Sockets tied to the login they were opened with.

A socket remembers what it authenticated with (:class:`Credentials`): its user, the user's
session auth hash (which changes with the password), the Django session's key, and when the
credential expires. Two ways end it:

- **Events**, pushed to the user's group on every process (:data:`~wsgateway.events.REVOKE`):
  :func:`close_user_sockets`, the one public call, and the receivers of Django's signals in
  :mod:`wsgateway.receivers` (the password changed, the user made inactive or deleted, the
  session row deleted), which use it.
- **Re-checks**, :func:`check`, one trip to the database thread: when the session's or the
  token's expiry passes, and every ``WSGATEWAY["REVALIDATE_INTERVAL"]`` seconds, which also
  catches what no signal reports (a session in a cache that was evicted, an ``UPDATE`` that
  bypassed the ORM, an event lost while the layer was down). :func:`recheck_user_sockets` asks a
  user's sockets for theirs at once, after a change the site made without a signal.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, TypedDict, Unpack

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import translation
from django.utils.crypto import constant_time_compare
from django.utils.functional import Promise
from django.utils.translation import gettext_noop

from . import events
from .bridge import run_async
from .codes import CloseCode, ErrorCode
from .groups import channel_layer, user_group, user_pk
from .sessions import session_expiry

__all__ = [
    "CloseOptions",
    "Credentials",
    "UserCloseOptions",
    "aclose_user_sockets",
    "arecheck_user_sockets",
    "check",
    "close_user_sockets",
    "recheck_user_sockets",
]

# The reasons travel through the layer in English, marked for makemessages: each socket translates
# them into its own language when it sends them (GatewayConsumer.revoke), as the sender's language
# (a request's, say) need not be the socket's.
DEFAULT_REASON = gettext_noop("Your login was revoked; log in again.")


@dataclass(slots=True)  # one per open socket: 72 bytes with slots, 352 with a __dict__
class Credentials:
    """What one open socket authenticated with."""

    user_id: Any
    #: ``user.get_session_auth_hash()`` at connect: another one means the password changed.
    auth_hash: str | None
    #: The Django session, for a socket opened with one (or with a token issued in one).
    session_key: str | None
    #: Unix time the session expires, re-read at each re-check: a session that is used is extended.
    session_expires_at: float | None
    #: Unix time the credential itself expires (a token's), fixed.
    expires_at: float | None

    @property
    def next_expiry(self) -> float | None:
        """The sooner of the two expiries."""
        known = [at for at in (self.session_expires_at, self.expires_at) if at is not None]
        return min(known) if known else None


class Verdict(NamedTuple):
    """Why a socket's login has ended: the error frame's code and message."""

    error: ErrorCode
    message: str


DELETED = Verdict(ErrorCode.REVOKED, gettext_noop("The account was deleted."))
DEACTIVATED = Verdict(ErrorCode.REVOKED, gettext_noop("The account was deactivated."))
PASSWORD_CHANGED = Verdict(ErrorCode.REVOKED, gettext_noop("The password changed; log in again."))
SESSION_ENDED = Verdict(ErrorCode.SESSION_ENDED, gettext_noop("The session ended; log in again."))
TOKEN_EXPIRED = Verdict(ErrorCode.TOKEN_EXPIRED, gettext_noop("The token has expired; get a new one."))
LOGGED_OUT = Verdict(ErrorCode.LOGGED_OUT, gettext_noop("The session was logged out."))


def auth_hash_of(user: Any) -> str | None:
    get_hash = getattr(user, "get_session_auth_hash", None)
    return get_hash() if get_hash is not None else None


def credentials_of(
    user: Any, session_key: str | None, expires_at: float | None, session_expires_at: float | None = None
) -> Credentials:
    """A connecting socket's credentials; reads the session's expiry (sync, the database thread),
    unless ``session_expires_at`` says it (read with the session, see sessions.session_user)."""
    if session_key is not None and session_expires_at is None:
        session_expires_at = session_expiry(session_key) or time.time()  # gone already: checked at once
    return Credentials(user.pk, auth_hash_of(user), session_key, session_expires_at, expires_at)


def check(credentials: Credentials) -> Verdict | None:
    """Whether the login behind ``credentials`` still holds (sync: run it in the database thread).

    Reads the user and, for a session, its expiry, which it stores in ``credentials``.
    """
    user = get_user_model()._default_manager.filter(pk=credentials.user_id).first()
    if user is None:
        return DELETED
    if not getattr(user, "is_active", True):
        return DEACTIVATED
    auth_hash = auth_hash_of(user)
    if credentials.auth_hash is not None and not constant_time_compare(
        auth_hash or "", credentials.auth_hash
    ):
        return PASSWORD_CHANGED
    now = time.time()
    if credentials.session_key is not None:
        credentials.session_expires_at = session_expiry(credentials.session_key)
        if credentials.session_expires_at is None or credentials.session_expires_at <= now:
            return SESSION_ENDED
    if credentials.expires_at is not None and credentials.expires_at <= now:
        return TOKEN_EXPIRED
    return None


# -- the event ----------------------------------------------------------------------------


def revoke_event(
    *,
    error: str = ErrorCode.REVOKED,
    reason: str | Promise = DEFAULT_REASON,
    code: int = CloseCode.UNAUTHORIZED,
    session_key: str | None = None,
    keep_auth_hash: str | None = None,
    reason_in_close: bool = False,
    details: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The layer event that closes the matching sockets of a user's group (or, from
    :func:`wsgateway.broadcasts.close_sockets`, of every socket's group).

    ``session_key``: only the sockets of that session. ``keep_auth_hash``: only the sockets whose
    auth hash is another (they were opened before the password changed to this one).
    ``reason_in_close``: the reason is the close frame's too, not only the error frame's. ``details``:
    fields the error frame carries besides its code and message (a maintenance's ``retry_after``).
    ``reason`` goes in English: a ``gettext_lazy`` one as its msgid, which each socket translates into its
    language.
    """
    if not (code == 1000 or 3000 <= code <= 4999):
        raise ValueError(f"An application may close a WebSocket with 1000 or 3000-4999, not {code}")
    with translation.override(None):  # no language: a lazy reason's msgid, untranslated
        reason = str(reason)
    return {
        "type": events.REVOKE,
        "error": str(error),
        "reason": reason,
        "code": int(code),
        "session_key": session_key,
        "keep_auth_hash": keep_auth_hash,
        "reason_in_close": reason_in_close,
        "details": dict(details or {}),
    }


def matches(event: dict[str, Any], credentials: Credentials) -> bool:
    """Whether a socket with ``credentials`` is one that ``event`` closes."""
    session_key = event.get("session_key")
    if session_key is not None and session_key != credentials.session_key:
        return False
    keep = event.get("keep_auth_hash")
    if keep is not None and credentials.auth_hash is not None:
        return not constant_time_compare(keep, credentials.auth_hash)
    return True


class CloseOptions(TypedDict, total=False):
    """What a site may say of a close: the close code, the error frame's message and code."""

    code: int
    reason: str | Promise
    error: str


class UserCloseOptions(CloseOptions, total=False):
    """How :func:`close_user_sockets` and :func:`aclose_user_sockets` close; the defaults are
    :func:`revoke_event`'s."""

    session_key: str | None


async def aclose_user_sockets(user_or_id: Any, **options: Unpack[UserCloseOptions]) -> None:
    """Close a user's sockets on every process sharing the channel layer.

    Each sends ``{"channel": "gateway", "error": {"code": error, "message": reason}}``, ``reason``
    translated into the socket's language (give ``gettext_lazy(...)``, or text marked with
    ``gettext_noop``, for a reason the site's catalogs translate; "Your login was revoked; log in
    again." by default), then closes with ``code`` (1000 or 3000-4999; 4401 by default, which a client
    reads as "log in first"). ``error``: ``revoked`` by default. With ``session_key``, only the sockets
    opened with that Django session close.
    """
    await _asend(user_pk(user_or_id), revoke_event(**options))


def close_user_sockets(user_or_id: Any, **options: Unpack[UserCloseOptions]) -> None:
    """Synchronous :func:`aclose_user_sockets`, for views, signal receivers and workers."""
    send_revoke_event(user_pk(user_or_id), revoke_event(**options))


async def arecheck_user_sockets(user_or_id: Any) -> None:
    """Have every socket of a user, on every process, re-check its login now, as it would after
    ``REVALIDATE_INTERVAL``: those whose login no longer holds close as a revocation closes them.

    For a change that sends no signal: ``QuerySet.update()`` of ``is_active`` or ``password``, raw
    SQL, a session deleted without its ``post_delete``. Call it after the change is committed: a
    socket reading the row before then finds the login unchanged (:func:`recheck_user_sockets`
    waits for the commit itself). A socket whose login holds stays open, and nothing is sent.
    """
    await _asend(user_pk(user_or_id), {"type": events.RECHECK})


def recheck_user_sockets(user_or_id: Any, *, using: str | None = None) -> None:
    """Synchronous :func:`arecheck_user_sockets`, sent once the transaction of ``using`` (the
    default database) commits, or at once outside one."""
    user_id = user_pk(user_or_id)
    transaction.on_commit(lambda: run_async(_asend, user_id, {"type": events.RECHECK}), using=using)


async def _asend(user_id: Any, event: dict[str, Any]) -> None:
    layer = channel_layer()
    if layer is not None:
        await layer.group_send(user_group(user_id), event)


def send_revoke_event(user_id: Any, event: dict[str, Any]) -> None:
    """Sync: send an event built by :func:`revoke_event` (for the signal receivers)."""
    run_async(_asend, user_id, event)
