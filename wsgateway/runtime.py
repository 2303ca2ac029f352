"""How a wsgateway consumer runs: two loops that take turns, dispatch, and layer failures.

This is to ``consumers.py`` what Channels' ``consumer.py`` is to ``generic/websocket.py``:
the machinery under the protocol. :class:`TurnTakingConsumer` replaces Channels'
``AsyncConsumer.__call__`` and its ``await_many_dispatch``; the protocol (connect,
frames, services) is the subclass's.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

from channels.consumer import AsyncConsumer
from channels.exceptions import StopConsumer
from channels.layers import get_channel_layer
from django.core.exceptions import ImproperlyConfigured

from .layers.extensions import OVERFLOW, RECEIVE_NOWAIT, supports

logger = logging.getLogger("wsgateway")

#: Prefixes of the message types whose handlers skip Channels' per-message close_old_connections
#: (see TurnTakingConsumer.dispatch).
OWN_MESSAGE_TYPES = ("gateway.", "websocket.")
#: Most queued layer messages dispatched in a row before the client's frames get a turn.
DRAIN_LIMIT = 64
#: Seconds the layer loop waits after the layer failed to deliver, before it asks again.
LAYER_RETRY_DELAY = 1.0

Message = dict[str, Any]


class TurnTakingConsumer(AsyncConsumer):  # type: ignore[misc]
    """Channels' ``AsyncConsumer``, with messages taken by two long-lived loops.

    The application task reads the client's messages (from the server's ``receive``) and
    passes each through :meth:`screen` as it comes; a task that lives while any wait dispatches
    them (see :meth:`serve`). One more task dispatches the channel layer's, and drains what the
    layer already holds for this channel (the ``receive_nowait`` extension) before the client gets a turn. The
    ``turn`` lock keeps Channels' rule of one handler at a time. Channels instead makes a
    task and an ``asyncio.wait`` for every message: objects that outlive a young collection,
    are promoted, and make the full collections of a server with many sockets come sooner.

    Only the event types in :attr:`layer_events` are dispatched from the layer. Anyone who
    can ``group_send`` to a group this socket joined can put any ``type`` in an event; one
    that names an internal step or a client message (``websocket.disconnect``) must not run
    it, so any other type is logged and dropped.

    On a layer with the ``overflow`` extension, a channel that lost messages (its queue was
    full, or they expired unread) is reported to :meth:`layer_overflowed`, once per episode.
    That is a question this loop asks the layer, not an event: nobody can send it.
    """

    #: The layer event types this consumer handles; a subclass adds its own to the set.
    layer_events: ClassVar[frozenset[str]] = frozenset()

    #: Held by whichever loop is dispatching: one handler at a time, as in Channels.
    turn: asyncio.Lock
    #: The client's messages read and screened, waiting for their turn.
    #: A list, not a deque: it holds a few frames at most, and an empty deque costs every socket
    #: 760 bytes against a list's 56.
    inbox: list[Message]
    #: The task dispatching :attr:`inbox`, while it holds anything.
    dispatcher: asyncio.Task[None] | None = None
    #: The task that reads the client's messages (and calls :meth:`screen`).
    client_reader: asyncio.Task[Any] | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
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
        """Read the client's messages here, the layer's in a second task; end when either ends.

        The client's messages are read as soon as the server has them, and :meth:`screen`ed
        then, even while a handler runs: one that passes waits in :attr:`inbox` for its turn, and
        a task dispatches the inbox while it holds anything (it ends once the inbox is empty, so
        an idle socket has none). The server's own queue (daphne's is unbounded) is thus kept
        empty, and a subclass bounds what waits here.
        """
        self.turn = asyncio.Lock()
        self.inbox = []
        this = self.client_reader = asyncio.current_task()
        assert this is not None
        loop = asyncio.get_running_loop()
        layer = loop.create_task(self.serve_layer(this))
        try:
            while True:
                message = await receive()
                if not await self.screen(message):
                    continue
                self.inbox.append(message)
                if self.dispatcher is None:
                    self.dispatcher = loop.create_task(self.dispatch_inbox(this))
        except asyncio.CancelledError:
            failure = next(
                (
                    task.exception()
                    for task in (layer, self.dispatcher)
                    if task is not None and task.done() and not task.cancelled() and task.exception()
                ),
                None,
            )
            if failure is None:
                raise
            # A handler failed (or a disconnect's StopConsumer) and cancelled this task: end as
            # Channels would, with its exception.
            this.uncancel()
            raise failure from None
        finally:
            tasks = [task for task in (layer, self.dispatcher) if task is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def screen(self, message: Message) -> bool:
        """Whether a client message is to be dispatched; called as soon as it is read, without the
        turn, while a handler may be running. A subclass answers or drops a message here (cheaply:
        a flood goes through it at the rate the client sends) and returns False."""
        return True

    async def dispatch_inbox(self, client_loop: asyncio.Task[Any]) -> None:
        """Dispatch the client's messages in :attr:`inbox`, in order, each under the turn."""
        try:
            while self.inbox:
                message = self.inbox.pop(0)
                async with self.turn:
                    await self.dispatch(message)
        except asyncio.CancelledError:
            raise
        except BaseException:
            # As in serve_layer: wake the client's loop, which re-raises this (StopConsumer too).
            client_loop.cancel()
            raise
        self.dispatcher = None

    async def serve_layer(self, client_loop: asyncio.Task[Any]) -> None:
        layer = self.channel_layer
        drain = layer.receive_nowait if supports(layer, RECEIVE_NOWAIT) else None
        take_overflow = layer.take_overflow if supports(layer, OVERFLOW) else None
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
                    if drain is not None:
                        for _ in range(DRAIN_LIMIT):
                            message = drain(self.channel_name)
                            if message is None:
                                break
                            await self.dispatch_layer_event(message)
                    if take_overflow is not None and take_overflow(self.channel_name):
                        await self.layer_overflowed()
        except asyncio.CancelledError:
            raise
        except BaseException:
            # A layer handler raised: the client's loop waits on the server's queue, so wake it
            # by cancelling it; it re-raises this exception once this task is done.
            client_loop.cancel()
            raise

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
