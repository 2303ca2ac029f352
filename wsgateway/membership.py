"""A socket's places in the channel layer: its user's group, the group of every socket, the groups
its services add (:meth:`Membership.add`), and its place under ``MAX_CONNECTIONS_PER_USER``
(wsgateway.connections).

What the membership refresher (wsgateway.health) renews while the socket is open, and what the
socket gives back, whatever way it ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from . import connections, presence
from .conf import gateway_settings
from .groups import all_group, user_group
from .health import MembershipRefresher, refresher_for
from .layers.extensions import CoolingDown, PlacesLost, is_process_local

logger = logging.getLogger("wsgateway")

#: Times a connect asks the layer for a place while the layer says its places are being put back
#: (once to learn this process's are lost, once after restoring them while the other processes restore
#: theirs, and spares for a second FLUSHALL); then it is refused as over the cap. Each wait is bounded:
#: health.RESTORE_TIMEOUT for this process's restore, RESTORE_SETTLE_MAX for the others'.
RESTORE_ATTEMPTS = 4
#: Longest wait, in seconds, for other processes to put back their places (the layer's
#: ``restore_grace``, 3 s on wsgateway's Redis layer, says how long; this caps a site's setting).
RESTORE_SETTLE_MAX = 10.0


class Membership:
    """One socket's groups and registration. It holds a group from the moment it is named (before
    the join: a connect cancelled half-way still leaves it; a discard of a group a channel is not in
    does nothing on any layer) until :meth:`leave`."""

    __slots__ = (
        "__weakref__",
        "came_online",
        "channel_name",
        "groups",
        "layer",
        "placed",
        "refresher",
        "registration",
    )

    def __init__(self, layer: Any, channel_name: str) -> None:
        self.layer = layer
        self.channel_name = channel_name
        self.groups: tuple[str, ...] = ()
        #: ``(user, channel_name)``: this socket's place under the cap, until it is given back.
        self.registration: tuple[str, str] | None = None
        #: Whether the layer gave the place: only then is it renewed, or put back after a loss.
        self.placed = False
        #: On a layer that joins presence with the place (connections.joins_presence), whether the
        #: place brought the user online (wsgateway.presence.arrive sends ``user_online`` then); None
        #: on another layer, or before a place was given.
        self.came_online: bool | None = None
        self.refresher: MembershipRefresher | None = None

    def keep(self) -> None:
        """Renew the groups and the place while the socket is open: they expire after the layer's
        ``group_expiry`` and ``connection_expiry``, and a socket need not. :meth:`register` has
        done it already on the way (idempotent)."""
        self.refresher = refresher_for(self.layer)
        self.refresher.register(self)

    async def register(self, user_id: Any, limit: int) -> bool:
        """Take one of the user's ``limit`` places; False, and none taken, if they are all taken.

        A layer that fails here fails the connect (it raises), as the group_add right after it would:
        without the layer the socket would get no push, and the client's reconnect is the retry.
        Failing open would let a client that can bring Redis down past the cap.
        """
        # Set before the layer is asked: a connect cancelled during the call still gives the place back.
        self.registration = (str(user_id), self.channel_name)
        # Known to the refresher from now, not from keep(): a place given while the layer's data is
        # lost must be among those put back, even if its socket has not finished connecting.
        self.keep()
        for _ in range(RESTORE_ATTEMPTS):
            try:
                # Each call to the layer bounded, not the whole: the wait for a restore below has
                # bounds of its own, and a layer that does not answer is an outage (the caller's).
                async with asyncio.timeout(gateway_settings.LAYER_CONNECT_TIMEOUT):
                    place = await connections.register(self.layer, *self.registration, limit)
                self.placed = bool(place)
                if self.placed and connections.joins_presence(self.layer):
                    self.came_online = place is connections.Place.CAME_ONLINE
            except PlacesLost as lost:
                if not await self.wait_for_restore(lost):
                    break
                continue
            except CoolingDown:  # the user is refused new sockets for a while: no place, and no renewal
                self.give_up()
                raise
            if self.placed:
                return True
            break
        self.give_up()
        return False

    def announce(self) -> bool | None:
        """Whether the place brought the user online, for the accept to say so (presence.arrive), once;
        None when the layer joined no presence with the place. Not asked by an accept (the socket
        was refused after its place, or ended during the accept), :meth:`leave` says it."""
        came_online, self.came_online = self.came_online, None
        return came_online

    def give_up(self) -> None:
        """No place was taken: nothing to renew, nothing to give back."""
        self.registration = None
        if self.refresher is not None:  # nothing to renew: a refused socket is left to end
            self.refresher.unregister(self)
            self.refresher = None

    async def wait_for_restore(self, lost: PlacesLost) -> bool:
        """After the layer lost its places: wait until this process's open sockets have theirs back
        (and the other processes' had the time to), so that the cap counts them before this socket
        is counted. False: not within health.RESTORE_TIMEOUT (the connect is then refused as over
        the cap, not failed)."""
        assert self.refresher is not None
        try:
            if lost.own:
                await self.refresher.restore_places()
            await asyncio.sleep(min(lost.settle, RESTORE_SETTLE_MAX))
        except TimeoutError:
            logger.warning(
                "wsgateway: the sockets' places were not put back within the timeout; a connect is refused"
            )
            return False
        return True

    async def join(self, user_id: Any | None = None) -> None:
        """Join the user's group and the group of every socket (again, on a catch-up: no ``user_id``).

        Both in one round trip on a layer that makes one per ``group_add`` (channels_redis' core
        layer); wsgateway's layers make none but a process's first subscription to each group.
        Both settle before a failure is raised: a join still on its way could otherwise land after
        the :meth:`leave` of a connect that failed.
        """
        if user_id is not None:
            self.groups = (user_group(user_id), all_group())
        async with asyncio.timeout(gateway_settings.LAYER_CONNECT_TIMEOUT):
            if is_process_local(self.layer):
                # No round trip to share: one after the other, without a gather's task for each
                # (15 µs of a connect's 39 in this step, measured on the in-process layer).
                for group in self.groups:
                    await self.layer.group_add(group, self.channel_name)
                return
            outcomes = await asyncio.gather(
                *(self.layer.group_add(group, self.channel_name) for group in self.groups),
                return_exceptions=True,
            )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def add(self, groups: Sequence[str]) -> None:
        """Join more groups (a service's: the users a presence socket watches) until :meth:`leave`,
        renewed and re-joined on a catch-up with the others. Named before the join, as in :meth:`join`."""
        new = [group for group in dict.fromkeys(groups) if group not in self.groups]
        self.groups = (*self.groups, *new)
        async with asyncio.timeout(gateway_settings.LAYER_CONNECT_TIMEOUT):
            outcomes = await asyncio.gather(
                *(self.layer.group_add(group, self.channel_name) for group in new), return_exceptions=True
            )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def discard(self, groups: Sequence[str]) -> None:
        """Leave groups :meth:`add` joined; a layer that fails costs nothing (they expire unrenewed)."""
        gone = set(groups) & set(self.groups)
        self.groups = tuple(group for group in self.groups if group not in gone)
        await self._discard_all(gone)

    async def leave(self) -> None:
        """Leave both groups and give the place back; a layer that is down costs nothing (the
        memberships and the registration expire unrenewed)."""
        if self.refresher is not None:
            self.refresher.unregister(self)  # first: no renewal may re-add what is left
            self.refresher = None
        groups, self.groups = self.groups, ()
        registration, self.registration = self.registration, None
        self.placed = False
        came_online = self.announce()
        await self._discard_all(groups)
        if registration is not None:
            try:
                await connections.unregister(self.layer, *registration)
            except Exception as exc:
                logger.debug("wsgateway: could not give back a socket's place on disconnect: %s", exc)
            if came_online:  # and no accept said so
                await presence.placed_only(self.layer, *registration)

    async def _discard_all(self, groups: Iterable[str]) -> None:
        outcomes = await asyncio.gather(
            *(self.layer.group_discard(group, self.channel_name) for group in groups),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                # Debug only: the outage is logged once (the watchdog, the connect's refusal), and this
                # would be a line per socket that ends during it.
                logger.debug("wsgateway: group_discard failed: %s", outcome)
            elif isinstance(outcome, BaseException):
                raise outcome

    # -- what the membership refresher renews (wsgateway.health.Member) --------------------

    def memberships(self) -> list[tuple[str, str]]:
        return [(group, self.channel_name) for group in self.groups]

    def registrations(self) -> list[tuple[str, str]]:
        return [self.registration] if self.registration is not None and self.placed else []
