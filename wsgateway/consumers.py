"""The WebSocket consumers: one implementation, mounted with all services or with one.

The session's protocol (handshake, authentication, services, the events it takes from the
layer); how messages reach it is wsgateway.runtime, and what a frame looks like is
wsgateway.frames.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from typing import Any, ClassVar

from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer, AsyncWebsocketConsumer
from django.utils import translation
from django.utils.functional import Promise
from django.utils.translation import gettext, gettext_lazy, pgettext_lazy

from . import asking, connections, frames, i18n, limits, maintenance, metrics, revocation, sockets
from .auth import Identity, authenticate
from .codes import PRIVATE_CLOSE_CODES, CloseCode, ErrorCode
from .conf import gateway_settings
from .exceptions import AuthenticationFailed, GatewayError
from .groups import (
    LOGOUT_EVENT,
    PUSH_EVENT,
    REVOKE_EVENT,
    all_group,
    layer_reaches_other_processes,
    user_group,
)
from .health import LayerWatchdog, MembershipRefresher, refresher_for, watchdog_for
from .origin import origin_allowed
from .runtime import TurnTakingConsumer
from .services.base import Service
from .signals import client_connected, client_disconnected

logger = logging.getLogger("wsgateway")

GATEWAY_CHANNEL = "gateway"

#: The words a client reads (see wsgateway.i18n); translated when they are sent, in the socket's language.
UNAUTHORIZED_MESSAGE = gettext_lazy("Log in, or present a bearer token, to connect.")
UNKNOWN_GATEWAY_ACTION = gettext_lazy('The gateway channel takes only {"action": "ping"} and "ack".')
INTERNAL_ERROR_MESSAGE = gettext_lazy("The server failed to handle this frame.")
NOT_ENCODABLE_MESSAGE = gettext_lazy("The server failed to encode its answer.")
LOGGED_OUT_MESSAGE = gettext_lazy("The session was logged out.")
#: Close reasons: a close frame holds at most 123 bytes of reason, so a translation stays short.
MAX_CLOSE_REASON = 123
TOO_MANY_FRAMES_REASON = pgettext_lazy("close reason, at most 123 bytes", "Too many frames.")
NOT_READING_REASON = pgettext_lazy("close reason, at most 123 bytes", "Not reading: reconnect.")
MAINTENANCE_REASON = pgettext_lazy("close reason, at most 123 bytes", "Maintenance: come back later.")
GONE_MESSAGE = gettext_lazy("This address is no longer served.")
GONE_REASON = pgettext_lazy("close reason, at most 123 bytes", "Gone: do not reconnect.")

#: channel -> (payload, None) or (None, the exception the service's snapshot raised)
Snapshots = dict[str, tuple[Any, Exception | None]]

#: What the server's ``send`` raises for a socket that is already closing. ASGI 2.4 asks servers
#: for an OSError: uvicorn's ClientDisconnected is one (measured: frames answered after uvicorn read
#: the client's close, see tests/test_servers.py; uvicorn swallows it silently if it escapes, and the
#: consumer would end without its clean-up). hypercorn raises nothing: it drops a send to a closing
#: socket (wsproto's LocalProtocolError and the writer's ConnectionError are caught inside it), so it
#: needs no entry here. daphne lets autobahn's Disconnected, a RuntimeError, through: measured when a
#: client sent a stray continuation frame after a valid frame, and autobahn was closing the
#: connection while the valid frame's reply was on its way.
SOCKET_GONE: tuple[type[Exception], ...] = (OSError,)
try:  # autobahn comes with daphne; a site on uvicorn or hypercorn has neither
    from autobahn.exception import Disconnected
except ImportError:  # pragma: no cover - daphne is installed wherever the suite runs
    pass
else:
    SOCKET_GONE += (Disconnected,)


class SocketState(enum.Enum):
    """Where the socket is, as far as sending goes."""

    #: The handshake is not answered yet.
    CONNECTING = "connecting"
    #: Accepted: frames go out.
    OPEN = "open"
    #: This side sent its close, the client's disconnect came, or the server said the socket is
    #: gone. Anything sent from now on is dropped: the client would never read it.
    CLOSED = "closed"


class Handshake:
    """What every wsgateway endpoint does first with a handshake, before any other work: the origin
    check, then the subprotocol (see "Subprotocol" in docs/protocol.md); and every accept selects
    the subprotocol the client was granted."""

    scope: dict[str, Any]
    #: The subprotocol selected for this socket: :data:`frames.SUBPROTOCOL`, or None for a client
    #: that offered none.
    subprotocol: str | None = None

    async def accept(self, subprotocol: str | None = None, headers: Any = None) -> None:
        # Every accept, a refusal's too: a browser that offered the subprotocol fails a connection
        # whose answer selects none, before it could read why it was refused.
        await super().accept(subprotocol or self.subprotocol, headers)  # type: ignore[misc]

    async def close(self, code: int | bool | None = None, reason: str | Promise | None = None) -> None:
        # Only so that handshake_allowed's close is typed: the consumer's own close (GatewayConsumer's,
        # or Channels') does the work.
        await super().close(code, reason)  # type: ignore[misc]

    async def handshake_allowed(self) -> bool:
        """Whether to go on with this handshake; if not, it is closed before accept (HTTP 403)."""
        if not origin_allowed(self.scope):
            await self.close()  # before accept: daphne answers the handshake with HTTP 403
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


class GatewayConsumer(Handshake, TurnTakingConsumer, AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    """Serves every configured service on one socket, routed by the frame's ``channel``."""

    #: Channels this endpoint serves; ``None`` means every service in ``WSGATEWAY["SERVICES"]``.
    service_channels: ClassVar[tuple[str, ...] | None] = None
    #: Only pushes, logouts, revocations and requests to the client (and their cancels) come from the
    #: layer; see TurnTakingConsumer.layer_events.
    layer_events: ClassVar[frozenset[str]] = frozenset(
        {PUSH_EVENT, LOGOUT_EVENT, REVOKE_EVENT, asking.REQUEST_EVENT, asking.CANCEL_EVENT}
    )

    user: Any = None
    session_key: str | None = None
    services: dict[str, Service]
    watchdog: LayerWatchdog | None = None
    refresher: MembershipRefresher | None = None
    socket_state = SocketState.CONNECTING
    #: The user's group, from the moment this socket joined it until it leaves.
    group: str | None = None
    #: The group of every socket (broadcasts, close_sockets()), joined and left with the user's.
    broadcast_group: str | None = None
    #: The one run of :meth:`undo_connect`, once the socket has ended.
    ending: asyncio.Future[None] | None = None
    #: This socket's token bucket and its user's, and what is left of its refusals (see inbound_buckets).
    _inbound_buckets: tuple[limits.TokenBucket, limits.TokenBucket] | None = None
    _refusals: limits.TokenBucket
    #: What the socket authenticated with, from the connect on (see wsgateway.revocation).
    credentials: revocation.Credentials | None = None
    #: The next re-check of the credentials: a timer, then the task of its one database trip.
    recheck_timer: asyncio.TimerHandle | None = None
    rechecking: asyncio.Task[None] | None = None
    #: Flow control (see send_to_server): the ``OUTBOUND_WINDOW`` told to the client on connect (0
    #: before: nothing is bounded until then), the bytes of text frames sent since the accept, and
    #: how many of them the client has acknowledged.
    window = 0
    #: ``MAX_SEND_SIZE`` as it was at the connect: read once, not on every push (0: not connected).
    send_limit = 0
    sent_bytes = 0
    acked_bytes = 0
    #: Set by each acknowledgement (and the socket's end): what a send waiting for room waits on.
    window_moved: asyncio.Event | None = None
    #: ``(user, channel_name)``: this socket's place under MAX_CONNECTIONS_PER_USER, until it is given back.
    registration: tuple[str, str] | None = None
    #: The language of the words this socket sends, chosen from its handshake (see wsgateway.i18n);
    #: None until then, which sends the untranslated (English) text.
    language: str | None = None
    #: The requests from the server (wsgateway.asking) this socket sent its client, unanswered.
    asked: asking.PendingRequests

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.services = {}
        self.asked = asking.PendingRequests()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.server_send = send
        self.language = i18n.language_of(scope)
        # Active for the socket's whole life, set once: the language is a context variable, which
        # every task the socket starts (its loops, its timers, the database thread's calls) copies.
        # A handler's gettext() answers in it, as a view's does under LocaleMiddleware, and no frame
        # pays for it (see wsgateway.i18n).
        with translation.override(self.language):
            try:
                await super().__call__(scope, receive, self.send_to_server)
            finally:
                # However the application ends: the client's disconnect (already done then), a
                # handler or a layer handler that raised, or a cancel (daphne's
                # application_close_timeout, its shutdown). An exception still reaches daphne, which
                # logs it.
                await self.end()

    @classmethod
    async def encode_json(cls, content: Any) -> str:
        # A subclass's send_json writes what every other frame is written with.
        return frames.encode(content)

    @property
    def channel_layer_alias(self) -> str:
        return gateway_settings.CHANNEL_LAYER

    def speaking(self) -> translation.override:
        """This socket's language, for code that may run in a task the socket did not start (the
        watchdog's resync): every error frame and close reason is written in it."""
        return translation.override(self.language)

    def layer_failed(self, exc: Exception) -> None:
        # Keep the socket; the watchdog resyncs it once the layer returns.
        if self.watchdog is not None:
            self.watchdog.report_failure(exc)
        else:
            super().layer_failed(exc)

    # -- connect and disconnect ---------------------------------------------------------

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        if not await self.handshake_allowed():
            return
        # Before authentication: a socket refused for maintenance costs no session or database
        # work (the state is read once per MAINTENANCE_CHECK_INTERVAL per process).
        if (state := await maintenance.in_effect()) is not None:
            await self.refuse_maintenance(state)
            return
        try:
            identity = await authenticate(self.scope)
        except AuthenticationFailed as exc:
            await self.refuse(exc.code, exc.message)
            return
        if identity is None:
            await self.refuse(ErrorCode.UNAUTHORIZED, UNAUTHORIZED_MESSAGE)
            return
        # Before anything costlier (the group, the database): a socket over the cap costs one round trip.
        if not await self.register_connection(identity.pk):
            return
        services = {cls.channel: cls(self) for cls in self.service_classes()}
        # Join before the on-connect snapshots are read: a push racing this connect
        # is then queued behind them instead of falling between the two.
        # Named before they are joined: a connect cancelled or failed half-way still leaves both
        # (a discard of a group a channel is not in does nothing on any layer).
        self.group, self.broadcast_group = user_group(identity.pk), all_group()
        await self.join_groups()
        try:
            # One trip to the database thread: the token's user (if not read yet) and the snapshots.
            self.user, snapshots, self.credentials = await database_sync_to_async(_connect_reads)(
                identity, services
            )
        except AuthenticationFailed as exc:
            await self.leave_group()
            await self.refuse(exc.code, exc.message)  # self.services stays empty: no push gets through
            return
        self.session_key, self.services = identity.session_key, services
        await self.accept()
        if self.ending is None:  # not ended during the accept: undo_connect would not take it out
            sockets.add(self.user.pk, self.channel_name, self.scope.get("path", ""), tuple(services))
        self.window = gateway_settings.OUTBOUND_WINDOW
        self.send_limit = gateway_settings.MAX_SEND_SIZE
        await self.send_frame(
            GATEWAY_CHANNEL,
            {
                "user": {"id": self.user.pk, "username": self.user.get_username()},
                "services": list(self.services),
                "window": self.window,
            },
        )
        await self.send_service_snapshots(snapshots)
        # Memberships expire after the layer's group_expiry, sockets need not: renewed while open.
        self.refresher = refresher_for(self.channel_layer)
        self.refresher.register(self)
        if layer_reaches_other_processes():
            self.watchdog = watchdog_for(self.channel_layer)
            self.watchdog.register(self)
        self.schedule_recheck()
        # Robust: a receiver's exception is logged by Django (logger "django.dispatch", with its
        # traceback) and costs neither this socket nor its cleanup.
        await client_connected.asend_robust(
            sender=self.__class__, user=self.user, channel_name=self.channel_name, scope=self.scope
        )

    async def send_service_snapshots(self, snapshots: Snapshots | None = None) -> None:
        """Send each service's connect frame, from ``snapshots`` when they were read with the user."""
        if snapshots is None:
            snapshots = await database_sync_to_async(_read_snapshots)(self.services, self.user)
        for channel, service in self.services.items():
            if channel in snapshots:
                outcome = _asettled(*snapshots[channel])
            else:
                outcome = service.on_connect(self.user)
            payload = await self.call_service(outcome, channel)
            if payload is not None and payload is not _FAILED:
                await self.send_frame(channel, payload)
                service.connect_frame_sent(payload)

    async def resync(self) -> None:
        """After a layer outage: bring this socket back in step (see :meth:`catch_up`).

        Called by the watchdog, in its task. The watchdog's slots keep a thousand sockets from
        re-joining at once; the turn keeps the resync from interleaving with this socket's handlers.
        """
        watchdog = self.watchdog
        if watchdog is None:  # not registered, or already closed
            return
        # The watchdog's task has the language of the socket that started it: this one's instead.
        with self.speaking():
            async with watchdog.resync_slots, self.turn:
                await self.catch_up()

    async def layer_overflowed(self) -> None:
        # The layer dropped pushes for this socket (its queue was full); the turn is held already.
        await self.catch_up()

    async def catch_up(self) -> None:
        """Re-join the user's group, then resend the on-connect frames, which carry what was missed.

        The group: an outage of Redis loses its memberships, and a queue that overflowed may have
        been dropped from its groups. The caller holds the turn.
        """
        if self.socket_state is SocketState.CLOSED:  # ended while this waited for its turn
            return
        try:
            await self.join_groups()
        except Exception as exc:
            # Down again: the watchdog resyncs this socket on the next recovery.
            self.layer_failed(exc)
            return
        await self.send_frame(GATEWAY_CHANNEL, {"resync": True})
        await self.send_service_snapshots()

    async def join_groups(self) -> None:
        """Join the user's group and the group of every socket: both in one round trip on a layer
        that makes one per ``group_add`` (channels_redis' core layer); wsgateway's layers make none
        but a process's first subscription to each group."""
        assert self.group is not None and self.broadcast_group is not None
        # Both settle before a failure is raised: a join still on its way could otherwise land after
        # the leave_group() of a connect that failed.
        outcomes = await asyncio.gather(
            self.channel_layer.group_add(self.group, self.channel_name),
            self.channel_layer.group_add(self.broadcast_group, self.channel_name),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    def memberships(self) -> list[tuple[str, str]]:
        """The groups this socket is in, for the membership refresher."""
        if self.user is None:
            return []
        return [(user_group(self.user.pk), self.channel_name), (all_group(), self.channel_name)]

    def registrations(self) -> list[tuple[str, str]]:
        """This socket's registration with the layer's ``connections`` extension, for the refresher."""
        return [self.registration] if self.registration is not None else []

    async def register_connection(self, user_id: Any) -> bool:
        """Take one of the user's MAX_CONNECTIONS_PER_USER places, or refuse the socket with 4409."""
        limit = gateway_settings.MAX_CONNECTIONS_PER_USER
        # Set before the layer is asked: a connect cancelled during the call still gives the place back.
        self.registration = (str(user_id), self.channel_name)
        # A layer that fails here fails the connect, as the group_add right after it would: without the
        # layer the socket would get no push, and the client's reconnect is the retry. Failing open would
        # also let a client that can bring Redis down past the cap.
        if await connections.register(self.channel_layer, *self.registration, limit):
            return True
        self.registration = None
        metrics.increment(metrics.CONNECTIONS_REFUSED)
        logger.warning(
            "wsgateway: refused a socket of user %r with 4409: %d open already (MAX_CONNECTIONS_PER_USER)",
            user_id,
            limit,
        )
        await self.refuse(
            ErrorCode.TOO_MANY_CONNECTIONS,
            gettext(
                "Too many connections: at most %(limit)d per user. Close another tab or device, "
                "or retry later."
            )
            % {"limit": limit},
            CloseCode.TOO_MANY_CONNECTIONS,
        )
        return False

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
        the close frame's."""
        await self.accept()
        await self.send(text_data=self.error_text(GATEWAY_CHANNEL, code, message, details=details))
        await self.close(close_code, reason)

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

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        await self.end(message.get("code"))
        raise StopConsumer()

    async def end(self, code: int | None = None) -> None:
        """The socket has ended: drop what is still sent, and undo the connect, once.

        Called on the client's disconnect and again when the application ends, whichever way it
        ends; only the first call runs :meth:`undo_connect`, and the second waits for it.
        """
        self.socket_state = SocketState.CLOSED
        if self.ending is None:
            self.ending = asyncio.ensure_future(self.undo_connect(code))
        # Shielded: daphne cancels an application that is slow to end, once a second; a second
        # cancel must not cut the steps still to come.
        await asyncio.shield(self.ending)

    async def undo_connect(self, code: int | None) -> None:
        """Leave the user's group, tell the services and the receivers of ``client_disconnected``.

        Every step runs whatever the one before it did; none raises.
        """
        if self.refresher is not None:
            self.refresher.unregister(self)  # before leaving: no renewal may re-add it
            self.refresher = None
        if self.watchdog is not None:
            self.watchdog.unregister(self)
            self.watchdog = None  # a resync asked for from now on has nothing to do
        self.cancel_recheck()
        await self.drop_requests()
        await self.leave_group()
        await self.unregister_connection()
        if self.user is None:  # refused, or ended before it was authenticated: never accepted
            return
        sockets.discard(self.user.pk, self.channel_name)  # before the receivers, who may ask
        for channel, service in self.services.items():
            try:
                await service.on_disconnect(self.user)
            except Exception:
                # Not call_service: the client is gone, so there is no one to send an error frame to.
                logger.exception("wsgateway service %r failed on disconnect", channel)
        await client_disconnected.asend_robust(
            sender=self.__class__, user=self.user, channel_name=self.channel_name, code=code
        )

    async def leave_group(self) -> None:
        """Leave the user's group and the group of every socket."""
        groups = [group for group in (self.group, self.broadcast_group) if group is not None]
        self.group = self.broadcast_group = None
        outcomes = await asyncio.gather(
            *(self.channel_layer.group_discard(group, self.channel_name) for group in groups),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                # The layer is down; its membership dies with the channel anyway.
                logger.info("wsgateway: group_discard failed on disconnect: %s", outcome)
            elif isinstance(outcome, BaseException):
                raise outcome

    async def unregister_connection(self) -> None:
        registration, self.registration = self.registration, None
        if registration is None:
            return
        try:
            await connections.unregister(self.channel_layer, *registration)
        except Exception as exc:  # the layer is down; the registration expires unrenewed
            logger.info("wsgateway: could not give back a socket's place on disconnect: %s", exc)

    @classmethod
    def service_classes(cls) -> list[type[Service]]:
        classes = gateway_settings.service_classes
        if cls.service_channels is not None:
            classes = [service for service in classes if service.channel in cls.service_channels]
        return classes

    # -- client frames ------------------------------------------------------------------

    async def screen(self, message: dict[str, Any]) -> bool:
        """The rate limits, applied as each client message is read (see TurnTakingConsumer.serve)."""
        kind = message["type"]
        if kind == "websocket.disconnect":
            # The client has gone: the frames still waiting for their turn are dropped, not handled,
            # and a send waiting for an acknowledgement gives up.
            self.socket_state = SocketState.CLOSED
            if self.window_moved is not None:
                self.window_moved.set()
            return True
        if kind != "websocket.receive" or self.socket_state is SocketState.CONNECTING:
            return True
        if self.socket_state is SocketState.CLOSED:
            metrics.increment(metrics.INBOUND_DROPPED_AFTER_CLOSE)
            return False
        buckets = self.inbound_buckets()
        ack = self.ack_in(message)
        # An ack never waits for a turn, so a full inbox does not refuse it: a handler or a push
        # may be waiting for exactly this ack (see send_to_server).
        if ack is None and len(self.inbox) >= buckets[0].burst:
            # Handled slower than they come: at most RATE_BURST frames wait for their turn.
            await self.refuse_frame(message, 1 / buckets[0].rate)
            return False
        wait = limits.take(*buckets)
        if wait:
            await self.refuse_frame(message, wait)
            return False
        if ack is not None:
            await self.take_ack(ack)
            return False
        return True

    def ack_in(self, message: dict[str, Any]) -> frames.Frame | None:
        """The frame, if the message is an acknowledgement (see :meth:`acknowledge`).

        Read here, as the message comes, not in its turn. Any other frame that reads well is kept
        on the message for :meth:`websocket_receive`, so it is decoded once.
        """
        try:
            frame = frames.decode(message, gateway_settings.MAX_MESSAGE_SIZE)
        except (frames.MessageTooBig, frames.FrameError):
            return None  # answered in its turn, in order with the replies before it
        if frame.channel == GATEWAY_CHANNEL and isinstance(frame.payload, dict):
            if frame.payload.get("action") == "ack":
                return frame
        message[DECODED] = frame
        return None

    async def take_ack(self, frame: frames.Frame) -> None:
        try:
            self.acknowledge(frame.payload.get("data"))
        except GatewayError as exc:
            await self.send_error(GATEWAY_CHANNEL, exc.code, exc.message, frame.id)
            return
        if frame.id is not None:
            await self.send_frame(GATEWAY_CHANNEL, {}, frame.id)

    async def websocket_receive(self, message: dict[str, Any]) -> None:
        if self.socket_state is SocketState.CLOSED:
            # Closed by either side while it waited for its turn: dropped unread.
            metrics.increment(metrics.INBOUND_DROPPED_AFTER_CLOSE)
            return
        frame = message.get(DECODED)
        if frame is None:
            try:
                frame = frames.decode(message, gateway_settings.MAX_MESSAGE_SIZE)
            except frames.MessageTooBig:
                await self.close(CloseCode.MESSAGE_TOO_BIG)
                return
            except frames.FrameError as exc:
                await self.send_error(exc.channel, exc.code, exc.message, exc.id)
                return
        await self.receive_frame(frame)

    def inbound_buckets(self) -> tuple[limits.TokenBucket, limits.TokenBucket]:
        """This socket's bucket and its user's (see wsgateway.limits), made on the first frame."""
        buckets = self._inbound_buckets
        if buckets is None:
            settings = gateway_settings
            buckets = self._inbound_buckets = (
                limits.TokenBucket(settings.RATE_LIMIT, settings.RATE_BURST),
                limits.user_buckets.get(
                    getattr(self.user, "pk", None), settings.USER_RATE_LIMIT, settings.USER_RATE_BURST
                ),
            )
            # RATE_LIMIT_CLOSE_AFTER refusals a minute are answered; the next one closes the socket.
            close_after = settings.RATE_LIMIT_CLOSE_AFTER
            self._refusals = limits.TokenBucket(close_after / 60, close_after)
        return buckets

    async def refuse_frame(self, message: dict[str, Any], wait: float) -> None:
        """Answer a frame over the rate limits with ``rate_limited``, unhandled; or close with 4429.

        The frame is read only for its channel and id, so that the client can match the error to
        its request; at most RATE_LIMIT_CLOSE_AFTER a minute are, which bounds what a flood costs.
        """
        metrics.increment(metrics.INBOUND_RATE_LIMITED)
        refusals = self._refusals
        first = refusals.refill() >= refusals.burst  # of an episode: none refused in the last minute
        if limits.take(refusals):
            metrics.increment(metrics.INBOUND_CLOSED)
            logger.warning(
                "wsgateway: closed the socket of user %r with 4429: over %d frames refused in a minute",
                getattr(self.user, "pk", None),
                int(refusals.burst),
            )
            await self.close(CloseCode.TOO_MANY_REQUESTS, TOO_MANY_FRAMES_REASON)
            return
        if first:
            logger.info("wsgateway: rate-limited the socket of user %r", getattr(self.user, "pk", None))
        channel: str | None
        frame_id: frames.FrameId | None
        try:
            # ack_in has decoded it already, unless it was an ack or did not read well.
            frame = message.get(DECODED) or frames.decode(message, gateway_settings.MAX_MESSAGE_SIZE)
            channel, frame_id = frame.channel, frame.id
        except frames.MessageTooBig:
            await self.close(CloseCode.MESSAGE_TOO_BIG)
            return
        except frames.FrameError as exc:
            channel, frame_id = exc.channel, exc.id
        message_text = gettext("Too many frames: this one was not handled. Retry in %(seconds).2f s.")
        await self.send_error(channel, ErrorCode.RATE_LIMITED, message_text % {"seconds": wait}, frame_id)

    async def receive_frame(self, frame: frames.Frame) -> None:
        """Answer one client frame through the service of its channel."""
        if self.socket_state is SocketState.CLOSED:
            # This side closed (a revoked login, say): a frame the client sent before reading the
            # close reaches no service, so a clipboard_add from a revoked socket is not stored.
            return
        if self.asked.next_deadline <= (now := time.time()):
            await self.expire_requests(now)
        if frame.reply is not None:
            await self.take_reply(frame)
            return
        channel, frame_id = frame.channel, frame.id
        if channel == GATEWAY_CHANNEL:
            reply = await self.call_service(self.gateway_message(frame.payload), channel, frame_id)
        elif channel in self.services:
            service = self.services[channel]
            reply = await self.call_service(service.on_message(self.user, frame.payload), channel, frame_id)
        else:
            await self.send_error(
                channel,
                ErrorCode.UNKNOWN_CHANNEL,
                gettext("No service on channel %(channel)s.") % {"channel": repr(channel)},
                frame_id,
            )
            return
        if reply is not _FAILED and (reply is not None or frame_id is not None):
            await self.send_frame(channel, reply if reply is not None else {}, frame_id)

    async def gateway_message(self, payload: Any) -> Any:
        action = payload.get("action") if isinstance(payload, dict) else None
        if action == "ping":
            return {"action": "pong"}
        raise GatewayError(ErrorCode.UNKNOWN_ACTION, UNKNOWN_GATEWAY_ACTION)

    def acknowledge(self, received: Any) -> None:
        """The client has read ``received`` bytes of text frames since the connect: those no longer
        count against its window."""
        if type(received) is not int or not self.acked_bytes <= received <= self.sent_bytes:
            message = gettext(
                # Translators: "ack" is the name of an action: keep it as it is.
                "ack takes the bytes of text frames received since the connect, from "
                "%(acked)d (the last ack) to %(sent)d (what was sent)."
            )
            raise GatewayError(
                ErrorCode.INVALID_DATA, message % {"acked": self.acked_bytes, "sent": self.sent_bytes}
            )
        self.acked_bytes = received
        if self.window_moved is not None:
            self.window_moved.set()

    async def call_service(self, awaitable: Any, channel: str, frame_id: Any = None) -> Any:
        """Await a service hook; its errors become error frames and never reach Channels."""
        try:
            return await awaitable
        except GatewayError as exc:
            await self.send_error(channel, exc.code, exc.message, frame_id)
        except Exception:
            logger.exception("wsgateway service %r failed", channel)
            await self.send_error(channel, ErrorCode.INTERNAL_ERROR, INTERNAL_ERROR_MESSAGE, frame_id)
        return _FAILED

    # -- frames to the client -----------------------------------------------------------

    async def close(self, code: int | bool | None = None, reason: str | Promise | None = None) -> None:
        if reason is not None:
            with self.speaking():
                # A close frame has room for 123 bytes of reason (RFC 6455): a translation cut to fit,
                # not a send that raises.
                reason = str(reason).encode()[:MAX_CLOSE_REASON].decode("utf-8", "ignore")
        if code is None or code is True:
            await super().close(code, reason)
            return
        # Autobahn (under daphne) rejects int subclasses such as CloseCode members,
        # and any code but 1000 and 3000-4999: it raises from the send.
        try:
            await super().close(int(code), reason)
        except Exception:
            fallback = next((to for sent, to in PRIVATE_CLOSE_CODES.items() if sent == code), None)
            if fallback is None:
                raise
            await super().close(int(fallback), reason)

    async def send_frame(self, channel: str, payload: Any, frame_id: frames.FrameId | None = None) -> None:
        """Send a data frame; a payload with no JSON form sends ``internal_error`` in its place, and
        one over ``MAX_SEND_SIZE`` ``too_large``: the server would refuse it and close the socket."""
        try:
            text = frames.data(channel, payload, frame_id)
        except frames.NotJSON:
            logger.exception("wsgateway service %r answered with a value that is not JSON", channel)
            text = self.error_text(channel, ErrorCode.INTERNAL_ERROR, NOT_ENCODABLE_MESSAGE, frame_id)
        if frames.size(text) > (limit := self.send_limit or gateway_settings.MAX_SEND_SIZE):
            metrics.increment(metrics.SEND_TOO_LARGE)
            logger.warning(
                "wsgateway: a %d-byte frame on channel %r was not sent", frames.size(text), channel
            )
            message = gettext("The answer is over the server's limit of %(limit)d bytes.") % {"limit": limit}
            text = self.error_text(channel, ErrorCode.TOO_LARGE, message, frame_id)
        await self.send(text_data=text)

    async def send_error(
        self, channel: str | None, code: str, message: str | Promise, frame_id: frames.FrameId | None = None
    ) -> None:
        await self.send(text_data=self.error_text(channel, code, message, frame_id))

    def error_text(
        self,
        channel: str | None,
        code: str,
        message: str | Promise,
        frame_id: frames.FrameId | None = None,
        *,
        details: dict[str, Any] | None = None,
    ) -> str:
        """An error frame, a lazy ``message`` (``gettext_lazy``) rendered in the socket's language.

        Every error frame is written here, wherever its message was made: a frame the envelope
        refused, a refusal as the frame came, or a service's error in a resync.
        """
        with self.speaking():
            return frames.error(channel, code, message, frame_id, details=details)

    async def send_to_server(self, message: dict[str, Any]) -> None:
        """The server's ``send`` as this consumer's ``base_send``: every accept, frame and close
        goes through here, and nothing goes out once the socket is closed."""
        if self.socket_state is SocketState.CLOSED:
            logger.debug("wsgateway: dropped a %r on a closed socket", message["type"])
            return
        if self.window and message["type"] == "websocket.send":
            # Every frame wsgateway writes is ASCII (see frames.encode): its length is its size in
            # bytes, as daphne writes it and as the client counts it.
            size = len(message.get("text") or message.get("bytes") or "")
            if (
                self.sent_bytes + size - self.acked_bytes > self.window
                and asyncio.current_task() is not self.client_reader
                and not await self.room_for(size)
            ):
                return
            self.sent_bytes += size
        try:
            await self.server_send(message)
        except SOCKET_GONE as exc:
            # The client's disconnect is on its way and ends this consumer; this is not a failure.
            logger.debug(
                "wsgateway: the server refused a %r, the socket is closing: %r", message["type"], exc
            )
            self.socket_state = SocketState.CLOSED
            return
        if message["type"] == "websocket.accept":
            self.socket_state = SocketState.OPEN
        elif message["type"] == "websocket.close":
            self.socket_state = SocketState.CLOSED

    async def room_for(self, size: int) -> bool:
        """Wait until the client has acknowledged enough for ``size`` more bytes to fit its window;
        False if the socket ends first, or if that takes over ``ACK_TIMEOUT`` seconds (then this
        closes it with 4408).

        The sender holds the turn meanwhile, so the socket's pushes wait in the channel layer, whose
        capacity bounds them (past it, the layer's overflow brings a catch-up once the client reads
        again). The task that reads the client never waits here: the acks come through it, and the
        few frames it sends itself (a rate_limited error, the reply to an ack) are counted but let
        through, which is at most RATE_LIMIT_CLOSE_AFTER a minute.
        """
        if self.window_moved is None:
            self.window_moved = asyncio.Event()
        try:
            async with asyncio.timeout(gateway_settings.ACK_TIMEOUT):
                while self.sent_bytes + size - self.acked_bytes > self.window:
                    if self.socket_state is SocketState.CLOSED:
                        return False
                    self.window_moved.clear()
                    await self.window_moved.wait()
        except TimeoutError:
            await self.close_not_reading(size)
            return False
        return self.socket_state is not SocketState.CLOSED

    async def close_not_reading(self, size: int) -> None:
        """Close instead of sending a frame that would leave more than the window unacknowledged.

        daphne's ``send`` never waits: what a client does not read stays in the server's memory,
        however much it is. The window bounds it; the client reconnects, and what it missed comes
        with the connect frames and the catch-up.
        """
        metrics.increment(metrics.OUTBOUND_CLOSED)
        logger.warning(
            "wsgateway: closed a socket of user %r with 4408: %d bytes unacknowledged, and a "
            "frame of %d more over its window of %d",
            getattr(self.user, "pk", None),
            self.sent_bytes - self.acked_bytes,
            size,
            self.window,
        )
        await self.close(CloseCode.NOT_READING, NOT_READING_REASON)

    # -- channel-layer events -----------------------------------------------------------

    async def gateway_push(self, event: dict[str, Any]) -> None:
        service = self.services.get(event["channel"])
        if service is not None and event.get("exclude") != self.channel_name:
            if frames.size(event["text"]) > self.send_limit:
                # Encoded by a process with a larger MAX_SEND_SIZE: sent, it would close this socket.
                metrics.increment(metrics.SEND_TOO_LARGE)
                logger.warning("wsgateway: a push on channel %r was too large to send", event["channel"])
                return
            await self.send(text_data=event["text"])
            if (seq := event.get("seq")) is not None:
                service.push_sent(seq)

    async def gateway_logout(self, event: dict[str, Any]) -> None:
        if self.session_key is not None and event.get("session_key") == self.session_key:
            await self.revoke(ErrorCode.LOGGED_OUT, LOGGED_OUT_MESSAGE)

    async def gateway_revoke(self, event: dict[str, Any]) -> None:
        """:func:`wsgateway.revocation.close_user_sockets`, and the signals that end a login."""
        if self.credentials is not None and revocation.matches(event, self.credentials):
            await self.revoke(
                event["error"],
                event["reason"],
                event["code"],
                in_close=bool(event.get("reason_in_close")),
                details=event.get("details"),
            )

    # -- requests to the client (wsgateway.asking) -------------------------------------------

    async def gateway_request(self, event: dict[str, Any]) -> None:
        """Pass a request on to the client and hold it until it is answered; or tell the requester
        at once why not."""
        request_id, reply_to = event["request"], event["reply_to"]
        now = time.time()
        await self.expire_requests(now)
        # After the expiry's sends, with no await from here to the add: a socket that ended meanwhile
        # has drained its table already, and an entry added now would be nobody's to report.
        if self.socket_state is not SocketState.OPEN or self.user is None:
            await self.tell_requester(
                reply_to, asking.dropped_message(request_id, self.channel_name, asking.Dropped.CLOSED)
            )
            return
        if event["deadline"] <= now:
            return  # its requester has given up already: nobody to tell
        reason = None
        if frames.size(event["text"]) > self.send_limit:
            reason = asking.Dropped.TOO_LARGE
        elif not self.asked.add(
            request_id,
            asking.Pending(event["channel"], reply_to, event["deadline"]),
            gateway_settings.MAX_PENDING_REQUESTS,
        ):
            metrics.increment(metrics.REQUESTS_BUSY)
            reason = asking.Dropped.BUSY
        if reason is not None:
            await self.tell_requester(reply_to, asking.dropped_message(request_id, self.channel_name, reason))
            return
        await self.send(text_data=event["text"])

    async def gateway_request_cancel(self, event: dict[str, Any]) -> None:
        """Another socket answered (or the requester gave up): drop it, and tell the client."""
        request_id = event["request"]
        entry = self.asked.pop(request_id)
        if entry is not None:
            await self.send(text_data=frames.cancel(entry.channel, request_id))

    async def take_reply(self, frame: frames.Frame) -> None:
        """The client's answer to a request: to its requester. One to a request this socket no longer
        holds (late, cancelled, unknown) is dropped: the normal end of a race, not an error."""
        assert frame.reply is not None
        entry = self.asked.take(frame.reply, frame.channel)
        if entry is None:
            metrics.increment(metrics.REQUESTS_UNMATCHED_REPLY)
            logger.debug(
                "wsgateway: dropped a reply to request %r, which this socket does not hold", frame.reply
            )
            return
        await self.tell_requester(
            entry.reply_to, asking.answer_message(frame.reply, self.channel_name, frame)
        )

    async def expire_requests(self, now: float) -> None:
        """Forget the requests past their deadline, whose requesters have given up, and tell the client."""
        for request_id, entry in self.asked.expire(now):
            metrics.increment(metrics.REQUESTS_EXPIRED)
            await self.send(text_data=frames.cancel(entry.channel, request_id))

    async def drop_requests(self) -> None:
        """The socket has ended: every requester still waiting on it learns so at once."""
        now = time.time()
        for request_id, entry in self.asked.drain():
            if entry.deadline > now:
                await self.tell_requester(
                    entry.reply_to,
                    asking.dropped_message(request_id, self.channel_name, asking.Dropped.CLOSED),
                )

    async def tell_requester(self, reply_to: str, message: dict[str, Any]) -> None:
        try:
            await self.channel_layer.send(reply_to, message)
        except Exception as exc:
            # The layer is down, or the reply channel full: its requester times out instead.
            logger.info("wsgateway: could not answer request %s: %r", message["request"], exc)

    # -- the login's end ------------------------------------------------------------------

    async def revoke(
        self,
        error: str,
        message: str | Promise,
        code: int = CloseCode.UNAUTHORIZED,
        *,
        in_close: bool = False,
        details: dict[str, Any] | None = None,
    ) -> None:
        """The login this socket was opened with has ended, or the site closes it: say why, and close.

        A ``message`` that came through the layer is text, in English (see revocation.revoke_event):
        translated here, in this socket's language, if the catalogs know it. ``in_close``: the close
        frame carries it too (``close_sockets()``), cut to the 123 bytes it holds. ``details``: the
        error frame's other fields (``retry_after``).
        """
        if self.socket_state is not SocketState.OPEN:  # closed already, by an earlier revocation
            return
        self.cancel_recheck()
        if isinstance(message, str) and message:  # gettext("") is the catalog's header
            with self.speaking():
                message = gettext(message)
        await self.send(text_data=self.error_text(GATEWAY_CHANNEL, error, message, details=details))
        await self.close(code, message if in_close else None)

    def schedule_recheck(self) -> None:
        """Re-check the credentials when they expire, or in ``REVALIDATE_INTERVAL`` seconds if sooner.

        One timer per socket; the task that reads the database exists only while it does.
        """
        assert self.credentials is not None
        delay = float(gateway_settings.REVALIDATE_INTERVAL)
        if (expiry := self.credentials.next_expiry) is not None:
            # Just after the expiry, not on it: a check a hair early would find it still valid.
            delay = min(delay, expiry - time.time() + RECHECK_MARGIN)
        self.recheck_timer = asyncio.get_running_loop().call_later(
            max(delay, RECHECK_MARGIN), self.start_recheck
        )

    def start_recheck(self) -> None:
        self.recheck_timer = None
        if self.socket_state is SocketState.OPEN:
            self.rechecking = asyncio.get_running_loop().create_task(self.recheck())

    async def recheck(self) -> None:
        """Read whether the login still holds; close the socket if not, else schedule the next check."""
        assert self.credentials is not None
        try:
            verdict = await database_sync_to_async(revocation.check)(self.credentials)
        except Exception:
            # The database is down, say: the socket stays, and its check is retried (not at once,
            # past an expiry: that would be a loop of failures).
            logger.exception("wsgateway: the re-check of a socket's login failed; retried later")
            self.rechecking = None
            if self.socket_state is SocketState.OPEN:
                self.recheck_timer = asyncio.get_running_loop().call_later(
                    min(RECHECK_RETRY, gateway_settings.REVALIDATE_INTERVAL), self.start_recheck
                )
            return
        self.rechecking = None
        if verdict is not None:
            async with self.turn:
                await self.revoke(verdict.error, verdict.message)
        elif self.socket_state is SocketState.OPEN:
            self.schedule_recheck()

    def cancel_recheck(self) -> None:
        if self.recheck_timer is not None:
            self.recheck_timer.cancel()
            self.recheck_timer = None
        task, self.rechecking = self.rechecking, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()


_FAILED = object()

#: Where :meth:`GatewayConsumer.ack_in` keeps a frame it decoded, on the server's message.
DECODED = "wsgateway.frame"

#: Seconds after an expiry that its re-check runs, and the least delay of any re-check.
RECHECK_MARGIN = 0.05
#: Seconds before a re-check that failed (not a login that ended: the check itself) runs again.
RECHECK_RETRY = 5.0


def _connect_reads(
    identity: Identity, services: dict[str, Service]
) -> tuple[Any, Snapshots, revocation.Credentials]:
    user = identity.user
    if user is None:
        assert identity.load_user is not None
        user = identity.load_user()
    credentials = revocation.credentials_of(user, identity.session_key, identity.expires_at)
    return user, _read_snapshots(services, user), credentials


def _read_snapshots(services: dict[str, Service], user: Any) -> Snapshots:
    # Each service's outcome apart: one that raises must not cost the others their frames.
    outcomes: Snapshots = {}
    for service in services.values():
        if not service.has_snapshot():
            continue
        try:
            outcomes[service.channel] = (service.snapshot(user), None)
        except Exception as exc:
            outcomes[service.channel] = (None, exc)
    return outcomes


async def _asettled(value: Any, error: Exception | None) -> Any:
    if error is not None:
        raise error
    return value


class NotifierConsumer(GatewayConsumer):
    """Only the "notifications" channel, for ``ws/notifications/``."""

    service_channels = ("notifications",)


class ClipboardConsumer(GatewayConsumer):
    """Only the "clipboard" channel, for ``ws/clipboard/``."""

    service_channels = ("clipboard",)


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
        metrics.increment(metrics.CONNECTIONS_GONE)
        with translation.override(i18n.language_of(self.scope)):
            text = frames.error(GATEWAY_CHANNEL, self.error, self.reason)
            reason = str(GONE_REASON) if self.code == CloseCode.GONE else None
        await self.accept()
        await self.send(text_data=text)
        # Autobahn (under daphne) refuses an int subclass such as a CloseCode member.
        await super().close(int(self.code), reason)
