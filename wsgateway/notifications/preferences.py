"""Each user's choice of which kinds reach them on which channel.

Stored sparsely (:class:`~wsgateway.models.NotificationPreferences`: only what the user chose), read
for a whole notify() chunk in one query, and always against the kinds as the site declares them now:
a channel the kind no longer uses is off, a kind now required is on, whatever was stored.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from ..models import NotificationPreferences
from . import kinds
from .kinds import CHANNELS, EMAIL, INAPP, Kind


@dataclass(slots=True)
class Choice:
    """Whom one notify() chunk reaches: the users to store a row for (in-app on), and the ids of
    those whom an e-mail may reach (e-mail on)."""

    inapp: list[Any]
    email: set[Any] = field(default_factory=set)


def _pk(user: Any) -> Any:
    return getattr(user, "pk", user)


def stored_choices(user_ids: Iterable[Any], using: str | None = None) -> dict[Any, dict[str, Any]]:
    """The choices stored for each of ``user_ids`` that has any (one query)."""
    query = NotificationPreferences.objects.using(using) if using else NotificationPreferences.objects
    return dict(query.filter(user_id__in=list(user_ids)).values_list("user_id", "choices"))


def effective(kind: Kind, channel: str, choices: dict[str, Any] | None) -> bool:
    """Whether ``kind`` reaches a user with ``choices`` on ``channel``."""
    if not kind.allows(channel):
        return False
    if kind.required:
        return True
    chosen = (choices or {}).get(kind.name, {})
    value = chosen.get(channel) if isinstance(chosen, dict) else None
    return value if isinstance(value, bool) else kind.default_for(channel)


def allows(user: Any, kind: Kind, channel: str, using: str | None = None) -> bool:
    """Whether ``kind`` reaches ``user`` on ``channel`` now (one query)."""
    if kind is kinds.NO_KIND or kind.required:
        return kind.allows(channel)
    return effective(kind, channel, stored_choices([_pk(user)], using).get(_pk(user)))


def choose(kind: Kind, users: list[Any], using: str) -> Choice:
    """Split one notify() chunk by its users' choices for ``kind`` (one query, none for a kind that
    cannot be turned off)."""
    if kind.required:
        email = {_pk(user) for user in users} if kind.allows(EMAIL) else set()
        return Choice(inapp=list(users), email=email)
    stored = stored_choices({_pk(user) for user in users}, using)
    return Choice(
        inapp=[user for user in users if effective(kind, INAPP, stored.get(_pk(user)))],
        email={_pk(user) for user in users if effective(kind, EMAIL, stored.get(_pk(user)))},
    )


def set_choice(user: Any, kind_name: str, channel: str, on: bool) -> None:
    """Store one choice of ``user``: ValueError for a kind the site does not declare, a channel the
    kind does not use, or turning off a required kind; nothing is stored then."""
    kind = kinds.get(kind_name)
    if kind is kinds.NO_KIND or channel not in CHANNELS or not kind.allows(channel):
        raise ValueError(f"Kind {kind_name!r} has no channel {channel!r}")
    if kind.required and not on:
        raise ValueError(f"Kind {kind_name!r} is required: it cannot be turned off")
    with transaction.atomic():
        row, _ = NotificationPreferences.objects.select_for_update().get_or_create(user_id=_pk(user))
        row.choices.setdefault(kind_name, {})[channel] = bool(on)
        row.save(update_fields=["choices", "changed"])
