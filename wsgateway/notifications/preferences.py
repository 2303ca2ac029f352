"""Each user's choice of which kinds reach them on which channel, and how often a digest.

Stored sparsely (:class:`~wsgateway.models.NotificationPreferences`: only what the user chose), read
for a whole notify() chunk in one query, and always against the kinds as the site declares them now:
a channel the kind no longer uses is off, a kind now required is on, whatever was stored.

A change (:func:`parse`, then :func:`apply`) is checked whole before anything is stored, and pushed
to every socket of the user once it commits (``{"preferences": ...}`` on the notifications channel),
so that a preferences page open in another tab follows it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from django.db import router, transaction
from django.utils.translation import gettext

from .. import metrics, repairs
from ..codes import ErrorCode
from ..groups import push
from ..locks import user_push_lock
from ..models import Digest, NotificationPreferences
from . import kinds
from .kinds import CHANNELS, EMAIL, INAPP, Kind
from .pushing import CHANNEL

#: Most choices one change can carry: every box of the page at once (each kind on each channel). Not
#: a check of its own: a kind is a key, and a channel a key within it, so each occurs once, and each
#: is checked against the kinds declared (at most ``kinds.MAX_KINDS``).
MAX_CHANGES = kinds.MAX_KINDS * len(CHANNELS)
#: The key of the push that carries a user's preferences on the notifications channel.
PUSH_KEY = "preferences"
logger = logging.getLogger("wsgateway")


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


class Refused(ValueError):
    """A change that cannot be made, and nothing of it was stored; ``code`` says why, for code
    (``unknown_kind``, ``unknown_channel``, ``required_kind`` or ``invalid_data``)."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Changes:
    """One change of a user's preferences, checked: the choices to store (kind to channel to on/off)
    and the digest (None: left as it is)."""

    choices: dict[str, dict[str, bool]] = field(default_factory=dict)
    digest: str | None = None

    def __len__(self) -> int:
        return sum(len(channels) for channels in self.choices.values())


def parse(data: Any) -> Changes:
    """Check ``{"choices": {kind: {channel: true/false}}, "digest": "off" | "daily" | "weekly"}``,
    both keys optional, against the kinds as declared now; :class:`Refused` for the first thing wrong.

    Every choice is checked before any is kept, so that a change is made whole or not at all. A
    required kind may be chosen on (what it is anyway), never off.
    """
    if not isinstance(data, Mapping) or not data.keys() <= {"choices", "digest"}:
        raise Refused(ErrorCode.INVALID_DATA, gettext('A change is {"choices": {...}, "digest": ...}.'))
    choices = data.get("choices", {})
    if not isinstance(choices, Mapping):
        raise Refused(ErrorCode.INVALID_DATA, gettext("The choices are an object of kinds."))
    checked: dict[str, dict[str, bool]] = {}
    for name, channels in choices.items():
        kind = _declared_kind(name)
        if not isinstance(channels, Mapping):
            raise Refused(ErrorCode.INVALID_DATA, gettext("A kind's choices are an object of channels."))
        checked[name] = {channel: _checked_choice(kind, channel, on) for channel, on in channels.items()}
    digest = data.get("digest")
    if digest is not None and digest not in Digest.values:
        raise Refused(
            ErrorCode.INVALID_DATA,
            gettext("The digest is one of %(values)s.") % {"values": ", ".join(Digest.values)},
        )
    return Changes({name: channels for name, channels in checked.items() if channels}, digest)


def _declared_kind(name: Any) -> Kind:
    kind = kinds.declared().get(name) if isinstance(name, str) else None
    if kind is None:
        raise Refused(ErrorCode.UNKNOWN_KIND, gettext("There is no kind %(kind)r.") % {"kind": name})
    return kind


def _checked_choice(kind: Kind, channel: Any, on: Any) -> bool:
    if not isinstance(channel, str) or not kind.allows(channel):
        raise Refused(
            ErrorCode.UNKNOWN_CHANNEL,
            gettext("Kind %(kind)r has no channel %(channel)r.") % {"kind": kind.name, "channel": channel},
        )
    if not isinstance(on, bool):
        raise Refused(ErrorCode.INVALID_DATA, gettext("A choice is true or false."))
    if kind.required and not on:
        raise Refused(
            ErrorCode.REQUIRED_KIND,
            gettext("Kind %(kind)r is required: it cannot be turned off.") % {"kind": kind.name},
        )
    return on


def apply(user: Any, changes: Changes) -> dict[str, Any]:
    """Store ``changes`` for ``user`` in one transaction, and push the new preferences to every socket
    of the user once it commits; returns them (:func:`state`). No change: nothing stored or pushed."""
    user_id = _pk(user)
    using = router.db_for_write(NotificationPreferences)
    if not changes.choices and changes.digest is None:
        return state(user_id, using)
    with transaction.atomic(using=using):
        # Locked, so that two changes at once (two tabs) each add to what the other stored.
        row, _ = (
            NotificationPreferences.objects.using(using).select_for_update().get_or_create(user_id=user_id)
        )
        for name, channels in changes.choices.items():
            stored = row.choices.get(name)
            row.choices[name] = {**(stored if isinstance(stored, dict) else {}), **channels}
        if changes.digest is not None:
            row.digest = changes.digest
        row.save(using=using, update_fields=["choices", "digest", "changed"])
        transaction.on_commit(partial(push_state, user_id, using), using=using)
        return _state(row.choices, row.digest)


def set_choice(user: Any, kind_name: str, channel: str, on: bool) -> None:
    """Store one choice of ``user``: :class:`Refused` (a ValueError) for a kind the site does not
    declare, a channel the kind does not use, or turning off a required kind; nothing is stored then."""
    apply(user, parse({"choices": {kind_name: {channel: bool(on)}}}))


def state(user: Any, using: str | None = None) -> dict[str, Any]:
    """What the page shows and the API answers: every declared kind with each of its channels' state
    for ``user`` now, and the user's digest (one query)."""
    query = NotificationPreferences.objects.using(using) if using else NotificationPreferences.objects
    row = query.filter(user_id=_pk(user)).values_list("choices", "digest").first()
    return _state(*(row or ({}, Digest.OFF)))


def _state(choices: dict[str, Any], digest: str) -> dict[str, Any]:
    return {
        "channels": list(CHANNELS),
        "kinds": [
            {
                "name": kind.name,
                "label": str(kind.label),
                "description": str(kind.description),
                "required": kind.required,
                # Only the channels the kind uses: a page shows no box for the others.
                "channels": {channel: effective(kind, channel, choices) for channel in kind.channels},
            }
            for kind in kinds.declared().values()
        ],
        "digest": digest,
    }


def push_state(user_id: Any, using: str | None = None) -> None:
    """Push ``user_id``'s preferences to every socket of the user: read and sent under the user's push
    lock, so that of two changes at once the later state is the one pushed last.

    A channel-layer failure is logged, not raised: the change is stored, and a page reads it on load.
    """
    with user_push_lock(user_id):
        try:
            push([user_id], CHANNEL, {PUSH_KEY: state(user_id, using)})
        except Exception as exc:
            metrics.increment(metrics.PUSH_FAILED)
            logger.warning("wsgateway: preferences of user %s stored but not pushed: %s", user_id, exc)
            repairs.push_failed([user_id])  # a catch-up sends the preferences' connect frame again
