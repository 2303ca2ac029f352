"""To every socket at once: a frame (:func:`broadcast`), or a close (:func:`close_sockets`).

Every socket joins one group besides its user's, :func:`~wsgateway.groups.all_group`, so that either
is one ``group_send`` whatever the number of sockets, users or processes: one PUBLISH on wsgateway's
Redis layer, one on channels_redis' (its core layer then writes the event once per member's queue).
On wsgateway's layers each process hands it to its sockets a chunk a turn of the loop
(wsgateway.layers.fanout): a push that reaches the process meanwhile is not held back behind it, and
so may reach a socket before it.
"""

from __future__ import annotations

from typing import Any, Unpack

from django.utils.functional import Promise
from django.utils.translation import gettext_noop

from . import metrics
from .bounds import MAX_RETRY_AFTER
from .bridge import require_sync
from .codes import CloseCode, ErrorCode
from .groups import all_group, asend_to_groups, push_event, send_to_groups, user_group, user_pk
from .revocation import CloseOptions, revoke_event

__all__ = ["CloseSocketsOptions", "abroadcast", "aclose_sockets", "broadcast", "close_sockets"]

#: Sent in English through the layer, translated by each socket (see revocation.revoke_event); it is
#: also the close frame's reason, so it stays under the 123 bytes a close frame holds.
DEFAULT_CLOSE_REASON = gettext_noop("The server closed the connection; reconnect.")


async def abroadcast(channel: str, payload: Any, *, exclude: str | None = None) -> None:
    """Send ``payload`` on ``channel`` to every socket that serves ``channel``, on every process.

    One layer call, whatever the number of sockets. The frame is a push without ``seq``, nothing is
    stored: a socket that is not connected now never gets it, and a reconnect does not bring it.
    For a message every user must get, notify each user. ``exclude``: the channel name of a socket
    that should not get it (the sender's). A frame over ``MAX_SEND_SIZE`` raises
    :class:`~wsgateway.exceptions.FrameTooLarge` before anything is sent.
    """
    event = push_event(channel, payload, exclude=exclude)
    metrics.increment(metrics.BROADCASTS)
    await asend_to_groups([(all_group(), event)])


def broadcast(channel: str, payload: Any, *, exclude: str | None = None) -> None:
    """Synchronous :func:`abroadcast`, for views, signal handlers and workers."""
    require_sync("broadcast() is for sync code; await abroadcast() in async code")
    event = push_event(channel, payload, exclude=exclude)
    metrics.increment(metrics.BROADCASTS)
    send_to_groups([(all_group(), event)])


def valid_retry_after(retry_after: object) -> int:
    """``retry_after`` if it is an integer from 1 to :data:`~wsgateway.bounds.MAX_RETRY_AFTER` (seconds a
    closed or refused client waits before it reconnects), else ``ValueError``; for a close and a
    maintenance alike."""
    if type(retry_after) is not int or not 1 <= retry_after <= MAX_RETRY_AFTER:
        raise ValueError(f"retry_after must be an integer from 1 to {MAX_RETRY_AFTER}, not {retry_after!r}")
    return retry_after


class CloseSocketsOptions(CloseOptions, total=False):
    """How :func:`close_sockets` and :func:`aclose_sockets` close; the defaults are
    :func:`close_event`'s."""

    retry_after: int | None


def close_event(
    *,
    code: int = CloseCode.RECONNECT,
    reason: str | Promise = DEFAULT_CLOSE_REASON,
    error: str = ErrorCode.CLOSING,
    retry_after: int | None = None,
) -> dict[str, Any]:
    """The revocation's event, matching every socket, with ``reason`` in the close frame too."""
    details = None if retry_after is None else {"retry_after": valid_retry_after(retry_after)}
    return revoke_event(error=error, reason=reason, code=code, reason_in_close=True, details=details)


async def aclose_sockets(user: Any = None, **options: Unpack[CloseSocketsOptions]) -> None:
    """Close ``user``'s sockets (a user or a primary key), or with no user every socket, on every process.

    Each sends ``{"channel": "gateway", "error": {"code": error, "message": reason}}``, ``reason``
    translated into the socket's language (as :func:`~wsgateway.revocation.aclose_user_sockets`
    does), then closes with ``code`` and ``reason`` (cut to the 123 bytes a close frame holds).
    ``code``: 1000 or 3000-4999, else ``ValueError``; 4001 by default, "reconnect", which
    wsgateway.js does within half a second (its first backoff), jittered so that a thousand tabs do not
    come back in the same instant. ``reason``: "The server closed the connection; reconnect." by
    default. ``error``: ``closing`` by default. ``retry_after`` (seconds, 1 to 3600): the error frame
    says when to come back, and wsgateway.js waits that long (as after a maintenance refusal) instead of
    its backoff. For a login that ended, use ``close_user_sockets()`` (4401: the client stays closed
    until the user logs in again).
    """
    await asend_to_groups([(_group_of(user), close_event(**options))])


def close_sockets(user: Any = None, **options: Unpack[CloseSocketsOptions]) -> None:
    """Synchronous :func:`aclose_sockets`, for views, management commands and workers."""
    require_sync("close_sockets() is for sync code; await aclose_sockets() in async code")
    send_to_groups([(_group_of(user), close_event(**options))])


def _group_of(user: Any) -> str:
    return all_group() if user is None else user_group(user_pk(user))
