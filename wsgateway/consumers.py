"""The WebSocket consumers: one implementation, mounted with all services or with one.

The session's protocol (the connect, the client's frames, the layer's events, the end), wiring the
parts that hold a socket's state, each in its concern's module: the loops (runtime), writing and
closing (transport), the handshake and refusals (refusals), the groups and the cap (membership),
the inbound limits (limits), flow control (flow), the login's re-checks (rechecks), requests to
the client (answering). What a frame looks like is wsgateway.frames.
"""

from __future__ import annotations

import logging
import time
from typing import Any, ClassVar

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.utils import translation
from django.utils.functional import Promise
from django.utils.translation import gettext, gettext_lazy, pgettext_lazy

from . import events, frames, i18n, maintenance, metrics, presence, revocation, snapshots, sockets, status
from .answering import PendingRequests
from .auth import authenticate
from .codes import CloseCode, ErrorCode
from .conf import gateway_settings
from .connect_reads import read_together
from .exceptions import AuthenticationFailed, GatewayError
from .flow import OutboundWindow
from .groups import layer_reaches_other_processes
from .health import LayerWatchdog, watchdog_for
from .limits import InboundLimiter, Refusal, cooldown_before_auth, cooldown_known, start_cooldown
from .membership import Membership
from .rechecks import LoginRecheck
from .refusals import Handshake, RefusingConsumer
from .runtime import Decoded, TurnTakingConsumer
from .services.base import Service, service_classes
from .signals import client_connected, client_disconnected
from .transport import Message, SocketState

__all__ = ["ClipboardConsumer", "GatewayConsumer", "NotifierConsumer", "RefusingConsumer"]

logger = logging.getLogger("wsgateway")

GATEWAY_CHANNEL = frames.GATEWAY_CHANNEL

#: The words a client reads (see wsgateway.i18n); translated when they are sent, in the socket's language.
UNAUTHORIZED_MESSAGE = gettext_lazy("Log in, or present a bearer token, to connect.")
UNKNOWN_GATEWAY_ACTION = gettext_lazy('The gateway channel takes only {"action": "ping"} and "ack".')
INTERNAL_ERROR_MESSAGE = gettext_lazy("The server failed to handle this frame.")
TOO_MANY_FRAMES_REASON = pgettext_lazy("close reason, at most 123 bytes", "Too many frames.")

#: Longest client frame, in characters (or bytes), decoded at the door for what the limits need: whether
#: it is an acknowledgement (when only an ack would be let through: the inbox is full), and the
#: channel and id a ``rate_limited`` answer echoes. A decode this small costs a few microseconds, and
#: only answered refusals (RATE_LIMIT_CLOSE_AFTER a minute at most) and a full inbox ask for it; a
#: longer frame refused is not read at all, and its answer's channel and id are null.
PEEK_SIZE = 1024

_FAILED = object()


class GatewayConsumer(Handshake, TurnTakingConsumer, AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    """Serves every configured service on one socket, routed by the frame's ``channel``."""

    #: Channels this endpoint serves; ``None`` means every service in ``WSGATEWAY["SERVICES"]``.
    service_channels: ClassVar[tuple[str, ...] | None] = None
    layer_events: ClassVar[frozenset[str]] = events.SOCKET_EVENTS

    user: Any = None
    services: dict[str, Service]
    watchdog: LayerWatchdog | None = None
    membership: Membership | None = None
    #: Made on the first frame after the connect.
    limiter: InboundLimiter | None = None
    recheck: LoginRecheck | None = None
    #: The requests from the server (wsgateway.asking) this socket sent its client, unanswered.
    asked: PendingRequests
    #: The socket's part in the metrics, made once its services are known.
    meter: metrics.SocketMeter | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.services = {}
        self.asked = PendingRequests()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.language = i18n.language_of(scope)
        # Active for the socket's whole life, set once: the language is a context variable, which
        # every task the socket starts (its loops, its timers, the database thread's calls) copies.
        # A handler's gettext() answers in it, as a view's does under LocaleMiddleware.
        if i18n.speaks_already(self.language):
            # Already this context's (the site's LANGUAGE_CODE, most sockets'): an override would
            # only add objects every socket keeps for its life (asgiref's storage for the
            # activation, copied again after each trip to the database thread: 5 tracked objects and
            # 0.6 KB a socket in bench/memory.py).
            await super().__call__(scope, receive, send)
            return
        with translation.override(self.language):
            await super().__call__(scope, receive, send)

    @classmethod
    async def encode_json(cls, content: Any) -> str:
        return frames.encode(content)  # a subclass's send_json writes what every frame is written with

    @property
    def channel_layer_alias(self) -> str:
        return gateway_settings.CHANNEL_LAYER

    @property
    def is_open(self) -> bool:
        return self.transport.state is SocketState.OPEN

    def layer_failed(self, exc: Exception) -> None:
        # Keep the socket; the watchdog resyncs it once the layer returns.
        if self.watchdog is not None:
            self.watchdog.report_failure(exc)
        else:
            super().layer_failed(exc)

    # -- connect and disconnect ---------------------------------------------------------

    async def websocket_connect(self, message: Message) -> None:
        if not await self.handshake_allowed():
            return
        # Before authentication: a socket refused for maintenance costs no session or database
        # work (the state is read once per MAINTENANCE_CHECK_INTERVAL per process).
        if (state := await maintenance.in_effect()) is not None:
            await self.refuse_maintenance(state)
            return
        # A client closed 4429 that reconnects at once: refused before authentication when its
        # credentials are the ones this process knows cooling down (a dict lookup, no database).
        if left := cooldown_before_auth(self.scope):
            await self.refuse_cooling_down(None, left)
            return
        try:
            identity = await authenticate(self.scope)
        except AuthenticationFailed as exc:
            await self.refuse(exc.code, exc.message)
            return
        if identity is None:
            await self.refuse(ErrorCode.UNAUTHORIZED, UNAUTHORIZED_MESSAGE)
            return
        # This process's own record (the only one without the layer's cooldown extension); with it,
        # the place's request below asks the layer too, in the same round trip.
        if left := cooldown_known(identity.pk):
            await self.refuse_cooling_down(identity.pk, left)
            return
        # Before the database: refused over the cap, or with the layer down, in a round trip or two.
        membership = self.membership = Membership(self.channel_layer, self.channel_name)
        if not await self.take_place(membership, identity.pk):
            return
        services = {cls.channel: cls(self) for cls in self.service_classes()}
        try:
            # One trip to the database thread, with the connects waiting for it too: the token's user
            # (if not read yet) and the snapshots.
            self.user, read, credentials = await read_together(identity, services)
        except AuthenticationFailed as exc:
            await membership.leave()
            await self.refuse(exc.code, exc.message)  # self.services stays empty: no push gets through
            return
        self.services = services
        # The endpoint label is the consumer's class, not the path: a path may carry what a client chose.
        self.meter = metrics.SocketMeter(type(self).__name__, frozenset((GATEWAY_CHANNEL, *services)))
        await self.accept()
        if self.ending is None:  # not ended during the accept: undo_connect would not take it out
            sockets.add(self.user.pk, self.channel_name, self.scope.get("path", ""), tuple(services))
            self.meter.opened()
            # On wsgateway's Redis layer the place made the user online already, in the cap's round trip.
            await presence.arrive(self.channel_layer, self.user.pk, self.channel_name, membership.announce())
            status.arrive(self.channel_layer, self.channel_name)
        window = OutboundWindow(gateway_settings.OUTBOUND_WINDOW, self.user.pk)
        self.transport.open(window, gateway_settings.MAX_SEND_SIZE)
        user = {"id": self.user.pk, "username": self.user.get_username()}
        await self.send_frame(
            GATEWAY_CHANNEL, {"user": user, "services": list(services), "window": window.size}
        )
        await self.send_service_snapshots(read)
        membership.keep()
        if layer_reaches_other_processes():
            self.watchdog = watchdog_for(self.channel_layer)
            self.watchdog.register(self)
        self.recheck = LoginRecheck(credentials, self.login_ended)
        self.recheck.schedule()
        # Robust: a receiver's exception is logged by Django (logger "django.dispatch", with its
        # traceback) and costs neither this socket nor its cleanup.
        await client_connected.asend_robust(
            sender=self.__class__, user=self.user, channel_name=self.channel_name, scope=self.scope
        )

    async def send_service_snapshots(self, read: snapshots.Snapshots | None = None) -> None:
        """Send each service's connect frame, from ``read`` when they were read with the user."""
        if read is None:
            read = await database_sync_to_async(snapshots.read)(self.services, self.user)
        for channel, service in self.services.items():
            if channel in read:
                outcome = snapshots.settled(*read[channel])
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
        await self.catch_up()  # the layer dropped pushes for this socket; the turn is held already

    async def catch_up(self) -> None:
        """Re-join the groups (an outage of Redis loses them, an overflow may drop a queue from them),
        re-check the login (a revocation may have been lost too), then resend the on-connect frames,
        which carry what was missed. Under the turn."""
        if self.transport.closed or self.membership is None or self.recheck is None:  # ended meanwhile
            return
        try:
            await self.membership.join()
        except Exception as exc:
            self.layer_failed(exc)  # down again: the watchdog resyncs this socket on the next recovery
            return
        if (verdict := await self.recheck.check_now()) is not None:
            await self.login_ended(verdict)
            return
        await self.send_frame(GATEWAY_CHANNEL, {"resync": True})
        await self.send_service_snapshots()
        metrics.increment(metrics.SOCKETS_RESYNCED)

    async def undo_connect(self) -> None:
        """Give back what the connect took, tell the services and the receivers of
        ``client_disconnected``. Every step runs whatever the one before it did; none raises."""
        if self.watchdog is not None:
            self.watchdog.unregister(self)
            self.watchdog = None  # a resync asked for from now on has nothing to do
        if self.recheck is not None:
            self.recheck.stop()
        await self.asked.drop_all(self)
        if self.membership is not None:
            await self.membership.leave()
        if self.user is None:  # refused, or ended before it was authenticated: never accepted
            return
        sockets.discard(self.user.pk, self.channel_name)  # before the receivers, who may ask
        if self.meter is not None:
            self.meter.closed(self.transport.close_code)
        await presence.depart(self.channel_layer, self.user.pk, self.channel_name)
        status.depart(self.channel_layer, self.channel_name)
        for channel, service in self.services.items():
            try:
                await service.on_disconnect(self.user)
            except Exception:
                # Not call_service: the client is gone, so there is no one to send an error frame to.
                logger.exception("wsgateway service %r failed on disconnect", channel)
        await client_disconnected.asend_robust(
            sender=self.__class__,
            user=self.user,
            channel_name=self.channel_name,
            code=self.transport.close_code,
        )
        # Each service holds the consumer (its ``connection``): without this, a closed socket would be
        # a reference cycle that only a full collection frees. No push gets through an empty dict.
        self.services = {}

    @classmethod
    def service_classes(cls) -> list[type[Service]]:
        classes = service_classes()
        if cls.service_channels is not None:
            classes = [service for service in classes if service.channel in cls.service_channels]
        return classes

    # -- client frames: at the door, then in their turn ------------------------------------

    def limits(self) -> InboundLimiter:
        """The socket's inbound limits, made when first needed."""
        if self.limiter is None:
            self.limiter = InboundLimiter.for_user(getattr(self.user, "pk", None))
        return self.limiter

    async def admit(self, message: Message) -> Decoded | None:
        """Hold a client frame to the rate limits before it is decoded, and take an acknowledgement at
        once: a frame refused costs the buckets' arithmetic, and its answer (see :meth:`refuse_frame`)."""
        limiter = self.limits()
        raw = frames.raw_of(message)
        # Known without reading it: a frame over MAX_MESSAGE_SIZE closes the socket, refused or not.
        read: Decoded | None = None
        if frames.too_big(raw, gateway_settings.MAX_MESSAGE_SIZE):
            read = frames.MessageTooBig(gateway_settings.MAX_MESSAGE_SIZE)

        def is_ack() -> bool:
            # Asked only when the buckets have a token and the inbox is full, where only an ack goes
            # on: a handler or a push may be waiting for exactly it (see wsgateway.flow). An ack is small.
            nonlocal read
            if read is None and len(raw) <= PEEK_SIZE:
                read = self.decode(message)
            return isinstance(read, frames.Frame) and frames.is_ack(read)

        if wait := limiter.admit(len(self.inbox), ack=is_ack):
            await self.refuse_frame(message, wait, read)
            return None
        item = read if read is not None else self.decode(message)
        if isinstance(item, frames.Frame) and self.asked.holds(item):
            limiter.answered()  # the server asked for it: it costs the client's budget nothing
        if isinstance(item, frames.Frame) and frames.is_ack(item):
            await self.take_ack(item)
            return None
        return item

    async def refuse_frame(self, message: Message, wait: float, read: Decoded | None = None) -> None:
        """Answer a frame over the rate limits with ``rate_limited``, unhandled; or close with 4429, and
        refuse the user's new sockets for RATE_LIMIT_COOLDOWN. ``read``: what was decoded of it at
        the door, if anything. The answer echoes the frame's channel and id when the frame is
        small enough to read cheaply (PEEK_SIZE) and has them; else they are null."""
        assert self.limiter is not None
        user_id = getattr(self.user, "pk", None)
        if self.limiter.refuse(user_id) is Refusal.CLOSE:
            # The reason in an error frame too: daphne drops a close's reason (see docs/protocol.md);
            # and when to come back, which wsgateway.js waits for (see wsgateway.codes).
            error = self.error_text(
                GATEWAY_CHANNEL,
                ErrorCode.TOO_MANY_FRAMES,
                TOO_MANY_FRAMES_REASON,
                details={"retry_after": gateway_settings.RATE_LIMIT_COOLDOWN},
            )
            # The cool-down before the frame and the close: a server may wait in the close for the
            # client's own close frame (uvicorn's legacy protocol does), and a client that reconnected
            # as soon as it read the frame, without answering the close, got in. The frame is then the
            # last before the close: what goes out while the layer takes the cool-down goes before it.
            await start_cooldown(self.channel_layer, self.scope, user_id)
            await self.transport.send_text(error, wait=False)
            await self.close(CloseCode.TOO_MANY_REQUESTS, TOO_MANY_FRAMES_REASON)
            return
        if isinstance(read, frames.MessageTooBig):
            await self.close(CloseCode.MESSAGE_TOO_BIG)
            return
        if read is None and len(frames.raw_of(message)) <= PEEK_SIZE:
            read = self.decode(message)
        channel, frame_id = (
            (read.channel, read.id) if isinstance(read, frames.Frame | frames.FrameError) else (None, None)
        )
        text = gettext("Too many frames: this one was not handled. Retry in %(seconds).2f s.")
        error = self.error_text(channel, ErrorCode.RATE_LIMITED, text % {"seconds": wait}, frame_id)
        await self.transport.send_text(error, wait=False)

    async def take_ack(self, frame: frames.Frame) -> None:
        """An acknowledgement, taken as it is read: a send may be waiting for it."""
        assert self.transport.window is not None
        try:
            self.transport.window.acknowledge(frame.payload.get("data"))
        except GatewayError as exc:
            await self.transport.send_text(
                self.error_text(GATEWAY_CHANNEL, exc.code, exc.message, frame.id), wait=False
            )
            return
        if frame.id is not None:
            await self.transport.send_text(frames.data(GATEWAY_CHANNEL, {}, frame.id), wait=False)

    async def receive_frame(self, frame: frames.Frame) -> None:
        """Answer one client frame through the service of its channel."""
        if self.asked.next_deadline <= (now := time.time()):
            await self.asked.expire_due(self, now)
        if frame.reply is not None:
            await self.asked.on_reply(self, frame)
            return
        channel, frame_id = frame.channel, frame.id
        if self.meter is not None:
            self.meter.received(channel)
        if channel == GATEWAY_CHANNEL:
            reply = await self.call_service(self.gateway_message(frame.payload), channel, frame_id)
        elif channel in self.services:
            service = self.services[channel]
            reply = await self.call_service(service.on_message(self.user, frame.payload), channel, frame_id)
        else:
            message = gettext("No service on channel %(channel)s.") % {"channel": repr(channel)}
            await self.send_error(channel, ErrorCode.UNKNOWN_CHANNEL, message, frame_id)
            return
        if reply is not _FAILED and (reply is not None or frame_id is not None):
            await self.send_frame(channel, reply if reply is not None else {}, frame_id)

    async def gateway_message(self, payload: Any) -> Any:
        action = payload.get("action") if isinstance(payload, dict) else None
        if action == "ping":
            return {"action": "pong"}
        raise GatewayError(ErrorCode.UNKNOWN_ACTION, UNKNOWN_GATEWAY_ACTION)

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

    # -- channel-layer events -----------------------------------------------------------

    async def gateway_push(self, event: dict[str, Any]) -> None:
        service = self.services.get(event["channel"])
        if service is not None and event.get("exclude") != self.channel_name:
            if frames.size(event["text"]) > self.transport.send_limit:
                # Encoded by a process with a larger MAX_SEND_SIZE: sent, it would close this socket.
                metrics.increment(metrics.SEND_TOO_LARGE)
                logger.warning("wsgateway: a push on channel %r was too large to send", event["channel"])
                return
            await self.transport.send_text(event["text"])
            if self.meter is not None:
                self.meter.sent(event["channel"])
            if (pushed_at := event.get("at")) is not None:
                metrics.push_delivered(pushed_at)
            if (seq := event.get("seq")) is not None:
                service.push_sent(seq, event.get("first_seq", seq))

    async def gateway_revoke(self, event: dict[str, Any]) -> None:
        """A login that ended, a logout, ``close_sockets()`` (see wsgateway.revocation)."""
        if self.recheck is not None and revocation.matches(event, self.recheck.credentials):
            in_close, details = bool(event.get("reason_in_close")), event.get("details")
            await self.revoke(
                event["error"], event["reason"], event["code"], in_close=in_close, details=details
            )

    async def gateway_resync(self, event: dict[str, Any]) -> None:
        """A push to this user failed somewhere and the layer is back (wsgateway.repairs): catch up,
        as after an overflow (the turn is held already)."""
        await self.catch_up()

    async def gateway_recheck(self, event: dict[str, Any]) -> None:
        if self.recheck is not None:  # recheck_user_sockets(): a change that sent no signal
            self.recheck.now()

    async def gateway_request(self, event: dict[str, Any]) -> None:
        if await self.asked.on_request(self, event, self.transport.send_limit):
            self.limits().expect_answer(gateway_settings.MAX_PENDING_REQUESTS)

    async def gateway_request_cancel(self, event: dict[str, Any]) -> None:
        await self.asked.on_cancel(self, event["request"])

    async def login_ended(self, verdict: revocation.Verdict) -> None:
        await self.revoke(verdict.error, verdict.message)  # needs no turn: see revoke

    async def revoke(
        self,
        error: str,
        message: str | Promise,
        code: int = CloseCode.UNAUTHORIZED,
        *,
        in_close: bool = False,
        details: dict[str, Any] | None = None,
    ) -> None:
        """The login ended, or the site closes the socket: say why, and close at once, with or without
        the turn (see Transport.abort). A ``message`` from the layer is English (revocation.revoke_event),
        translated here; ``in_close``: the close frame carries it too (``close_sockets()``)."""
        if self.recheck is not None:
            self.recheck.stop()
        with self.speaking():  # gettext("") would be the catalog's header
            text = gettext(message) if isinstance(message, str) and message else str(message)
            error_frame = frames.error(GATEWAY_CHANNEL, error, text, details=details)
        await self.transport.abort(error_frame, code, text if in_close else None)

    # -- frames to the client -----------------------------------------------------------

    async def send_text(self, text: str) -> None:
        await self.transport.send_text(text)

    async def send_frame(self, channel: str, payload: Any, frame_id: frames.FrameId | None = None) -> None:
        await self.transport.send_frame(channel, payload, frame_id)
        if self.meter is not None:
            self.meter.sent(channel)


class NotifierConsumer(GatewayConsumer):
    """Only the "notifications" channel, for ``ws/notifications/``."""

    service_channels = ("notifications",)


class ClipboardConsumer(GatewayConsumer):
    """Only the "clipboard" channel, for ``ws/clipboard/``."""

    service_channels = ("clipboard",)
