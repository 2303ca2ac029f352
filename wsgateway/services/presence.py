"""The "presence" channel: green dots. A socket watches a few users, is told at once whether each is
online, then told of each change, from whichever process sees it.

Opt-in: a site adds :class:`PresenceService` to ``SERVICES``. Who may watch whom is the site's
``PRESENCE_VISIBLE`` (by default staff see everyone, and anyone else only themselves: being online is
personal data, and a site decides who may see it).

Across processes: ``user_online`` and ``user_offline`` (wsgateway.presence) are each sent once, by one
process; the receivers here send a push from that process to the group of the user's watchers,
``<GROUP_PREFIX>.here.<id>``, which each watching socket joined through its membership
(wsgateway.membership), and which that membership renews, re-joins after an outage and leaves at the
socket's end.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from channels.db import database_sync_to_async
from channels.layers import BaseChannelLayer
from django.utils.module_loading import import_string
from django.utils.translation import gettext, pgettext

from .. import metrics, presence
from ..codes import ErrorCode
from ..conf import gateway_settings, import_from_setting
from ..exceptions import GatewayError, InvalidData
from ..groups import asend_to_groups, push_event
from ..membership import Membership
from ..signals import user_offline, user_online
from .base import ActionService, Connection, service_classes

logger = logging.getLogger("wsgateway")

CHANNEL = "presence"

#: Most users one socket watches at once. A page shows a few dozen dots; each watched user is one
#: group membership to renew, and one group a process subscribes to on wsgateway's Redis layer.
MAX_WATCHED = 100

#: What a watched id may be: the characters Channels allows in a group name (a primary key as a
#: string: an integer, a UUID, a slug). Its length is bounded by the group name (:func:`valid_id`).
_ID = re.compile(r"[A-Za-z0-9_.\-]+")


def watchers_group(user_id: str) -> str:
    """The group of the sockets that watch ``user_id``. ``.here.`` is as long as ``.user.``: any id
    whose user group fits in a group name (``MAX_GROUP_PREFIX_LENGTH``) fits here too."""
    return f"{gateway_settings.GROUP_PREFIX}.here.{user_id}"


def valid_id(user_id: object) -> bool:
    """Whether ``user_id`` can be watched: a non-empty string that makes a valid group name."""
    return (
        isinstance(user_id, str)
        and len(watchers_group(user_id)) < BaseChannelLayer.MAX_NAME_LENGTH
        and _ID.fullmatch(user_id) is not None
    )


# -- who may watch whom (PRESENCE_VISIBLE) ---------------------------------------------------------


def staff_see_all(user: Any, ids: list[str]) -> list[str]:
    """Default ``PRESENCE_VISIBLE``: staff see everyone; anyone else only themselves (a page's own dot)."""
    if getattr(user, "is_staff", False):
        return ids
    own = str(user.pk)
    return [user_id for user_id in ids if user_id == own]


def all_users(user: Any, ids: list[str]) -> list[str]:
    """A ``PRESENCE_VISIBLE`` a site may choose: every logged-in user sees everyone, as in a small team's
    chat. Not the default: it tells anyone with an account when everyone else is at their screen."""
    return ids


#: What ``PRESENCE_VISIBLE`` names: (user, ids) -> the ids the user may watch.
Visible = Callable[[Any, list[str]], Iterable[Any]]


def presence_visible() -> Visible:
    """The callable named in ``PRESENCE_VISIBLE``; imported once, until a setting changes."""
    visible: Visible = import_from_setting(gateway_settings.PRESENCE_VISIBLE)
    return visible


def allowed(user: Any, ids: list[str]) -> set[str]:
    """The ids of ``ids`` that ``user`` may watch: what the site's callable returns, never more than asked."""
    return {str(user_id) for user_id in presence_visible()(user, list(ids))} & set(ids)


# -- the part: what one socket watches ----------------------------------------------------------


def parse_users(data: Any, action: str) -> list[str]:
    """The ids of a watch or unwatch, in order, each once; ``invalid_data`` or ``limit_exceeded`` else."""
    users = data.get("users") if isinstance(data, dict) else None
    if not isinstance(users, list) or not all(valid_id(user_id) for user_id in users):
        raise InvalidData(
            pgettext(
                "JSON names of the protocol: kept as they are",
                '%(action)s takes {"users": [...]}, a list of user ids as strings '
                "(letters, digits, '-', '_', '.').",
            )
            % {"action": action}
        )
    if len(users) > MAX_WATCHED:
        raise too_many()
    return list(dict.fromkeys(users))


def too_many() -> GatewayError:
    return GatewayError(
        ErrorCode.LIMIT_EXCEEDED,
        gettext("A socket watches at most %(limit)d users.") % {"limit": MAX_WATCHED},
    )


class Watching:
    """The users one socket watches, at most :data:`MAX_WATCHED`. Watching adds to them (two parts of
    a page, a list and a profile card, each watch their own without knowing of the other); unwatch
    takes some away, or all."""

    __slots__ = ("users",)

    def __init__(self) -> None:
        self.users: dict[str, None] = {}  # ordered, for the resync's frame

    def new(self, ids: Iterable[str]) -> list[str]:
        """Of ``ids``, those not watched yet; ``limit_exceeded`` if watching them too would be too many."""
        new = [user_id for user_id in ids if user_id not in self.users]
        if len(self.users) + len(new) > MAX_WATCHED:
            raise too_many()
        return new

    def add(self, ids: Iterable[str]) -> None:
        self.users.update(dict.fromkeys(ids))

    def remove(self, ids: Iterable[str] | None) -> list[str]:
        """Stop watching ``ids`` (``None``: everyone); those that were watched."""
        gone = list(self.users) if ids is None else [user_id for user_id in ids if user_id in self.users]
        for user_id in gone:
            del self.users[user_id]
        return gone


# -- the service ----------------------------------------------------------------------------


class PresenceConnection(Connection, Protocol):
    membership: Membership | None


class PresenceService(ActionService):
    """``watch`` and ``unwatch``; the connect frame only on a resync, with the watched users' states."""

    __slots__ = ("watching",)

    channel = CHANNEL

    def __init__(self, connection: PresenceConnection) -> None:
        super().__init__(connection)
        self.watching = Watching()

    @property
    def membership(self) -> Membership:
        membership: Membership | None = getattr(self.connection, "membership", None)
        if membership is None:  # the consumer makes it before its services: never so on a socket
            raise RuntimeError("a presence service needs its socket's membership")
        return membership

    async def on_connect(self, user: Any) -> Any:
        # On connect nothing is watched yet: no frame, so that a page that never watches pays nothing.
        # On a resync (wsgateway.consumers.catch_up), the pushes missed during the outage are replaced
        # by the state of every watched user, read after the groups were joined again.
        if not self.watching.users:
            return None
        return {"users": await presence.aonline_among(list(self.watching.users))}

    async def action_watch(self, user: Any, data: Any) -> Any:
        ids = parse_users(data, "watch")
        permitted = await database_sync_to_async(allowed)(user, ids) if ids else set()
        visible = [user_id for user_id in ids if user_id in permitted]
        new = self.watching.new(visible)
        groups = [watchers_group(user_id) for user_id in new]
        # Joined before the states are read: a change between the two is then pushed after this reply
        # (the push waits for the socket's turn), never lost.
        try:
            await self.membership.add(groups)
        except Exception as exc:
            await self.membership.discard(groups)
            logger.warning("wsgateway: a presence watch could not join its groups: %s", exc)
            raise GatewayError(
                ErrorCode.INTERNAL_ERROR, gettext("The server cannot watch users now; try again.")
            ) from None
        self.watching.add(new)
        states = await presence.aonline_among(visible)
        return {"users": states, "refused": [user_id for user_id in ids if user_id not in permitted]}

    async def action_unwatch(self, user: Any, data: Any) -> Any:
        # Without data: everyone. A push already on its way may still come after this reply.
        gone = self.watching.remove(None if data is None else parse_users(data, "unwatch"))
        await self.membership.discard([watchers_group(user_id) for user_id in gone])
        return {"unwatched": gone}

    async def on_disconnect(self, user: Any) -> None:
        # The membership has left every group already (the consumer's undo_connect, before this).
        self.watching.remove(None)


# -- the pushes: from the one process that sends each signal ------------------------------------


def served() -> bool:
    """Whether the site serves the presence channel (else a change is pushed to nobody, and not at all)."""
    return any(issubclass(cls, PresenceService) for cls in service_classes())


async def announce(user_id: str, online: bool) -> None:
    """Push ``{"user", "online"}`` to the sockets that watch ``user_id``, on every process."""
    if not valid_id(user_id) or not served():  # an id no group name can hold has no watchers
        return
    event = push_event(CHANNEL, {"user": user_id, "online": online})
    try:
        await asend_to_groups([(watchers_group(user_id), event)])
    except Exception as exc:  # the layer is down: the watchers' resync reads the states anew
        logger.warning("wsgateway: could not tell the watchers of user %s of a change: %s", user_id, exc)
        return
    metrics.pushed(1)


ONLINE_UID = "wsgateway.presence_channel.online"
OFFLINE_UID = "wsgateway.presence_channel.offline"


async def user_came_online(sender: Any, user_id: str, **kwargs: Any) -> None:
    await announce(user_id, True)


async def user_went_offline(sender: Any, user_id: str, **kwargs: Any) -> None:
    await announce(user_id, False)


def connect_receivers() -> None:
    """The receivers connected while the site serves the channel, and only then: called in
    ``WsGatewayConfig.ready`` and at each change of ``WSGATEWAY`` (:func:`follow_settings`).

    Not connected for nothing: a signal with a receiver costs its sender a gather and three tasks
    (Django's ``asend_robust``), about 16 µs under uvloop, and ``user_online`` is sent at every
    connect of a user's first socket on a process (issue 24's connect path); with none it is a check.
    """
    try:
        # Imported here, not through conf's cache: a change of the setting empties that cache, and
        # this runs at each change (a test's too), which would fill it again at once.
        wanted = any(issubclass(import_string(path), PresenceService) for path in gateway_settings.SERVICES)
    except Exception:
        # SERVICES names what does not import, or is of no shape: the checks say so (wsgateway.E004,
        # E007), not ready() or this receiver of setting_changed; connected, each asks when it runs.
        wanted = True
    if wanted:
        user_online.connect(user_came_online, dispatch_uid=ONLINE_UID)
        user_offline.connect(user_went_offline, dispatch_uid=OFFLINE_UID)
    else:
        user_online.disconnect(dispatch_uid=ONLINE_UID)
        user_offline.disconnect(dispatch_uid=OFFLINE_UID)


def follow_settings(*, setting: str, **kwargs: Any) -> None:
    """Receiver of ``setting_changed``, connected after ``conf.reset_caches`` (whose cache of the
    services' classes it reads through)."""
    if setting == "WSGATEWAY":
        connect_receivers()
