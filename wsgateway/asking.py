"""Requests to a client: the server asks one socket, or every socket of a user, and waits for the answer.

``ask``/``aask``, not ``request``: ``request`` is every Django view's first argument.

How a request travels (docs/protocol.md, "Requests from the server"). The requester makes a reply
channel (``new_channel``), encodes the frame once, and sends one layer event,
:data:`~wsgateway.events.REQUEST`, to the user's group or to the one socket; the event carries the
request's id, the reply channel and a deadline on the wall clock (the processes share no other
clock). Each socket that takes it sends the frame to its client and holds it (wsgateway.answering);
the client's answer, its
error answer, or the socket's "dropped" (it closed, it held too many, the frame was too big for it)
goes back to the reply channel, tagged with the socket's channel name. For a user, the first answer
wins, and the user's other sockets are told :data:`~wsgateway.events.REQUEST_CANCEL`, which they
pass on to their client; an error answer wins only when no socket answers otherwise.

What nobody waits for any more is forgotten: a socket's entries at their deadline (checked as a
request is added and as a client frame comes, so a socket that holds none costs nothing), on the
answer, on a cancel, and on the close. A reply that reaches a reply channel after its requester gave
up (a second tab's answer racing the cancel) is never read: the requester has its inbox dropped as it
returns (the ``forget_channel`` extension of wsgateway's layers), and what comes later expires after
the layer's ``expiry`` (60 s) and is dropped in its next sweep (see wsgateway.layers.base.LocalDelivery).
On another layer the reply channel is left to that layer's own expiry.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import secrets
import time
from typing import Any

from channels.exceptions import ChannelFull
from django.core.exceptions import ImproperlyConfigured

from . import connections, events, frames
from .bridge import require_sync, run_async
from .conf import gateway_settings
from .exceptions import FrameTooLarge, RequestDropped, RequestRejected, RequestTimeout
from .groups import channel_layer, user_group, user_pk
from .layers.extensions import FORGET_CHANNEL, is_process_local, supports

logger = logging.getLogger("wsgateway")

DEFAULT_TIMEOUT = 10.0


class Dropped(enum.StrEnum):
    """Why a socket did not pass a request on (the ``code`` of :class:`RequestDropped`)."""

    #: The user had no socket open when the request was made.
    NO_SOCKET = "no_socket"
    #: The socket closed, before or after it sent the request to its client.
    CLOSED = "closed"
    #: The socket held ``MAX_PENDING_REQUESTS`` unanswered already.
    BUSY = "busy"
    #: The frame is over the ``MAX_SEND_SIZE`` this socket connected with.
    TOO_LARGE = "too_large"


_DROPPED_MESSAGES = {
    Dropped.NO_SOCKET: "The user has no socket open.",
    Dropped.CLOSED: "Every socket that had the request closed before answering.",
    Dropped.BUSY: "The socket holds MAX_PENDING_REQUESTS unanswered requests already.",
    Dropped.TOO_LARGE: "The request is over the socket's MAX_SEND_SIZE.",
}


# -- the requester's side ----------------------------------------------------------------


# The timeout is the request's own, carried to the sockets as its deadline: not a caller's asyncio.timeout.
async def aask(
    target: Any,
    channel: str,
    payload: Any,
    *,
    timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109
) -> Any:
    """Send ``payload`` as a request on ``channel`` and return the client's answer (its payload).

    ``target``: a user (an instance, or a primary key that is not a ``str``): every socket of theirs,
    on every process; the first to answer wins, and the others are told to drop it. A ``str``: one
    socket's channel name, as ``client_connected`` gives it. ``channel`` is any channel name but
    ``"gateway"``: a service's or the site's own.

    Raises :class:`~wsgateway.exceptions.RequestTimeout` after ``timeout`` seconds (more than 0, at
    most ``MAX_REQUEST_TIMEOUT``, else ValueError) without an answer;
    :class:`~wsgateway.exceptions.RequestRejected` for the client's error answer (for a user: when
    none of their sockets answered otherwise); :class:`~wsgateway.exceptions.RequestDropped` at once
    when no socket can answer (see there); :class:`~wsgateway.exceptions.FrameTooLarge` for a
    request over ``MAX_SEND_SIZE``, before anything is sent.
    """
    _check(channel, timeout)
    request_id = secrets.token_urlsafe(16)
    text = frames.request(channel, payload, request_id)
    if frames.size(text) > (limit := gateway_settings.MAX_SEND_SIZE):
        raise FrameTooLarge(f"A request on channel {channel!r}", frames.size(text), limit)
    layer = channel_layer()
    if layer is None:
        raise ImproperlyConfigured("wsgateway needs a channel layer (see check wsgateway.E006).")
    deadline = time.time() + timeout
    group: str | None = None
    # The sockets that may answer, when the layer can say: each that reports "dropped" is one less,
    # and none left fails the request at once instead of at its timeout.
    expected: set[str] | None
    if isinstance(target, str):
        expected = {target}
    else:
        user_id = user_pk(target)
        group = user_group(user_id)
        expected = None
        if connections.counted_by_layer(layer) or is_process_local(layer):
            expected = set(await connections.user_sockets(layer, str(user_id)))
            if not expected:
                raise _dropped(Dropped.NO_SOCKET)
    reply_to = await layer.new_channel()
    event = {
        "type": events.REQUEST,
        "request": request_id,
        "channel": channel,
        "text": text,
        "reply_to": reply_to,
        "deadline": deadline,
    }
    try:
        if group is not None:
            await layer.group_send(group, event)
        else:
            await layer.send(target, event)
    except ChannelFull:
        raise _dropped(Dropped.BUSY) from None
    try:
        async with asyncio.timeout(timeout):
            return await _first_answer(layer, reply_to, request_id, expected, group)
    except TimeoutError:
        await _cancel(layer, request_id, group, target)
        raise RequestTimeout("timeout", f"No answer within {timeout:g} s.") from None
    finally:
        # Now, not at the layer's next sweep: a process that asks a thousand times a second would
        # otherwise hold a minute's worth of empty inboxes.
        if supports(layer, FORGET_CHANNEL):
            layer.forget_channel(reply_to)


def ask(target: Any, channel: str, payload: Any, *, timeout: float = DEFAULT_TIMEOUT) -> Any:
    """Synchronous :func:`aask`, for views, signal handlers and workers.

    It holds its thread until the answer comes: in an ASGI site's sync view that is the thread the
    other sync views share. Prefer ``await aask(...)`` in an async view.
    """
    require_sync("ask() is for sync code; await aask() in async code")
    layer = channel_layer()
    loop = getattr(layer, "members_loop", None)
    if is_process_local(layer) and loop is not None and loop.is_running():
        # The in-process layer's inboxes belong to the loop of its sockets: wait for the answer there.
        return asyncio.run_coroutine_threadsafe(
            aask(target, channel, payload, timeout=timeout), loop
        ).result()
    return run_async(aask, target, channel, payload, timeout=timeout)


def _check(channel: str, timeout: float) -> None:
    if not isinstance(channel, str) or not channel or channel == frames.GATEWAY_CHANNEL:
        raise ValueError(f"A request's channel is a non-empty string other than 'gateway', not {channel!r}.")
    most = gateway_settings.MAX_REQUEST_TIMEOUT
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= most:
        raise ValueError(
            f"timeout is a number of seconds over 0 and at most {most} (MAX_REQUEST_TIMEOUT), "
            f"not {timeout!r}."
        )


async def _first_answer(
    layer: Any, reply_to: str, request_id: str, expected: set[str] | None, group: str | None
) -> Any:
    """Read the reply channel until an answer wins, or no socket that may answer is left."""
    done: set[str] = set()
    error: list[str] | None = None
    reasons: list[str] = []
    while True:
        message = await layer.receive(reply_to)
        if message.get("type") != events.REPLY or message.get("request") != request_id:
            continue
        socket = message.get("socket")
        if "payload" in message:
            if group is not None and (expected is None or expected - done - {socket}):
                await _cancel(layer, request_id, group, None)
            return message["payload"]
        done.add(socket)
        if "error" in message:
            # Not yet: another socket of the user may have a handler (a tab with no handler for it
            # answers unknown_action at once, before a tab that asks a person).
            error = error or message["error"]
        else:
            reasons.append(message.get("dropped", Dropped.CLOSED))
        if expected is not None and expected <= done:
            if error is not None:
                raise RequestRejected(str(error[0]), str(error[1]))
            raise _dropped(Dropped(reasons[0]))


async def _cancel(layer: Any, request_id: str, group: str | None, socket: str | None) -> None:
    """Tell the sockets still holding the request to drop it (and their clients); best effort: a
    socket that misses it forgets the request at its deadline."""
    event = {"type": events.REQUEST_CANCEL, "request": request_id}
    try:
        if group is not None:
            await layer.group_send(group, event)
        elif socket is not None:
            await layer.send(socket, event)
    except Exception as exc:
        logger.info("wsgateway: could not cancel request %s: %r", request_id, exc)


def _dropped(reason: Dropped) -> RequestDropped:
    return RequestDropped(str(reason), _DROPPED_MESSAGES[reason])
