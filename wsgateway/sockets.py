"""Which sockets a user has open: on this process (:func:`local_sockets`), and on all (:func:`user_sockets`).

What a site builds presence on, with the signals of :mod:`wsgateway.signals`. A socket is listed here
from its accept (before ``client_connected`` is sent for it) until just before ``client_disconnected`` is:
a receiver of ``client_connected`` that finds one socket of its user on this process has the user's
first socket here, and a receiver of ``client_disconnected`` that finds none had the last one.

The process-local registry is a dict of dicts, touched twice per socket: a refused socket is never
in it, and every way a consumer ends (see ``GatewayConsumer.undo_connect``) takes it out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from .bridge import require_sync, run_async
from .groups import channel_layer, user_pk

__all__ = ["SocketInfo", "auser_sockets", "local_sockets", "user_sockets"]


@dataclass(frozen=True, slots=True)
class SocketInfo:
    """One open socket of this process."""

    #: The socket's channel name: what ``client_connected`` gives, and what a layer's ``send`` reaches.
    channel_name: str
    #: The primary key of its user.
    user_id: Any
    #: The URL path it connected to (``/ws/``, ``/ws/notifications/``).
    path: str
    #: The channels of the services it serves.
    services: tuple[str, ...]
    #: Unix time it was accepted.
    connected_at: float


#: user id (as text: 5 and "5" are one user) -> channel name -> the socket's info; a user with no
#: socket here has no entry.
_registry: dict[str, dict[str, SocketInfo]] = {}


def add(user_id: Any, channel_name: str, path: str, services: tuple[str, ...]) -> None:
    """Called by the consumer once its socket is accepted (before ``client_connected``)."""
    info = SocketInfo(channel_name, user_id, path, services, time.time())
    _registry.setdefault(str(user_id), {})[channel_name] = info


def discard(user_id: Any, channel_name: str) -> None:
    """Called by the consumer as its socket ends (before ``client_disconnected``); idempotent."""
    key = str(user_id)
    sockets = _registry.get(key)
    if sockets is not None:
        sockets.pop(channel_name, None)
        if not sockets:
            del _registry[key]


def local_sockets(user: Any = None) -> list[SocketInfo]:
    """The open sockets of ``user`` (a user or a primary key) on this process, or of every user.

    In the order they connected. This process only, whatever the channel layer: a process serves
    only its own sockets, and a dict read costs nothing.
    """
    if user is None:
        found = [info for sockets in _registry.values() for info in sockets.values()]
        return sorted(found, key=lambda info: info.connected_at)
    return list(_registry.get(str(user_pk(user)), {}).values())


async def auser_sockets(user: Any) -> list[str]:
    """The channel names of ``user``'s open sockets, on every process sharing the channel layer.

    Asked of the layer's ``connections`` extension (wsgateway's in-process and Redis layers have it;
    Redis answers in one round trip). On a layer without it (channels_redis', Channels' in-memory
    layer) each process counts only its own sockets, so this answers for this process only: the
    channel names of :func:`local_sockets`.
    """
    from . import connections

    layer = channel_layer()
    if layer is None:
        return []
    return await connections.user_sockets(layer, str(user_pk(user)))


def user_sockets(user: Any) -> list[str]:
    """Synchronous :func:`auser_sockets`, for views and workers."""
    require_sync("user_sockets() is for sync code; await auser_sockets() in async code")
    return run_async(auser_sockets, user)
