"""The cap on each user's open sockets, ``MAX_CONNECTIONS_PER_USER``, and who counts them.

On a layer with the ``connections`` extension (both of wsgateway's), each socket is registered
in the layer, which checks the cap and adds in one step, for all the processes that share it:
wsgateway's Redis layer keeps one sorted set per user in Redis, whose entries expire unless the
membership refresher renews them (:mod:`wsgateway.health`), so that a process that dies frees
its users' places. On any other layer (channels_redis', a site's own) each process counts its
own sockets, and the cap is then per process; check ``wsgateway.W005`` says so.
"""

from __future__ import annotations

import enum
from typing import Any

from .layers.base import LocalConnections
from .layers.extensions import CONNECTIONS, PLACE_PRESENCE, supports

#: The sockets of this process, for a layer without the extension.
_local = LocalConnections()


def counted_by_layer(layer: Any) -> bool:
    """Whether ``layer`` counts the sockets of all its processes (else this process counts its own)."""
    return supports(layer, CONNECTIONS)


class Place(enum.IntEnum):
    """What :func:`register` gave: no place (false), a place, or a place that brought its user
    online, on a layer that joins presence with the place (extensions.PLACE_PRESENCE)."""

    REFUSED = 0
    TAKEN = 1
    CAME_ONLINE = 2


def joins_presence(layer: Any) -> bool:
    """Whether :func:`register` on ``layer`` makes the user online too (wsgateway.presence.arrive then
    asks the layer nothing)."""
    return supports(layer, PLACE_PRESENCE)


async def register(layer: Any, user: str, channel: str, limit: int) -> Place:
    """Register ``channel`` as a socket of ``user`` if the user has fewer than ``limit``; REFUSED if not.

    On a layer that joins presence with the place, in the same round trip, the user is online from
    here: CAME_ONLINE when this place brought them online (its caller sends ``user_online``).
    """
    if joins_presence(layer):
        return Place(await layer.connection_add(user, channel, limit, presence=True))
    if counted_by_layer(layer):
        placed = await layer.connection_add(user, channel, limit)
    else:
        placed = _local.add(user, channel, limit)
    return Place.TAKEN if placed else Place.REFUSED


async def unregister(layer: Any, user: str, channel: str) -> None:
    if counted_by_layer(layer):
        await layer.connection_discard(user, channel)
    else:
        _local.discard(user, channel)


async def user_sockets(layer: Any, user: str) -> list[str]:
    """The channel names of ``user``'s sockets: on all processes if the layer counts them, else here."""
    if counted_by_layer(layer):
        return list(await layer.connections(user))
    return _local.of(user)
