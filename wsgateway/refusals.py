"""What every wsgateway endpoint does with a handshake before any other work, and the one way it
refuses a socket: the origin check, the subprotocol, then accept, say why on the gateway channel,
and close with a code that tells the client what to do (wsgateway.codes).

:class:`RefusingConsumer` is that and nothing else, for a retired path; :class:`UnroutedConsumer`
refuses a path nothing routes, before accept.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from channels.generic.websocket import AsyncWebsocketConsumer
from django.utils import translation
from django.utils.functional import Promise
from django.utils.translation import gettext, gettext_lazy, pgettext_lazy

from . import frames, i18n, limits, maintenance, metrics
from .codes import CloseCode, ErrorCode
from .conf import gateway_settings
from .layers.extensions import CoolingDown
from .membership import Membership
from .origin import origin_allowed
from .transport import send_close

logger = logging.getLogger("wsgateway")

GONE_MESSAGE = gettext_lazy("This address is no longer served.")
#: Close reasons: a close frame holds at most 123 bytes of reason, so a translation stays short.
GONE_REASON = pgettext_lazy("close reason, at most 123 bytes", "Gone: do not reconnect.")
MAINTENANCE_REASON = pgettext_lazy("close reason, at most 123 bytes", "Maintenance: come back later.")
COOLING_DOWN_MESSAGE = gettext_lazy(
    "Too many frames were refused: no new socket for %(seconds)d s. Reconnect after retry_after."
)
COOLING_DOWN_REASON = pgettext_lazy("close reason, at most 123 bytes", "Too many frames: retry later.")
UNAVAILABLE_MESSAGE = gettext_lazy("The server cannot take connections right now. Retry in a few seconds.")
UNAVAILABLE_REASON = pgettext_lazy("close reason, at most 123 bytes", "Unavailable: retry soon.")
#: Seconds a handshake refused for a cool-down waits before its answer (never past the cool-down). A
#: refused handshake costs daphne about 1.2 ms of CPU whatever wsgateway does (measured: the same for
#: a 4401 and for a refusal before accept); a client that reconnects at once on every refusal made 450
#: of them a second. Held this long, it makes one a second per connection it holds open, and a proxy
#: bounds those (docs/deployment.md). Under daphne's own bound on a handshake (5 s); a client that
#: honours retry_after never meets it.
COOLING_DOWN_DELAY = 1.0
#: Seconds a client refused ``unavailable`` waits before it reconnects (wsgateway.js adds at least a
#: second at random). Short: a refusal costs the server one accept and two frames, and connects
#: work again as soon as the layer answers (0.03 s after a Redis restart, measured).
UNAVAILABLE_RETRY_AFTER = 5


class LayerOutage:
    """The channel layer failing connects, as this process sees it: the first refusal of an outage
    is logged (a warning with the failure's words, no traceback), the rest only counted, and the
    first connect the layer serves again logs the end (at INFO). A traceback per connect is what an outage of
    Redis cost before: eleven in ten seconds, and the client saw a failed handshake (1006), not a
    reason to come back."""

    __slots__ = ("refused", "since")

    def __init__(self) -> None:
        self.refused = 0
        #: ``time.monotonic()`` of the outage's first refusal; None while connects get through.
        self.since: float | None = None

    def failed(self, exc: BaseException) -> None:
        metrics.increment(metrics.CONNECTIONS_UNAVAILABLE)
        self.refused += 1
        if self.since is not None:
            return
        self.since = time.monotonic()
        failure = "no answer in LAYER_CONNECT_TIMEOUT" if isinstance(exc, TimeoutError) else repr(exc)
        logger.warning(
            "wsgateway: the channel layer failed a connect (%s): sockets are refused with 4503 "
            "until it answers again",
            failure[:200],
        )
        # The traceback only for whoever asks for it: a layer's own bug is found here.
        logger.debug("wsgateway: the connect's layer failure", exc_info=exc)

    def served(self) -> None:
        if self.since is None:
            return
        logger.info(
            "wsgateway: the channel layer serves connects again, after %.1f s; %d refused meanwhile",
            time.monotonic() - self.since,
            self.refused,
        )
        self.since, self.refused = None, 0


#: This process's: its sockets share one channel layer.
layer_outage = LayerOutage()


class Handshake:
    """The handshake's checks and the refusal, for a Channels WebSocket consumer.

    Every accept selects the subprotocol the client was granted, a refusal's too: a browser that
    offered the subprotocol fails a connection whose answer selects none, before it could read why
    it was refused. Every error frame and close reason is written in the socket's language.
    """

    scope: dict[str, Any]
    base_send: Any
    #: The subprotocol selected for this socket: :data:`frames.SUBPROTOCOL`, or None for a client
    #: that offered none.
    subprotocol: str | None = None
    #: The language of the words this socket sends, chosen from its handshake (see wsgateway.i18n);
    #: None until then, which sends the untranslated (English) text.
    language: str | None = None

    async def no_channel(self, exc: Exception, receive: Any, send: Any) -> None:
        """The layer gave the socket no channel (see runtime.TurnTakingConsumer.__call__): the
        handshake is refused as a connect the layer failed."""
        layer_outage.failed(exc)
        await self.refuse_without_channel(receive, send)

    async def refuse_without_channel(self, receive: Any, send: Any) -> None:
        """The handshake's checks, then :meth:`refuse_unavailable`, through the server's own
        ``send``: the consumer's run has ended, and its way of sending with it."""
        self.base_send = send
        if (await receive())["type"] == "websocket.connect" and await self.handshake_allowed():
            await self.refuse_unavailable()

    async def accept(self, subprotocol: str | None = None, headers: Any = None) -> None:
        await super().accept(subprotocol or self.subprotocol, headers)  # type: ignore[misc]

    if TYPE_CHECKING:  # Channels' WebSocket consumer's

        async def send(self, text_data: str | None = None) -> None: ...

    async def close(self, code: int | bool | None = None, reason: str | Promise | None = None) -> None:
        """Close, with a reason cut to the 123 bytes a close frame holds, in the socket's language;
        or, before accept, refuse the handshake (HTTP 403 under daphne)."""
        if code is None or code is True:
            await self.base_send({"type": "websocket.close"})
            return
        with self.speaking():
            await send_close(self.base_send, code, reason)

    def speaking(self) -> translation.override:
        """This socket's language, for code that may run in a task the socket did not start (the
        watchdog's resync): every error frame and close reason is written in it."""
        return translation.override(self.language)

    def error_text(
        self,
        channel: str | None,
        code: str,
        message: str | Promise,
        frame_id: frames.FrameId | None = None,
        *,
        details: dict[str, Any] | None = None,
    ) -> str:
        """An error frame, a lazy ``message`` (``gettext_lazy``) rendered in the socket's language."""
        metrics.errored(code)
        with self.speaking():
            return frames.error(channel, code, message, frame_id, details=details)

    async def handshake_allowed(self) -> bool:
        """Whether to go on with this handshake; if not, it is closed before accept (HTTP 403)."""
        if not origin_allowed(self.scope):
            metrics.increment(metrics.CONNECTIONS_ORIGIN_REFUSED)
            await self.close()
            return False
        offered = self.scope.get("subprotocols") or []
        try:
            self.subprotocol = frames.subprotocol(offered)
        except frames.UnsupportedSubprotocol:
            # A client that asked for another protocol (a later version, say) is not served this
            # one silently; a browser would fail the connection anyway (see frames.subprotocol).
            metrics.increment(metrics.CONNECTIONS_SUBPROTOCOL_REFUSED)
            logger.info(
                "wsgateway: refused a handshake offering the subprotocols %r, not %r",
                [str(name)[:40] for name in offered[:8]],
                frames.SUBPROTOCOL,
            )
            await self.close()
            return False
        return True

    async def refuse(
        self,
        code: str,
        message: str | Promise,
        close_code: int = CloseCode.UNAUTHORIZED,
        *,
        details: dict[str, Any] | None = None,
        reason: str | Promise | None = None,
    ) -> None:
        """Accept, say why, and close: by default with 4401, "log in first", not "network down".

        ``details``: the error frame's other fields (a maintenance's ``retry_after``); ``reason``:
        the close frame's. The error frame carries the reason for every server: daphne drops the
        close frame's (see "Close codes" in docs/protocol.md).
        """
        text = self.error_text(frames.GATEWAY_CHANNEL, code, message, details=details)
        await self.accept()
        await self.send(text_data=text)
        await self.close(close_code, reason)

    async def refuse_over_cap(self, user_id: Any, limit: int) -> None:
        """Close with 4409: the user has ``limit`` sockets open already (wsgateway.connections)."""
        metrics.increment(metrics.CONNECTIONS_REFUSED)
        logger.warning(
            "wsgateway: refused a socket of user %r with 4409: %d open already (MAX_CONNECTIONS_PER_USER)",
            user_id,
            limit,
        )
        message = gettext(
            "Too many connections: at most %(limit)d per user. Close another tab or device, or retry later."
        )
        await self.refuse(
            ErrorCode.TOO_MANY_CONNECTIONS, message % {"limit": limit}, CloseCode.TOO_MANY_CONNECTIONS
        )

    async def take_place(self, membership: Membership, user_id: Any) -> bool:
        """Take the socket's place under the cap and join its groups, or refuse it: 4409 over the
        cap, 4503 ``unavailable`` when the layer fails or a call to it is not answered within
        ``LAYER_CONNECT_TIMEOUT`` (whatever leaves the membership half-made, the end gives back)."""
        limit = gateway_settings.MAX_CONNECTIONS_PER_USER
        try:
            # The cap first: a socket over it costs one round trip. Then the join, before the
            # on-connect snapshots are read: a push racing this connect is then queued behind them
            # instead of falling between the two. Each call to the layer is bounded by
            # LAYER_CONNECT_TIMEOUT (see Membership); after a loss of the layer's data, the wait for
            # the open sockets' places to be put back has its own bounds (a few seconds).
            if placed := await membership.register(user_id, limit):
                await membership.join(user_id)
        except CoolingDown as cooling:  # asked in the same round trip as the place (extensions.COOLDOWN)
            layer_outage.served()
            await self.refuse_cooling_down(user_id, cooling.retry_after)
            return False
        except Exception as exc:  # a layer raises its client's errors (redis-py's are not OSErrors)
            layer_outage.failed(exc)
            await self.refuse_unavailable()
            return False
        layer_outage.served()
        if not placed:
            await self.refuse_over_cap(user_id, limit)
        return placed

    async def refuse_cooling_down(self, user_id: Any, seconds: float) -> None:
        """Close with 4429 and ``retry_after``: the user's socket was closed 4429 less than
        ``RATE_LIMIT_COOLDOWN`` seconds ago (wsgateway.limits), on this process or another. Logged
        once an episode on each process (``user_id`` None: refused by the handshake's credentials,
        which this process learnt, and logged, with the user's), counted every time."""
        metrics.increment(metrics.CONNECTIONS_COOLING_DOWN)
        if user_id is not None and limits.cooling_down(self.scope, user_id, seconds):
            logger.warning(
                "wsgateway: refusing new sockets of user %r with 4429 for %.1f s: one was closed 4429 "
                "(RATE_LIMIT_COOLDOWN; counted in connections.cooling_down)",
                user_id,
                seconds,
            )
        await asyncio.sleep(min(COOLING_DOWN_DELAY, seconds))
        wait = limits.retry_after(seconds - min(COOLING_DOWN_DELAY, seconds))
        with self.speaking():
            message = str(COOLING_DOWN_MESSAGE) % {"seconds": wait}
        await self.refuse(
            ErrorCode.TOO_MANY_FRAMES,
            message,
            CloseCode.TOO_MANY_REQUESTS,
            details={"retry_after": wait},
            reason=COOLING_DOWN_REASON,
        )

    async def refuse_unavailable(self) -> None:
        """Accept, say "retry in a few seconds", and close with 4503: the site cannot take the
        socket now, whoever the user is (not 4401: the login is fine, and the client comes back)."""
        await self.refuse(
            ErrorCode.UNAVAILABLE,
            UNAVAILABLE_MESSAGE,
            CloseCode.SERVICE_UNAVAILABLE,
            details={"retry_after": UNAVAILABLE_RETRY_AFTER},
            reason=UNAVAILABLE_REASON,
        )

    async def refuse_maintenance(self, state: maintenance.State) -> None:
        """Accept, say why and when to come back, and close with 4503 (see wsgateway.maintenance)."""
        maintenance.refused(state)
        with self.speaking():
            # The operator's words, translated if the catalogs know them (as a revocation's reason).
            message = gettext(state.reason) if state.reason else str(maintenance.DEFAULT_MESSAGE)
        await self.refuse(
            ErrorCode.MAINTENANCE,
            message,
            CloseCode.SERVICE_UNAVAILABLE,
            details={"retry_after": state.retry_after},
            reason=MAINTENANCE_REASON,
        )


class RefusingConsumer(Handshake, AsyncWebsocketConsumer):  # type: ignore[misc]
    """For a retired path: accepts, says why, and closes with a code that tells the client not to
    reconnect, as the reference's ``RejectWebSocketHandler``. No authentication, no channel layer,
    no database::

        path("ws/old/", RefusingConsumer.as_asgi(reason=_("Use /ws/ instead."))),

    ``as_asgi`` takes ``reason`` (what the client reads, a lazy translation or text), ``code`` (the
    close code: :attr:`CloseCode.GONE` by default) and ``error`` (the error frame's code).
    """

    reason: str | Promise = GONE_MESSAGE
    code: int = CloseCode.GONE
    error: str = ErrorCode.GONE
    #: No channel layer: nothing reaches this socket but its own refusal.
    channel_layer_alias = None

    def __init__(self, **initkwargs: Any) -> None:
        super().__init__()
        for name, value in initkwargs.items():
            setattr(self, name, value)

    @classmethod
    def as_asgi(cls, **initkwargs: Any) -> Any:
        # As Django's View.as_view: a misspelt argument fails where the route is written, not on a connect.
        for name in initkwargs:
            if name not in ("reason", "code", "error"):
                raise TypeError(f"{cls.__name__}.as_asgi() takes reason, code and error, not {name!r}")
        if "code" in initkwargs and not 4000 <= int(initkwargs["code"]) <= 4999:
            raise ValueError(f"A refusal's close code is one of 4000 to 4999, not {initkwargs['code']!r}")
        return super().as_asgi(**initkwargs)

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        if not await self.handshake_allowed():
            return
        self.language = i18n.language_of(self.scope)
        metrics.increment(metrics.CONNECTIONS_GONE)
        await self.refuse(
            self.error, self.reason, self.code, reason=GONE_REASON if self.code == CloseCode.GONE else None
        )


class UnroutedConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]
    """The last route of a site's WebSocket routing (:data:`wsgateway.routing.unrouted`): a
    handshake to a path no route before it serves is refused before accept (HTTP 403), whatever its
    origin. Without it, Channels' ``URLRouter`` raises "No route found": HTTP 500, and a traceback
    in the server's log for every handshake anyone sends (about 700 bytes each).

    The first refusal of a process is logged at INFO, the others at DEBUG; all are counted
    (``connections.unrouted``). No channel layer, no database.
    """

    channel_layer_alias = None
    #: Whether this process logged an unrouted handshake at INFO already.
    logged = False

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        metrics.increment(metrics.CONNECTIONS_UNROUTED)
        level = logging.DEBUG if UnroutedConsumer.logged else logging.INFO
        UnroutedConsumer.logged = True
        logger.log(
            level,
            "wsgateway: refused a WebSocket handshake to %r: no route serves it (counted in "
            "connections.unrouted; the next ones are logged at DEBUG)",
            str(self.scope.get("path", ""))[:100],
        )
        await self.close()  # before accept: HTTP 403
