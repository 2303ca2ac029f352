"""The service contract, and a base class that routes ``{"action", "data"}`` payloads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Protocol

from django.utils.translation import gettext, pgettext

from .. import frames
from ..codes import ErrorCode
from ..conf import gateway_settings, import_from_setting
from ..exceptions import GatewayError, InvalidData
from ..groups import apush


class Connection(Protocol):
    """What a service may use of the socket it serves."""

    channel_name: str
    scope: dict[str, Any]


class Service:
    """One instance per socket. Subclasses set ``channel`` and override the hooks.

    ``on_connect`` and ``on_message`` return a payload to send (or ``None``);
    raising :class:`~wsgateway.exceptions.GatewayError` answers with an error frame.

    Slotted, as wsgateway's own services are: every socket holds one of each, for its whole life. A
    site's subclass that declares no ``__slots__`` has a ``__dict__`` as usual.
    Weakly referable: a registry of sockets (the snooze clock's) holds them so.
    """

    __slots__ = ("__weakref__", "connection")

    channel: ClassVar[str]

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    async def on_connect(self, user: Any) -> Any:
        """Payload of the frame sent right after connect, or ``None`` for no frame.

        A service that only reads the database should override :meth:`snapshot` instead.
        """
        return None

    def snapshot(self, user: Any) -> Any:
        """Sync alternative to :meth:`on_connect`, run in Channels' database thread.

        The consumer reads the snapshots of all services that override this in
        one trip to that thread: a trip per service made the thread the
        bottleneck of connects. Override this or ``on_connect``, not both.
        """
        return None

    @classmethod
    def snapshots(cls, sockets: Sequence[tuple[Service, Any]]) -> list[Any]:
        """Optional, the set-based form of :meth:`snapshot`: the payloads of many sockets of this
        service (each given as its service and its user), in their order, read together.

        The connects that wait for the database thread together go there in one trip
        (wsgateway.connect_reads); when a trip carries more than one socket of a service that has
        this, it is called instead of each socket's :meth:`snapshot`, so that, say, one
        ``WHERE user_id IN (...)`` answers for all. Each payload must be what that socket's
        :meth:`snapshot` would have read, for its own user (a user may have several sockets in a
        trip). An item may be an exception: that socket's snapshot raised, and only that socket's
        frame is an error. If this raises, each socket's :meth:`snapshot` is read alone. It runs in
        the trip's context, not each socket's: return nothing worded in a socket's language.
        """
        raise NotImplementedError

    @classmethod
    def has_snapshot(cls) -> bool:
        return cls.snapshot is not Service.snapshot

    @classmethod
    def has_snapshots(cls) -> bool:
        return cls.snapshots.__func__ is not Service.snapshots.__func__  # type: ignore[attr-defined]

    async def on_message(self, user: Any, payload: Any) -> Any:
        """Answer one client frame; the return value is sent back with the frame's id."""
        raise GatewayError(
            ErrorCode.UNKNOWN_ACTION,
            gettext("The %(channel)s channel takes no messages.") % {"channel": self.channel},
        )

    async def on_disconnect(self, user: Any) -> None:
        """Called once when an accepted socket closes."""

    def connect_frame_sent(self, payload: Any) -> None:
        """This service's connect frame went to the socket (on connect, and again on a resync)."""

    def push_sent(self, seq: int, first_seq: int | None = None) -> None:
        """A push that carried ``seq`` (and every number from ``first_seq`` to it, if given; see
        :class:`wsgateway.groups.Push`) went to the socket."""

    async def push_to_user(self, user: Any, payload: Any, *, include_self: bool = False) -> None:
        """Send ``payload`` on this channel to the user's sockets on every process."""
        exclude = None if include_self else self.connection.channel_name
        await apush([user.pk], self.channel, payload, exclude=exclude)


class ActionService(Service):
    """A service whose payloads are ``{"action": name, "data": ...}``.

    ``action_<name>(user, data)`` methods are the actions; anything else is
    ``unknown_action``. ``data`` holding a string no database can store (a NUL, a lone
    surrogate, in a value or a key) is ``invalid_data`` before any action sees it.
    """

    __slots__ = ()

    async def on_message(self, user: Any, payload: Any) -> Any:
        if not isinstance(payload, dict) or not isinstance(payload.get("action"), str):
            raise InvalidData(
                pgettext(
                    "JSON names of the protocol: kept as they are",
                    'The payload must be {"action": "...", "data": ...}.',
                ),
            )
        action = payload["action"]
        handler = getattr(self, f"action_{action}", None) if action.isidentifier() else None
        if handler is None:
            raise GatewayError(
                ErrorCode.UNKNOWN_ACTION,
                gettext("Unknown %(channel)s action: %(action)s.")
                % {"channel": self.channel, "action": repr(action)},
            )
        data = payload.get("data")
        if frames.unstorable(data) is not None:
            raise InvalidData(gettext("Text in data may hold no NUL character and no lone surrogate."))
        return await handler(user, data)


def service_classes() -> list[type[Service]]:
    """The classes named in ``SERVICES``, in order; each imported once, until a setting changes
    (:func:`wsgateway.conf.import_from_setting`)."""
    return [import_from_setting(path) for path in gateway_settings.SERVICES]
