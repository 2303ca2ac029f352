"""How big a notification is on the wire, so that no frame carrying one is over ``MAX_SEND_SIZE``.

notify() refuses a notification whose push would not fit (:func:`check_new`), before storing it. A
row stored another way (``save()``, ``update()``, or a ``MAX_SEND_SIZE`` lowered since) can still be
too large: its push is dropped, logged and counted (:func:`wsgateway.groups.push_many`), and a page
carries it trimmed (:func:`trimmed`), so that the client's cursor still moves past it and no page
is ever empty while more remain.
"""

from __future__ import annotations

import logging
from typing import Any

from django.utils import timezone

from .. import frames
from ..conf import gateway_settings
from ..exceptions import FrameTooLarge
from ..models import Notification
from .pushing import CHANNEL, push_payload

#: Bytes a list or sync reply, or a resync's connect frame, puts around its notifications beyond what
#: a push puts around one: the request's id (128 characters, escaped up to 6 bytes each),
#: "has_more", "seq", the unread count and the category.
PAGE_MARGIN = 1024

#: Characters of the label a trimmed notification keeps.
TRIMMED_LABEL = 1000

#: The largest id, seq and unread count a notification's frame may carry (a PositiveBigIntegerField's).
_LARGEST = 2**63 - 1

#: The counts a push carries, at their longest.
_LARGEST_STATE = {
    "unread": _LARGEST,
    "counts": {"unread": _LARGEST, "unseen": _LARGEST, "archived": _LARGEST, "badge": _LARGEST},
}

logger = logging.getLogger("wsgateway")


def budget() -> int:
    """Bytes of notifications (each as JSON, and a comma) that one frame may carry."""
    return gateway_settings.MAX_SEND_SIZE - PAGE_MARGIN


def check_new(prototype: Notification) -> None:
    """Raise :class:`FrameTooLarge` unless ``prototype``, unsaved, fits any page and any push.

    One encoding for every recipient: the recipient is not on the wire, and the id, seq and count
    are measured at their longest.
    """
    prototype.pk = prototype.seq = prototype.version = _LARGEST
    prototype.created = prototype.changed = timezone.now()
    size = frames.size(frames.data(CHANNEL, push_payload(prototype, _LARGEST_STATE))) + PAGE_MARGIN
    if size > (limit := gateway_settings.MAX_SEND_SIZE):
        raise FrameTooLarge("The notification, in a page of one,", size, limit)


def page(items: list[dict[str, Any]], limit: int) -> tuple[list[dict[str, Any]], bool]:
    """The first of ``items`` (wire forms, up to ``limit + 1`` read) that one frame can carry, and
    whether more remain: at most ``limit``, cut short by bytes, an item too large for any frame
    trimmed, and never none while any remain."""
    kept, has_more = items[:limit], len(items) > limit
    full = budget()
    if frames.size(frames.encode({"notifications": kept})) <= full:  # one encoding, the common case
        return kept, has_more
    room = full
    fitted: list[dict[str, Any]] = []
    for item in kept:
        cost = frames.size(frames.encode(item)) + 1
        if cost > full:
            item = trimmed(item)
            cost = frames.size(frames.encode(item)) + 1
        if cost > room and fitted:
            return fitted, True
        fitted.append(item)
        room -= cost
    return fitted, has_more


def trimmed(item: dict[str, Any]) -> dict[str, Any]:
    """What a page carries of a notification too large for any frame: no data, no actions, the label
    cut, and ``"trimmed": true``."""
    logger.warning(
        "wsgateway: notification %s is too large for a frame; its page carries it trimmed", item["id"]
    )
    return {**item, "label": item["label"][:TRIMMED_LABEL], "data": {}, "actions": [], "trimmed": True}
