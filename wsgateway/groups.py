"""Per-user channel-layer groups and the one way wsgateway pushes frames to them."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any, NamedTuple

from channels.layers import BaseChannelLayer, get_channel_layer

from . import events, frames, metrics
from .bridge import require_sync, run_async
from .conf import gateway_settings
from .exceptions import FrameTooLarge
from .layers.extensions import GROUP_SEND_MANY, GROUP_SEND_MANY_SYNC, NODES, is_process_local, supports

logger = logging.getLogger("wsgateway")

#: The group health probes go through (wsgateway.health; one per node of a layer spread over several):
#: no socket joins it, and a probe that only publishes (manage.py notify) sends to it.
PROBE_GROUP = "wsgateway.health"


def user_pk(user_or_pk: Any) -> Any:
    """The primary key of ``user_or_pk``: a user (anything with a ``pk``), or a primary key already."""
    return getattr(user_or_pk, "pk", user_or_pk)


def user_group(user_id: Any) -> str:
    """Name of the group every socket of one user joins."""
    return f"{gateway_settings.GROUP_PREFIX}.user.{user_id}"


def all_group() -> str:
    """Name of the group every socket joins, on every process: one ``group_send`` reaches them all
    (:func:`wsgateway.broadcasts.broadcast`, :func:`wsgateway.broadcasts.close_sockets`).

    Shorter than any :func:`user_group`, so ``MAX_GROUP_PREFIX_LENGTH`` bounds it too; a user whose
    id is ``"all"`` has the group ``<prefix>.user.all``, not this one.
    """
    return f"{gateway_settings.GROUP_PREFIX}.all"


def channel_layer() -> BaseChannelLayer | None:
    return get_channel_layer(gateway_settings.CHANNEL_LAYER)


class Push(NamedTuple):
    """One frame for every socket of one user. ``seq``: the number of what it carries in the
    user's sequence on its channel (a notification's), so that a socket knows what it was sent;
    ``first_seq``: for a frame that carries every number from ``first_seq`` to ``seq`` (a batch of
    changes), the first of them."""

    user_id: Any
    channel: str
    payload: Any
    seq: int | None = None
    first_seq: int | None = None


def push_event(
    channel: str,
    payload: Any,
    *,
    exclude: str | None = None,
    seq: int | None = None,
    first_seq: int | None = None,
) -> dict[str, Any]:
    """The layer event of a push; the frame is encoded here, once, not once per receiving socket.

    ``exclude`` is the channel name of a socket that already has the answer. A frame over
    ``MAX_SEND_SIZE`` raises :class:`~wsgateway.exceptions.FrameTooLarge`: no socket could be sent it.
    """
    text = frames.data(channel, payload)
    if frames.size(text) > (limit := gateway_settings.MAX_SEND_SIZE):
        raise FrameTooLarge(f"A push on channel {channel!r}", frames.size(text), limit)
    # "at": when the push left, for the latency histogram of each socket's send (wsgateway.metrics).
    event: dict[str, Any] = {
        "type": events.PUSH,
        "channel": channel,
        "text": text,
        "exclude": exclude,
        "at": time.time(),
    }
    if seq is not None:
        event["seq"] = seq
        if first_seq is not None and first_seq != seq:
            event["first_seq"] = first_seq
    return event


async def asend_to_groups(items: list[tuple[str, dict[str, Any]]]) -> None:
    """``group_send`` each ``(group, event)``: in one call to a layer with ``group_send_many``
    (wsgateway's, one pipeline to Redis), else one after another (the stock layers)."""
    layer = channel_layer()
    if layer is None or not items:
        return
    if supports(layer, GROUP_SEND_MANY):
        await layer.group_send_many(items)
    else:
        for group, event in items:
            await layer.group_send(group, event)


async def apush(user_ids: Iterable[Any], channel: str, payload: Any, *, exclude: str | None = None) -> None:
    """Send one frame to every socket of each user, on every process sharing the layer."""
    event = push_event(channel, payload, exclude=exclude)
    items = [(user_group(user_id), event) for user_id in user_ids]
    metrics.pushed(len(items))
    metrics.fanned_out(len(items))
    await asend_to_groups(items)


async def apush_many(pushes: Iterable[tuple[Any, ...]]) -> None:
    """Many pushes of different payloads, each a :class:`Push` or a tuple of its fields, in one layer call.

    Each payload is encoded as it is taken: from a generator, no more than one is alive at a time.
    """
    items = _push_items(pushes)
    metrics.pushed(len(items))
    await asend_to_groups(items)


def push(user_ids: Iterable[Any], channel: str, payload: Any, *, exclude: str | None = None) -> None:
    """Synchronous :func:`apush`, for views, signal handlers and workers."""
    event = push_event(channel, payload, exclude=exclude)
    items = [(user_group(user_id), event) for user_id in user_ids]
    metrics.pushed(len(items))
    metrics.fanned_out(len(items))
    send_to_groups(items)


def push_many(pushes: Iterable[tuple[Any, ...]]) -> None:
    """Synchronous :func:`apush_many`."""
    items = _push_items(pushes)
    metrics.pushed(len(items))
    send_to_groups(items)


def _push_items(pushes: Iterable[tuple[Any, ...]]) -> list[tuple[str, dict[str, Any]]]:
    items = []
    for fields in pushes:
        push = Push(*fields)
        try:
            event = push_event(push.channel, push.payload, seq=push.seq, first_seq=push.first_seq)
        except FrameTooLarge as exc:
            # One push among many (rows saved past notify()'s check): the others still go out.
            metrics.increment(metrics.SEND_TOO_LARGE)
            logger.warning("wsgateway: a push to user %s was not sent: %s", push.user_id, exc)
            continue
        items.append((user_group(push.user_id), event))
    return items


def send_to_groups(items: list[tuple[str, dict[str, Any]]]) -> None:
    """:func:`asend_to_groups` from sync code: straight to a layer with ``group_send_many_sync``
    (wsgateway's Redis layer), else through an event loop (:func:`wsgateway.bridge.run_async`)."""
    require_sync("push() is for sync code; await apush() in async code")
    layer = channel_layer()
    if layer is None or not items:
        return
    if supports(layer, GROUP_SEND_MANY_SYNC):
        layer.group_send_many_sync(items)
    else:
        run_async(asend_to_groups, items)


def layer_reaches_other_processes() -> bool:
    """False for the in-process layer, whose groups live in this process alone."""
    layer = channel_layer()
    return layer is not None and not is_process_local(layer)


def layer_is_reachable() -> bool:
    """Probe the layer's backend (from sync code) with a send to a group nobody joins; on a layer
    spread over several nodes, one such group per node: any node down is unreachable."""
    layer = channel_layer()
    if layer is None:
        return False
    groups = layer.node_groups(PROBE_GROUP) if supports(layer, NODES) else [PROBE_GROUP]
    try:
        for group in groups:
            run_async(layer.group_send, group, {"type": events.PROBE})
    except Exception:
        return False
    return True
