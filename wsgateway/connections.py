"""The cap on each user's open sockets, ``MAX_CONNECTIONS_PER_USER``, and who counts them.

On a layer with the ``connections`` extension (both of wsgateway's), each socket is registered
in the layer, which checks the cap and adds in one step, for all the processes that share it:
wsgateway's Redis layer keeps one sorted set per user in Redis, whose entries expire unless the
membership refresher renews them (:mod:`wsgateway.health`), so that a process that dies frees
its users' places. On any other layer (channels_redis', a site's own) each process counts its
own sockets, and the cap is then per process; check ``wsgateway.W005`` says so.
"""

from __future__ import annotations

from typing import Any

from .layers.base import LocalConnections
from .layers.extensions import CONNECTIONS, supports

#: The sockets of this process, for a layer without the extension.
_local = LocalConnections()


def counted_by_layer(layer: Any) -> bool:
    """Whether ``layer`` counts the sockets of all its processes (else this process counts its own)."""
    return supports(layer, CONNECTIONS)


async def register(layer: Any, user: str, channel: str, limit: int) -> bool:
    """Register ``channel`` as a socket of ``user`` if the user has fewer than ``limit``; False if not."""
    if counted_by_layer(layer):
        return bool(await layer.connection_add(user, channel, limit))
    return _local.add(user, channel, limit)


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
