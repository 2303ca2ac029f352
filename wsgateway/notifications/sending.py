"""Sending notifications from Python code: views, signal handlers, workers."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from itertools import islice
from typing import Any
from urllib.parse import urlsplit

from channels.db import database_sync_to_async
from django.db import router, transaction
from django.db.models import QuerySet

from ..models import Notification, category_level
from . import fallback, grouping, kinds, preferences, sizes
from .delivery import after_bulk_insert

#: Rows per INSERT, so a site-wide announcement never builds one huge statement.
BATCH_SIZE = 1000


def _recipients(user_or_users: Any) -> Iterable[Any]:
    # A user (even one behind request.user's lazy proxy, which is iterable) has a pk.
    if hasattr(user_or_users, "pk") or not isinstance(user_or_users, Iterable):
        return [user_or_users]
    if isinstance(user_or_users, QuerySet):
        return user_or_users.iterator(chunk_size=BATCH_SIZE)
    return user_or_users


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def notify(
    user_or_users: Any,
    message: str,
    *,
    category: int | str = "info",
    kind: str = "",
    group: str = "",
    data: dict[str, Any] | None = None,
    actions: Sequence[dict[str, str]] | None = None,
    sender: Any = None,
    expires_at: datetime | None = None,
    email_after: int | fallback.Unset | None = fallback.UNSET,
    email_if_offline: bool | fallback.Unset = fallback.UNSET,
) -> list[Notification]:
    """Store a notification for each user and push it live once the transaction commits.

    ``category`` is a django.contrib.messages level or its tag ("success"). ``data`` that the protocol
    cannot write (NaN, an arbitrary object) raises :class:`wsgateway.frames.NotJSON`, a ValueError,
    and nothing is stored.
    ``actions`` is a list of ``{"label", "url"}``; a ``url`` is ``http(s)`` or relative, else
    ValueError and nothing is stored. ``sender`` becomes ``created_by``. A notification whose push,
    or a page holding it, would be a frame over ``MAX_SEND_SIZE`` raises
    :class:`wsgateway.exceptions.FrameTooLarge`, a ValueError, and nothing is stored.
    ``expires_at`` (an aware datetime): hidden from the user after it, and pruned.

    ``kind`` names one of ``WSGATEWAY["NOTIFICATION_KINDS"]`` (else ValueError): a user who turned the
    kind off in-app gets no row. ``group``: while the user has an unread notification of that group,
    this one updates it (its text, count and actors) instead of adding a row. ``email_after`` (seconds)
    and ``email_if_offline`` override the kind's e-mail fallback for this call. docs/away.md.
    Returns the rows stored, created or updated.
    """
    # What every recipient's row holds (the same data and actions objects for all), checked in this order.
    of_kind = kinds.get(kind)
    fields: dict[str, Any] = {
        "kind": of_kind.name,
        "group": grouping.checked(group),
        "category": category_level(category),
        "actions": [_action(item) for item in actions or ()],
        "data": dict(data or {}),
        "message": str(message),
        "created_by": sender,
        "changed_by": sender,
        "expires_at": expires_at,
    }
    # Refused before anything is stored: a row whose push cannot be written, or sent, would never
    # arrive. One encoding, of the frame itself (NotJSON or FrameTooLarge).
    sizes.check_new(Notification(**fields))
    email = fallback.plan(of_kind, email_after, email_if_offline)
    stored: list[Notification] = []
    using = router.db_for_write(Notification)
    with transaction.atomic(using=using):
        for chunk in _chunks(_recipients(user_or_users), BATCH_SIZE):
            chosen = preferences.choose(of_kind, chunk, using)
            if fields["group"]:
                batch = grouping.add(chosen.inapp, fields, using)
            else:
                batch = Notification.objects.using(using).bulk_create(
                    [Notification(recipient=user, **fields) for user in chosen.inapp]
                )
                after_bulk_insert(batch, using)
            fallback.schedule(email, batch, chosen, fields, using)
            stored.extend(batch)
    return stored


async def anotify(user_or_users: Any, message: str, **kwargs: Any) -> list[Notification]:
    """:func:`notify` for async code."""
    created: list[Notification] = await database_sync_to_async(notify)(user_or_users, message, **kwargs)
    return created


def _action(item: Any) -> dict[str, str]:
    if not isinstance(item, dict) or not {"label", "url"} <= item.keys():
        raise ValueError(f'An action is {{"label": ..., "url": ...}}, not {item!r}.')
    url = str(item["url"])
    if not safe_url(url):
        raise ValueError(f"An action's url is http(s) or relative, not {url!r}.")
    return {"label": str(item["label"]), "url": url}


def safe_url(url: str) -> bool:
    """Whether a page may put ``url`` in a link: ``http``, ``https``, or relative to the page.

    Not ``javascript:``, ``data:`` or any other scheme that runs or renders something of its
    own when clicked. Browsers drop tabs and newlines anywhere in a URL and control characters
    and spaces at its ends (``"java\\tscript:"`` is ``javascript:``): a URL with any of them is
    refused rather than parsed differently here and there.
    """
    if url != url.strip(" ") or any(ord(char) < 0x20 or ord(char) == 0x7F for char in url):
        return False
    try:
        scheme = urlsplit(url).scheme
    except ValueError:  # an unbalanced "[" in the host
        return False
    return scheme in ("", "http", "https")
