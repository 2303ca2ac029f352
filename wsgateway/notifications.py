"""Sending notifications from Python code: views, signal handlers, workers."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from channels.db import database_sync_to_async
from django.db import transaction

from .models import Notification, category_level


def _recipients(user_or_users: Any) -> list[Any]:
    # A user (even one behind request.user's lazy proxy, which is iterable) has a pk.
    if hasattr(user_or_users, "pk") or not isinstance(user_or_users, Iterable):
        return [user_or_users]
    return list(user_or_users)


def notify(
    user_or_users: Any,
    message: str,
    *,
    category: int | str = "info",
    data: dict[str, Any] | None = None,
    actions: Sequence[dict[str, str]] | None = None,
    sender: Any = None,
) -> list[Notification]:
    """Store a notification for each user and push it live once the transaction commits.

    ``category`` is a django.contrib.messages level or its tag ("success").
    ``actions`` is a list of ``{"label", "url"}``. ``sender`` becomes ``created_by``.
    """
    level = category_level(category)
    action_list = [_action(item) for item in actions or ()]
    with transaction.atomic():
        # One save per recipient so that post_save (and so the push) fires for each.
        return [
            Notification.objects.create(
                recipient=user,
                category=level,
                message=str(message),
                data=dict(data or {}),
                actions=action_list,
                created_by=sender,
                changed_by=sender,
            )
            for user in _recipients(user_or_users)
        ]


async def anotify(user_or_users: Any, message: str, **kwargs: Any) -> list[Notification]:
    """:func:`notify` for async code."""
    return await database_sync_to_async(notify)(user_or_users, message, **kwargs)


def _action(item: Any) -> dict[str, str]:
    if not isinstance(item, dict) or not {"label", "url"} <= item.keys():
        raise ValueError(f'An action is {{"label": ..., "url": ...}}, not {item!r}.')
    return {"label": str(item["label"]), "url": str(item["url"])}
