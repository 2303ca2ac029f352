"""The WebSocket consumers: one implementation, mounted with all services or with one."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, ClassVar

from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer
from django.core.exceptions import ImproperlyConfigured

from .auth import Identity, authenticate
from .codes import PRIVATE_CLOSE_CODES, CloseCode, ErrorCode
from .conf import gateway_settings, import_from_setting
from .exceptions import AuthenticationFailed, GatewayError
from .groups import layer_reaches_other_processes, user_group
from .health import LayerWatchdog, watchdog_for
from .layers.extensions import RECEIVE_NOWAIT, supports
from .origin import origin_allowed
from .services.base import Service
from .signals import client_connected, client_disconnected

logger = logging.getLogger("wsgateway")

GATEWAY_CHANNEL = "gateway"
#: Prefixes of the message types whose handlers are this module's (see GatewayConsumer.dispatch).
OWN_MESSAGE_TYPES = ("gateway.", "websocket.")
#: Most queued layer messages dispatched in a row before the client's frames get a turn.
DRAIN_LIMIT = 64

#: Deepest nesting of arrays and objects in a client frame. Python's json raises
#: RecursionError near 1000, and data stored a little below that cannot be encoded
#: again inside a reply or an on-connect frame: stop well short of both.
MAX_NESTING = 100

#: channel -> (payload, None) or (None, the exception the service's snapshot raised)
Snapshots = dict[str, tuple[Any, Exception | None]]


class GatewayConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    """Serves every configured service on one socket, routed by the frame's ``channel``."""

    #: Channels this endpoint serves; ``None`` means every service in ``WSGATEWAY["SERVICES"]``.
    service_channels: ClassVar[tuple[str, ...] | None] = None

    user: Any = None
    session_key: str | None = None
    services: dict[str, Service]
    watchdog: LayerWatchdog | None = None
    #: Held by whichever loop is dispatching (see serve): one handler at a time, as in Channels.
    turn: asyncio.Lock

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.services = {}

    @property
    def channel_layer_alias(self) -> str:
        return gateway_settings.CHANNEL_LAYER

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # AsyncConsumer.__call__, except that messages are taken from the client and from
        # the layer by two long-lived loops (see serve).
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        if self.channel_layer is None:
            raise ImproperlyConfigured("wsgateway needs a channel layer (see check wsgateway.E006).")
        self.channel_name = await self.channel_layer.new_channel()
        self.base_send = send
        try:
            await self.serve(receive)
        except StopConsumer:
            pass

    async def serve(self, receive: Any) -> None:
        """Channels' await_many_dispatch, as two loops that take turns.

        This task dispatches the client's messages; one more task dispatches the layer's,
        and drains what the layer already holds for this channel (``receive_nowait``, an
        extension of wsgateway's layers) before the client gets a turn. The turn lock keeps
        Channels' rule of one handler at a time. Channels instead makes a task and an
        asyncio.wait for every message: objects that outlive a young collection, are
        promoted, and make the full collections of a server with many sockets come sooner.
        """
        self.turn = asyncio.Lock()
        this = asyncio.current_task()
        assert this is not None
        layer = asyncio.get_running_loop().create_task(self.serve_layer(this))
        try:
            while True:
                message = await receive()
                async with self.turn:
                    await self.dispatch(message)
        except asyncio.CancelledError:
            failure = layer.exception() if layer.done() and not layer.cancelled() else None
            if failure is None:
                raise
            # serve_layer failed and cancelled this task: end as Channels would, with its exception.
            this.uncancel()
            raise failure from None
        finally:
            layer.cancel()
            await asyncio.gather(layer, return_exceptions=True)

    async def serve_layer(self, client_loop: asyncio.Task[Any]) -> None:
        drain = self.channel_layer.receive_nowait if supports(self.channel_layer, RECEIVE_NOWAIT) else None
        try:
            while True:
                message = await self.receive_from_layer()
                async with self.turn:
                    await self.dispatch(message)
                    if drain is not None:
                        for _ in range(DRAIN_LIMIT):
                            message = drain(self.channel_name)
                            if message is None:
                                break
                            await self.dispatch(message)
        except asyncio.CancelledError:
            raise
        except BaseException:
            # A layer handler raised: the client's loop waits on daphne's queue, so wake it by
            # cancelling it; it re-raises this exception once this task is done.
            client_loop.cancel()
            raise

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels runs close_old_connections() in its database thread before every
        # handler: one trip to that thread per message, serialised across all sockets.
        # wsgateway's handlers do their database work through database_sync_to_async,
        # which does the same cleanup around each call, so their messages skip it.
        # A subclass's own event types keep Channels' behaviour.
        if message["type"].startswith(OWN_MESSAGE_TYPES):
            handler = getattr(self, message["type"].replace(".", "_"), None)
            if handler is not None:
                await handler(message)
                return
        await super().dispatch(message)

    async def receive_from_layer(self) -> dict[str, Any]:
        try:
            return await self.channel_layer.receive(self.channel_name)  # type: ignore[no-any-return]
        except (asyncio.CancelledError, StopConsumer):
            raise
        except Exception as exc:
            # The layer is down. Keep the socket; the watchdog resyncs it once the layer returns.
            if self.watchdog is not None:
                self.watchdog.report_failure(exc)
            await asyncio.sleep(1.0)
            return {"type": "gateway.noop"}

    # -- connect and disconnect ---------------------------------------------------------

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        if not origin_allowed(self.scope):
            await self.close()  # before accept: daphne answers the handshake with HTTP 403
            return
        try:
            identity = await authenticate(self.scope)
        except AuthenticationFailed as exc:
            await self.refuse(exc.code, exc.message)
            return
        if identity is None:
            await self.refuse(ErrorCode.UNAUTHORIZED, "Log in, or present a bearer token, to connect.")
            return
        services = {cls.channel: cls(self) for cls in self.service_classes()}
        # Join before the on-connect snapshots are read: a push racing this connect
        # is then queued behind them instead of falling between the two.
        group = user_group(identity.pk)
        await self.channel_layer.group_add(group, self.channel_name)
        try:
            # One trip to the database thread: the token's user (if not read yet) and the snapshots.
            self.user, snapshots = await database_sync_to_async(_connect_reads)(identity, services)
        except AuthenticationFailed as exc:
            await self.channel_layer.group_discard(group, self.channel_name)
            await self.refuse(exc.code, exc.message)  # self.services stays empty: no push gets through
            return
        self.session_key, self.services = identity.session_key, services
        await self.accept()
        await self.send_frame(
            GATEWAY_CHANNEL,
            {
                "user": {"id": self.user.pk, "username": self.user.get_username()},
                "services": list(self.services),
            },
        )
        await self.send_service_snapshots(snapshots)
        if layer_reaches_other_processes():
            self.watchdog = watchdog_for(self.channel_layer)
            self.watchdog.register(self)
        await client_connected.asend(
            sender=self.__class__, user=self.user, channel_name=self.channel_name, scope=self.scope
        )

    async def send_service_snapshots(self, snapshots: Snapshots | None = None) -> None:
        """Send each service's connect frame, from ``snapshots`` when they were read with the user."""
        if snapshots is None:
            snapshots = await database_sync_to_async(_read_snapshots)(self.services, self.user)
        for channel, service in self.services.items():
            if channel in snapshots:
                outcome = _settled(*snapshots[channel])
            else:
                outcome = service.on_connect(self.user)
            payload = await self.call_service(outcome, channel)
            if payload is not None and payload is not _FAILED:
                await self.send_frame(channel, payload)

    async def resync(self) -> None:
        """After a layer outage: re-join the user's group, then resend the on-connect frames.

        Called by the watchdog, in its task. The watchdog's slots keep a thousand sockets from
        re-joining at once; the turn keeps the resync from interleaving with this socket's handlers.
        """
        assert self.watchdog is not None
        async with self.watchdog.resync_slots, self.turn:
            await self.dispatch({"type": "gateway.resync"})

    async def gateway_resync(self, event: dict[str, Any]) -> None:
        assert self.watchdog is not None
        try:
            await self.channel_layer.group_add(user_group(self.user.pk), self.channel_name)
        except Exception as exc:
            # Down again: the watchdog resyncs this socket on the next recovery.
            self.watchdog.report_failure(exc)
            return
        await self.send_frame(GATEWAY_CHANNEL, {"resync": True})
        await self.send_service_snapshots()

    async def gateway_noop(self, event: dict[str, Any]) -> None:
        pass

    async def refuse(self, code: str, message: str) -> None:
        """Accept, say why, and close with 4401: "log in first", not "network down"."""
        await self.accept()
        await self.send_error(GATEWAY_CHANNEL, code, message)
        await self.close(CloseCode.UNAUTHORIZED)

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        if self.user is not None:
            if self.watchdog is not None:
                self.watchdog.unregister(self)
            try:
                await self.channel_layer.group_discard(user_group(self.user.pk), self.channel_name)
            except Exception as exc:  # the layer is down; its membership dies with the channel anyway
                logger.info("wsgateway: group_discard failed on disconnect: %s", exc)
            for channel, service in self.services.items():
                try:
                    await service.on_disconnect(self.user)
                except Exception:
                    # Not call_service: the client is gone, so there is no one to send an error frame to.
                    logger.exception("wsgateway service %r failed on disconnect", channel)
            await client_disconnected.asend(
                sender=self.__class__,
                user=self.user,
                channel_name=self.channel_name,
                code=message.get("code"),
            )
        raise StopConsumer()

    @classmethod
    def service_classes(cls) -> list[type[Service]]:
        classes = [import_from_setting(path) for path in gateway_settings.SERVICES]
        if cls.service_channels is not None:
            classes = [service for service in classes if service.channel in cls.service_channels]
        return classes

    # -- client frames ------------------------------------------------------------------

    async def websocket_receive(self, message: dict[str, Any]) -> None:
        text = message.get("text")
        raw = text if text is not None else message.get("bytes") or b""
        if self.too_big(raw):
            await self.close(CloseCode.MESSAGE_TOO_BIG)
            return
        if text is None:
            await self.send_error(
                None, ErrorCode.BINARY_NOT_SUPPORTED, "Frames must be JSON text, not binary."
            )
            return
        try:
            frame = json.loads(text, parse_constant=_reject_constant)
            readable = not _nested_too_deep(text, frame)
        except (ValueError, RecursionError):  # RecursionError: nested too deep for Python's json
            readable = False
        if not readable:
            reason = f"The frame is not valid JSON nested at most {MAX_NESTING} deep."
            await self.send_error(None, ErrorCode.INVALID_JSON, reason)
            return
        await self.receive_json(frame)

    def too_big(self, raw: str | bytes) -> bool:
        limit = gateway_settings.MAX_MESSAGE_SIZE
        if len(raw) * 4 <= limit:  # no UTF-8 text of this many characters can be over the limit
            return False
        size = len(raw.encode("utf-8")) if isinstance(raw, str) else len(raw)
        return size > limit

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not isinstance(content, dict):
            await self.send_error(
                None, ErrorCode.INVALID_FRAME, 'A frame is a JSON object: {"channel", "payload", "id"}.'
            )
            return
        frame_id = content.get("id")
        if "id" in content and (
            type(frame_id) not in (str, int) or (isinstance(frame_id, str) and len(frame_id) > 128)
        ):
            await self.send_error(
                channel_or_none(content.get("channel")),
                ErrorCode.INVALID_ID,
                '"id" must be a string or an integer.',
            )
            return
        channel = content.get("channel")
        if not isinstance(channel, str) or not channel:
            await self.send_error(None, ErrorCode.MISSING_CHANNEL, 'The frame has no "channel".', frame_id)
            return
        if channel == GATEWAY_CHANNEL:
            reply = await self.call_service(self.gateway_message(content.get("payload")), channel, frame_id)
        elif channel in self.services:
            service = self.services[channel]
            reply = await self.call_service(
                service.on_message(self.user, content.get("payload")), channel, frame_id
            )
        else:
            await self.send_error(
                channel, ErrorCode.UNKNOWN_CHANNEL, f"No service on channel {channel!r}.", frame_id
            )
            return
        if reply is not _FAILED and (reply is not None or frame_id is not None):
            await self.send_frame(channel, reply if reply is not None else {}, frame_id)

    async def gateway_message(self, payload: Any) -> Any:
        if isinstance(payload, dict) and payload.get("action") == "ping":
            return {"action": "pong"}
        raise GatewayError(ErrorCode.UNKNOWN_ACTION, 'The gateway channel answers only {"action": "ping"}.')

    async def call_service(self, awaitable: Any, channel: str, frame_id: Any = None) -> Any:
        """Await a service hook; its errors become error frames and never reach Channels."""
        try:
            return await awaitable
        except GatewayError as exc:
            await self.send_error(channel, exc.code, exc.message, frame_id)
        except Exception:
            logger.exception("wsgateway service %r failed", channel)
            await self.send_error(
                channel, ErrorCode.INTERNAL_ERROR, "The server failed to handle this frame.", frame_id
            )
        return _FAILED

    # -- frames to the client -----------------------------------------------------------

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
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

    async def send_frame(self, channel: str, payload: Any, frame_id: Any = None) -> None:
        frame: dict[str, Any] = {"channel": channel, "payload": payload}
        if frame_id is not None:
            frame["id"] = frame_id
        await self.send_json(frame)

    async def send_error(self, channel: str | None, code: str, message: str, frame_id: Any = None) -> None:
        frame: dict[str, Any] = {"channel": channel}
        if frame_id is not None:
            frame["id"] = frame_id
        frame["error"] = {"code": str(code), "message": message}
        await self.send_json(frame)

    # -- channel-layer events -----------------------------------------------------------

    async def gateway_push(self, event: dict[str, Any]) -> None:
        if event.get("exclude") != self.channel_name and event["channel"] in self.services:
            await self.send(text_data=event["text"])

    async def gateway_logout(self, event: dict[str, Any]) -> None:
        if self.session_key is not None and event.get("session_key") == self.session_key:
            await self.send_error(GATEWAY_CHANNEL, ErrorCode.LOGGED_OUT, "The session was logged out.")
            await self.close(CloseCode.UNAUTHORIZED)


_FAILED = object()


def _connect_reads(identity: Identity, services: dict[str, Service]) -> tuple[Any, Snapshots]:
    user = identity.user
    if user is None:
        assert identity.load_user is not None
        user = identity.load_user()
    return user, _read_snapshots(services, user)


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


async def _settled(value: Any, error: Exception | None) -> Any:
    if error is not None:
        raise error
    return value


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON: they could be stored, but never sent back to a browser.
    raise ValueError(f"{name} is not JSON")


def channel_or_none(channel: Any) -> str | None:
    """The frame's channel, if it is one, for echoing in an error frame."""
    return channel if isinstance(channel, str) else None


def _nested_too_deep(text: str, value: Any) -> bool:
    """True when arrays and objects in ``value`` (parsed from ``text``) nest deeper than MAX_NESTING."""
    if text.count("[") + text.count("{") <= MAX_NESTING:  # cannot nest deeper than it has brackets
        return False
    stack = [(value, 1)]
    while stack:  # not recursive: the point is to stay clear of the recursion limit
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_NESTING:
                return True
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False


class NotifierConsumer(GatewayConsumer):
    """Only the "notifications" channel, for ``ws/notifications/``."""

    service_channels = ("notifications",)


class ClipboardConsumer(GatewayConsumer):
    """Only the "clipboard" channel, for ``ws/clipboard/``."""

    service_channels = ("clipboard",)
