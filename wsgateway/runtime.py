"""How a wsgateway consumer runs: two loops that take turns, the door (a client frame decoded once,
as it is read), dispatch, the end (run once, however the consumer ends), and layer failures.

This is to ``consumers.py`` what Channels' ``consumer.py`` is to ``generic/websocket.py``:
the machinery under the protocol. :class:`TurnTakingConsumer` replaces Channels'
``AsyncConsumer.__call__`` and its ``await_many_dispatch``; the protocol (connect,
frames, services) is the subclass's.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from typing import TYPE_CHECKING, Any, ClassVar

from channels.consumer import AsyncConsumer
from channels.exceptions import StopConsumer
from channels.layers import get_channel_layer
from django.core.exceptions import ImproperlyConfigured
from django.utils.functional import Promise

from . import collector, frames, metrics
from .codes import CloseCode
from .conf import gateway_settings
from .layers.extensions import OVERFLOW, QUEUED, RECEIVE_NOWAIT, URGENT, supports
from .transport import Message, SocketState, Transport

logger = logging.getLogger("wsgateway")

#: Prefixes of the message types whose handlers skip Channels' per-message close_old_connections
#: (see TurnTakingConsumer.dispatch).
OWN_MESSAGE_TYPES = ("gateway.", "websocket.")
#: Most queued layer messages dispatched in a row while no client frame waits (one waiting has its
#: turn after the layer message being dispatched).
DRAIN_LIMIT = 64
#: Seconds the layer loop waits after the layer failed to deliver, before it asks again.
LAYER_RETRY_DELAY = 1.0

#: What a client frame is decoded to (see TurnTakingConsumer.decode).
Decoded = frames.Frame | frames.FrameError | frames.MessageTooBig
#: What the door makes of a client message (see TurnTakingConsumer.screen).
Inbound = Decoded | Message


async def cancel_all(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel the tasks and wait for them to end, whatever they raise. A function of its own, so that
    no frame that outlives the wait (a traceback's) holds them."""
    running = [task for task in tasks if task is not None]
    for task in running:
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)


class TurnTakingConsumer(AsyncConsumer):  # type: ignore[misc]
    """Channels' ``AsyncConsumer``, with messages taken by two long-lived loops.

    The application task reads the client's messages (from the server's ``receive``) and passes
    each through :meth:`screen` as it comes, which decodes it once; a task that lives while any
    wait hands what it made of them to :meth:`handle` (see :meth:`serve`). The channel layer's are
    dispatched the same way on a layer with the ``queued`` extension (wsgateway's): the layer calls
    :meth:`layer_queued` as one is queued, and a task lives while any wait (:meth:`dispatch_layer`);
    on another layer, one more task waits in its ``receive`` for the socket's life
    (:meth:`serve_layer`). Either drains what the layer already holds for this channel (the
    ``receive_nowait`` extension) before the client gets a turn. The ``turn`` lock keeps
    Channels' rule of one handler at a time. Channels instead makes a
    task and an ``asyncio.wait`` for every message: objects that outlive a young collection,
    are promoted, and make the full collections of a server with many sockets come sooner.

    Only the event types in :attr:`layer_events` are dispatched from the layer. Anyone who
    can ``group_send`` to a group this socket joined can put any ``type`` in an event; one
    that names an internal step or a client message (``websocket.disconnect``) must not run
    it, so any other type is logged and dropped.

    On a layer with the ``overflow`` extension, a channel that lost messages (its queue was
    full, or they expired unread) is reported to :meth:`layer_overflowed`, once per episode.
    That is a question this loop asks the layer, not an event: nobody can send it.

    On a layer with the ``urgent`` extension, an urgent event (a revocation) is handed over as it
    reaches the process, and dispatched at once by :meth:`dispatch_urgent`, without the turn: it
    waits neither behind the queue nor behind a handler that holds the turn while it waits for room
    in the window. Its handler must need no turn (the gateway's closes through Transport.abort).
    """

    #: The layer event types this consumer handles; a subclass adds its own to the set.
    layer_events: ClassVar[frozenset[str]] = frozenset()

    #: Held by whichever loop is dispatching: one handler at a time, as in Channels.
    turn: asyncio.Lock
    #: What :meth:`screen` made of the client's messages (a decoded frame, say), waiting for their
    #: turn. A list while anything waits, not a deque: it holds a few items at most, and an empty deque
    #: costs every socket 760 bytes against a list's 56; the shared empty tuple while nothing does.
    inbox: list[Any] | tuple[()]
    #: The task dispatching :attr:`inbox`, while it holds anything.
    dispatcher: asyncio.Task[None] | None = None
    #: The task dispatching what the layer queued for this channel, while it holds anything (a layer
    #: with the ``queued`` extension; see :meth:`layer_queued`).
    layer_dispatcher: asyncio.Task[None] | None = None
    #: The task reading the client (:meth:`serve`), while it runs: what a failed handler wakes.
    serving: asyncio.Task[Any] | None = None
    #: What :meth:`dispatch_layer` runs in: a copy of :meth:`serve`'s, as a long-lived layer task had.
    layer_context: contextvars.Context
    #: Everything sent goes through it (see wsgateway.transport).
    transport: Transport
    #: The one run of :meth:`undo_connect`, once the socket has ended.
    ending: asyncio.Future[None] | None = None
    #: Urgent layer events waiting for :meth:`dispatch_urgent`, made by the first. It holds more than
    #: one only while a handler closes the socket, after which :meth:`take_urgent` drops them all.
    urgent: list[Message] | None = None
    #: The task dispatching :attr:`urgent`, while it holds anything.
    urgent_dispatcher: asyncio.Task[None] | None = None
    #: The loop this consumer runs on, where its urgent events are dispatched (see :meth:`take_urgent`).
    home: asyncio.AbstractEventLoop
    #: Whether the handler of ``websocket.connect`` has returned: what it sets up is there.
    connect_handled = False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        collector.start()  # once per process: start-up is done when the first socket comes
        # In this frame, not one more coroutine's: that would be a frame more a socket, held for its life.
        try:
            self.scope = scope
            self.transport = Transport(send)
            self.channel_layer = get_channel_layer(self.channel_layer_alias)
            if self.channel_layer is None:
                raise ImproperlyConfigured("wsgateway needs a channel layer (see check wsgateway.E006).")
            try:
                # wsgateway's Redis layer subscribes on a process's first socket: that fails while Redis
                # is down, and waits while it is paused, until the server drops the handshake without a
                # word (daphne, after 5 s). Bounded, so that the subclass can refuse it properly.
                async with asyncio.timeout(gateway_settings.LAYER_CONNECT_TIMEOUT):
                    self.channel_name = await self.channel_layer.new_channel()
            except Exception as exc:
                await self.no_channel(exc, receive, send)
                return
            try:
                await self.serve(receive)
            except StopConsumer:
                pass
            finally:
                # However the application ends: the client's disconnect (already done then), a handler
                # that raised, or a cancel (daphne's application_close_timeout, its shutdown). An
                # exception still reaches the server, which logs it.
                await self.end()
        finally:
            collector.ended()  # what a closed socket leaves frozen counts towards the next thaw

    async def no_channel(self, exc: Exception, receive: Any, send: Any) -> None:
        """The layer gave no channel for this socket (``exc``; TimeoutError after
        ``LAYER_CONNECT_TIMEOUT``), before anything was read: a subclass refuses the handshake
        through the server's ``send``. Nothing was set up, so there is nothing to end."""
        raise exc

    async def websocket_disconnect(self, message: Message) -> None:
        await self.end(message.get("code"))
        raise StopConsumer()

    async def end(self, code: int | None = None) -> None:
        """The socket has ended: drop what is still sent, and :meth:`undo_connect`, once.

        Called on the client's disconnect and again when the application ends, whichever way it
        ends; only the first call runs :meth:`undo_connect`, and the second waits for it.
        """
        self.transport.end(code)
        if self.ending is None:
            self.ending = asyncio.ensure_future(self.undo_connect())
        # Shielded: daphne cancels an application that is slow to end, once a second; a second
        # cancel must not cut the steps still to come.
        await asyncio.shield(self.ending)

    async def undo_connect(self) -> None:
        """Give back what the connect took; a subclass's steps must not raise."""

    async def serve(self, receive: Any) -> None:
        """Read the client's messages here, the layer's in a second task; end when either ends.

        The client's messages are read as soon as the server has them, and :meth:`screen`ed
        then, even while a handler runs: what it lets through waits in :attr:`inbox` for its turn,
        and a task hands the inbox to :meth:`handle` while it holds anything (it ends once the
        inbox is empty, so an idle socket has none). The server's own queue (daphne's is
        unbounded) is thus kept empty, and a subclass bounds what waits here.
        """
        self.turn = asyncio.Lock()
        self.inbox = ()
        this = asyncio.current_task()
        assert this is not None
        loop = asyncio.get_running_loop()
        layer: asyncio.Task[None] | None = None
        listens = supports(self.channel_layer, QUEUED) and supports(self.channel_layer, RECEIVE_NOWAIT)
        if listens:
            # No task for the layer while nothing is queued: an idle socket's was a task, its
            # coroutines and a future, waiting in receive() for its life (about 1 KB).
            self.home, self.serving, self.layer_context = loop, this, contextvars.copy_context()
            self.watch_urgent()
            self.channel_layer.watch_queued(self.channel_name, self.layer_queued)
        else:
            layer = loop.create_task(self.serve_layer(this))
        try:
            while True:
                item = await self.screen(await receive())
                if item is None:
                    continue
                if isinstance(self.inbox, list):
                    self.inbox.append(item)
                else:
                    self.inbox = [item]
                if self.dispatcher is None:
                    self.dispatcher = loop.create_task(self.dispatch_inbox(this))
                if isinstance(item, dict) and item["type"] == "websocket.disconnect":
                    # ASGI's last message: read no more, and wait for its handler to end this task.
                    # uvicorn's legacy protocol (--ws websockets) answers every later receive() with
                    # another disconnect at once, without yielding: the loop spun, and starved every
                    # other socket of the process (handshakes timed out).
                    await loop.create_future()
        except asyncio.CancelledError:
            failure = next(
                (
                    task.exception()
                    for task in (layer, self.layer_dispatcher, self.dispatcher)
                    if task is not None and task.done() and not task.cancelled() and task.exception()
                ),
                None,
            )
            if failure is None:
                raise
            # A handler failed (or a disconnect's StopConsumer) and cancelled this task: end as
            # Channels would, with its exception.
            this.uncancel()
            try:
                raise failure from None
            finally:
                del failure  # see below
        finally:
            if listens:
                self.serving = None  # before anything yields: no dispatcher starts after this
                self.channel_layer.watch_queued(self.channel_name, None)
                self.unwatch_urgent()
            await cancel_all(layer, self.layer_dispatcher, self.dispatcher, self.urgent_dispatcher)
            # No reference cycle left behind: the exception that ends the socket holds this frame
            # (its traceback), and the finished tasks hold theirs, whose frames hold the consumer. A
            # cycle through them made every object of a closed socket garbage that only a full
            # collection frees, where reference counting frees it at once.
            self.dispatcher = self.urgent_dispatcher = self.layer_dispatcher = None
            del layer, this

    async def screen(self, message: Message) -> Inbound | None:
        """What to queue for :meth:`handle` of a client message, or None to drop it; called as soon
        as it is read, without the turn, while a handler may be running.

        A frame is decoded here, once: what is queued is the frame, or why it could not be read
        (answered in its turn, in order with the replies before it). Once the socket is open,
        :meth:`admit` holds it to the limits *before* it is decoded, and may answer it at once or
        drop it, cheaply: a flood goes through here at the rate the client sends.
        """
        kind = message["type"]
        if kind == "websocket.disconnect":
            # The client has gone: the frames still waiting for their turn are dropped, not handled.
            self.transport.end(message.get("code"))
            return message
        if kind != "websocket.receive":
            return message
        if self.transport.closed:
            metrics.increment(metrics.INBOUND_DROPPED_AFTER_CLOSE)
            return None
        if self.transport.state is SocketState.CONNECTING:
            return self.decode(message)
        return await self.admit(message)

    @staticmethod
    def decode(message: Message) -> Decoded:
        """The frame in a client message, or why it cannot be read (see frames.decode)."""
        try:
            return frames.decode(message, gateway_settings.MAX_MESSAGE_SIZE)
        except (frames.MessageTooBig, frames.FrameError) as exc:
            return exc

    async def admit(self, message: Message) -> Decoded | None:
        """What of a client message of an open socket waits for its turn: :meth:`decode`'s, or None
        when it was answered, or refused, at once. A subclass holds it to its limits before it
        decodes it."""
        return self.decode(message)

    async def handle(self, item: Inbound) -> None:
        """Handle what :meth:`screen` queued, under the turn."""
        if isinstance(item, dict):
            await self.dispatch(item)
            if item["type"] == "websocket.connect":
                self.connect_handled = True
        elif self.transport.closed:
            # Closed by either side while it waited for its turn (a revoked login, say): a frame the
            # client sent before reading the close reaches no service, so nothing of it is stored.
            metrics.increment(metrics.INBOUND_DROPPED_AFTER_CLOSE)
        elif isinstance(item, frames.MessageTooBig):
            await self.close(CloseCode.MESSAGE_TOO_BIG)
        elif isinstance(item, frames.FrameError):
            await self.send_error(item.channel, item.code, item.message, item.id)
        else:
            await self.receive_frame(item)

    async def receive_frame(self, frame: frames.Frame) -> None:
        """Answer a client frame that reads well, in its turn."""
        raise NotImplementedError

    async def send_error(
        self, channel: str | None, code: str, message: str | Promise, frame_id: frames.FrameId | None = None
    ) -> None:
        metrics.errored(code)
        await self.transport.send_text(frames.error(channel, code, message, frame_id))

    if TYPE_CHECKING:  # the WebSocket consumer's (wsgateway.refusals.Handshake's, for wsgateway's)

        async def close(
            self, code: int | bool | None = None, reason: str | Promise | None = None
        ) -> None: ...

    async def send_to_server(self, message: Message) -> None:
        """This consumer's ``base_send``: Channels' accept and close, and a subclass's ``send_json``,
        through the transport."""
        if message["type"] == "websocket.send" and "text" in message:
            await self.transport.send_text(message["text"])
        else:
            await self.transport.send(message)

    #: A method, not an attribute set per socket as Channels sets it: one bound method fewer that
    #: every socket would hold for its life.
    base_send = send_to_server

    async def dispatch_inbox(self, client_loop: asyncio.Task[Any]) -> None:
        """Handle what waits in :attr:`inbox`, in order, each under the turn."""
        try:
            while isinstance(self.inbox, list) and self.inbox:
                async with self.turn:
                    # Taken out in its turn: until then the layer loop sees it waiting (serve_layer).
                    await self.handle(self.inbox.pop(0))
            self.inbox = ()  # an idle socket's is the shared empty tuple: one tracked list fewer
        except asyncio.CancelledError:
            raise
        except BaseException:
            # As in serve_layer: wake the client's loop, which re-raises this (StopConsumer too).
            client_loop.cancel()
            raise
        self.dispatcher = None

    def layer_queued(self) -> None:
        """The layer's listener of this channel (the ``queued`` extension): a message was queued, in
        its sender's call. A task dispatches what is queued, and ends once nothing is."""
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not self.home:
            # A sender in another thread (sync code on the in-process layer): this socket's loop decides.
            self.home.call_soon_threadsafe(self.layer_queued)
            return
        if self.layer_dispatcher is None and self.serving is not None:
            self.layer_dispatcher = self.home.create_task(self.dispatch_layer(), context=self.layer_context)

    async def dispatch_layer(self) -> None:
        """Dispatch what the layer holds for this channel, in order, under the turn, as
        :meth:`serve_layer` does for each message it receives; then end."""
        layer = self.channel_layer
        overflows = supports(layer, OVERFLOW)
        try:
            while True:
                while (message := layer.receive_nowait(self.channel_name)) is not None:
                    async with self.turn:
                        await self.dispatch_layer_event(message)
                        await self.drain_layer(True, overflows)
                if not (overflows and layer.take_overflow(self.channel_name)):
                    # Nothing queued, and no await from that look to the end: a message queued after
                    # it finds no dispatcher, and its listener call starts one.
                    break
                # Lost while nothing was left to dispatch (expired unread): reported all the same;
                # then look again, for what came while the report was sent (its listener call found
                # this task still running, and started none).
                async with self.turn:
                    await self.layer_overflowed()
        except asyncio.CancelledError:
            raise
        except BaseException:
            # As in serve_layer: wake the client's loop, which re-raises this.
            if self.serving is not None:
                self.serving.cancel()
            raise
        self.layer_dispatcher = None

    async def drain_layer(self, drains: bool, overflows: bool) -> None:
        """After a layer message, under the turn: what the layer holds already, while no client frame
        waits and up to DRAIN_LIMIT (``drains``); then whether the layer lost any (``overflows``)."""
        layer = self.channel_layer
        if drains:
            for _ in range(DRAIN_LIMIT):
                if self.inbox:
                    # Client frames wait: they have their turn first. An answer to a
                    # request frees the place in the socket's table the next one needs.
                    break
                message = layer.receive_nowait(self.channel_name)
                if message is None:
                    break
                await self.dispatch_layer_event(message)
        if overflows and layer.take_overflow(self.channel_name):
            await self.layer_overflowed()

    def watch_urgent(self) -> bool:
        """Have the layer hand this channel's urgent events to :meth:`take_urgent`, if it can."""
        if not supports(self.channel_layer, URGENT):
            return False
        self.home = asyncio.get_running_loop()
        self.channel_layer.watch_urgent(self.channel_name, self.take_urgent)
        return True

    def unwatch_urgent(self) -> None:
        if supports(self.channel_layer, URGENT):
            self.channel_layer.watch_urgent(self.channel_name, None)

    async def serve_layer(self, client_loop: asyncio.Task[Any]) -> None:
        """The layer's messages on a layer without the ``queued`` extension: received here, one
        task for the socket's life."""
        layer = self.channel_layer
        # Flags, not the layer's bound methods: this frame lives as long as the socket, and each
        # bound method in it would be one more object per socket for the cyclic collector to walk.
        drains, overflows = supports(layer, RECEIVE_NOWAIT), supports(layer, OVERFLOW)
        watches = self.watch_urgent()
        try:
            while True:
                try:
                    message = await layer.receive(self.channel_name)
                except Exception as exc:
                    # The layer is down: keep the socket, and ask again after a pause.
                    self.layer_failed(exc)
                    await asyncio.sleep(LAYER_RETRY_DELAY)
                    continue
                async with self.turn:
                    await self.dispatch_layer_event(message)
                    await self.drain_layer(drains, overflows)
        except asyncio.CancelledError:
            raise
        except BaseException:
            # A layer handler raised: the client's loop waits on the server's queue, so wake it
            # by cancelling it; it re-raises this exception once this task is done.
            client_loop.cancel()
            raise
        finally:
            if watches:
                self.unwatch_urgent()

    def take_urgent(self, message: Message) -> None:
        """The layer's watcher of this channel: an urgent event, in its sender's call (see
        :meth:`dispatch_urgent`). Once the socket is closing, there is nothing left to do."""
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not self.home:
            # A sender in another thread (sync code on the in-process layer): this socket's loop decides.
            self.home.call_soon_threadsafe(self.take_urgent, message)
            return
        if self.transport.closed:
            return
        if self.urgent is None:
            self.urgent = []
        self.urgent.append(message)
        if self.urgent_dispatcher is None:
            # A context of its own, not the sender's (the Redis reader's, another socket's handler's).
            self.urgent_dispatcher = self.home.create_task(
                self.dispatch_urgent(), context=contextvars.Context()
            )

    async def dispatch_urgent(self) -> None:
        """Dispatch the urgent events in order: without the turn once the connect is handled, so
        that nothing holding it delays them; before, in the connect's wake, which sets up what their
        handlers read (a revocation racing a connect still closes the socket once it is accepted)."""
        try:
            while self.urgent:
                message = self.urgent.pop(0)
                try:
                    if not self.connect_handled:
                        async with self.turn:
                            await self.dispatch_layer_event(message)
                    else:
                        await self.dispatch_layer_event(message)
                except Exception:
                    # Not the layer loop's failure: the socket goes on, its re-check still ends a login.
                    logger.exception("wsgateway: an urgent layer event failed on %s", self.channel_name)
        finally:
            self.urgent_dispatcher = None

    async def dispatch_layer_event(self, message: Message) -> None:
        kind = message.get("type")
        if kind in self.layer_events:
            await self.dispatch(message)
        else:
            logger.warning("wsgateway: ignored a channel-layer event of type %r, which no socket takes", kind)

    async def dispatch(self, message: Message) -> None:
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

    async def layer_overflowed(self) -> None:
        """The layer dropped messages for this channel; called under the turn, after a batch of
        layer events, once per overflow episode (the layer reports it once the queue is empty).

        The layer has logged the episode. A subclass brings its client back in step here (the
        gateway resends its connect frames); it must not take :attr:`turn`, which it holds.
        """
        logger.warning(
            "wsgateway: messages for %s were dropped; %s does not resync its client",
            self.channel_name,
            type(self).__qualname__,
        )

    def layer_failed(self, exc: Exception) -> None:
        """The layer failed to deliver to this socket; it is asked again after LAYER_RETRY_DELAY.

        Every socket of a process sees the same outage once a second: a subclass reports it
        to something that logs it once (the gateway's watchdog), so this logs at debug only.
        """
        logger.debug("wsgateway: the channel layer failed to deliver: %r", exc)
