"""A channel layer for one process: what InMemoryChannelLayer does, at the cost of a dict lookup."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from .base import (
    LocalConnections,
    LocalCooldowns,
    LocalDelivery,
    LocalDeliveryLayer,
    QueuedListener,
    UrgentWatcher,
)
from .extensions import PROCESS_LOCAL, WSGATEWAY_LAYER_EXTENSIONS, CoolingDown


class InProcessChannelLayer(LocalDeliveryLayer):
    """Drop-in replacement for ``channels.layers.InMemoryChannelLayer``.

    Same contract (send, receive, new_channel, groups, flush, capacity, expiry,
    group_expiry), same single-process scope: messages never leave this process.
    """

    extensions = [*WSGATEWAY_LAYER_EXTENSIONS, PROCESS_LOCAL]

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        self.local = LocalDelivery(self.expiry, self.group_expiry, self.get_capacity, self.clock)
        self.local_connections = LocalConnections()
        self.cooldowns = LocalCooldowns(self.clock)
        #: The loop whose tasks joined groups last (daphne's): a sync caller in another thread
        #: hands its sends to it, and never touches the inboxes itself.
        self.members_loop: asyncio.AbstractEventLoop | None = None

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_channel_name(channel)
        assert "__asgi_channel__" not in message
        self.local.put(channel, message, self.clock())

    async def receive(self, channel: str) -> dict[str, Any]:
        self.require_valid_channel_name(channel)
        return await self.local.get(channel)

    def receive_nowait(self, channel: str) -> dict[str, Any] | None:
        """Extension: the next message already queued for ``channel``, or None; never waits."""
        return self.local.get_nowait(channel)

    def take_overflow(self, channel: str) -> bool:
        """Extension: whether messages for ``channel`` were dropped (see extensions.OVERFLOW); resets it."""
        return self.local.take_overflow(channel)

    def watch_urgent(self, channel: str, callback: UrgentWatcher | None) -> None:
        """Extension: hand ``channel``'s urgent events to ``callback`` as they come (extensions.URGENT)."""
        self.local.watch(channel, callback)

    def watch_queued(self, channel: str, callback: QueuedListener | None) -> None:
        """Extension: call ``callback()`` as a message is queued for ``channel`` (extensions.QUEUED)."""
        self.local.listen(channel, callback)

    def forget_channel(self, channel: str) -> None:
        """Extension: drop the inbox of a channel nobody will receive on again (extensions.FORGET_CHANNEL)."""
        self.local.forget(channel)

    async def new_channel(self, prefix: str = "specific.") -> str:
        return f"{prefix}.inprocess!{secrets.token_hex(8)}"

    async def group_add(self, group: str, channel: str) -> None:
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        self.members_loop = asyncio.get_running_loop()
        self.local.add(group, channel)

    async def group_discard(self, group: str, channel: str) -> None:
        self.require_valid_channel_name(channel)
        self.require_valid_group_name(group)
        self.local.discard(group, channel)

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_group_name(group)
        self.local.fan_out(group, message)

    async def group_send_many(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        """Extension: several group_sends in one call (one round trip on networked layers)."""
        self._check(items)
        self._fan_out(items)

    def group_send_many_sync(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        """Extension: :meth:`group_send_many` for sync code in another thread (a view's).

        The sends are queued onto the loop whose consumers are the members, in order, and the
        caller goes on at once: waiting for that loop's next turn held a view's thread, and a
        writer thread serving many requests, for as long as the loop was busy with everything else.
        """
        self._check(items)
        loop = self.members_loop
        if loop is None:
            return  # no task ever joined a group here: no member to reach
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop.is_running() and running is not loop:
            loop.call_soon_threadsafe(self._fan_out, items)
        elif not loop.is_closed():
            # On the members' loop itself, or while it is paused: nothing of it runs meanwhile.
            self._fan_out(items)
        # else: the members were tasks of a closed loop (a finished test's): nobody reads.

    def _check(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        # All of a batch, before any of it is sent: a bad item sends nothing, as group_send would.
        for group, message in items:
            assert isinstance(message, dict), "message is not a dict"
            self.require_valid_group_name(group)

    def _fan_out(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        for group, message in items:
            self.local.fan_out(group, message)

    # -- the connections extension: exact, as everything here is one process's --------------

    async def connection_add(self, user: str, channel: str, limit: int) -> bool:
        """Extension: register a socket of ``user`` if it fits under ``limit`` (extensions.CONNECTIONS);
        CoolingDown for a user cooling down (extensions.COOLDOWN)."""
        if left := self.cooldowns.left(user):
            raise CoolingDown(left)
        return self.local_connections.add(user, channel, limit)

    async def connection_discard(self, user: str, channel: str) -> None:
        """Extension: unregister a socket of ``user``."""
        self.local_connections.discard(user, channel)

    async def connection_renew(self, items: list[tuple[str, str]]) -> None:
        """Extension: nothing to do, registrations here end only with their process."""

    async def connections(self, user: str) -> list[str]:
        """Extension: the sockets registered for ``user``."""
        return self.local_connections.of(user)

    # -- the cooldown extension: this process's, as everything here ---------------------------

    async def cooldown_start(self, user: str, seconds: float) -> None:
        """Extension: refuse ``user``'s new places for ``seconds`` (extensions.COOLDOWN)."""
        self.cooldowns.start(user, seconds)

    async def cooldown_left(self, user: str) -> float:
        """Extension: seconds left of ``user``'s cool-down, 0.0 for none."""
        return self.cooldowns.left(user)

    async def flush(self) -> None:
        self.local.flush()
        self.local_connections = LocalConnections()
        self.cooldowns = LocalCooldowns(self.clock)

    async def close(self) -> None:
        pass
