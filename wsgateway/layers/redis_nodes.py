"""Which Redis node of wsgateway's Redis layer carries a name: a group, a loop's inbox, a channel.

Pub/sub keeps nothing, so the layer can spread its traffic over several Redis nodes by name alone: a
stable hash of the name (CRC-32, never Python's ``hash()``, which is salted per process) modulo the
number of nodes. Every process given the same ``hosts`` in the same order agrees on every name's node
without asking anyone. The registries (places, presence, status) stay on the first node.

And so, after an outage of some of the nodes, which sockets can have missed a message
(:func:`sockets_on`): those with a group on one of them, and no other.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Collection, Iterable
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

#: One Redis of the layer's ``hosts``: its URL and redis-py's connection options for it.
Host = tuple[str, dict[str, Any]]

DEFAULT_HOST = "redis://127.0.0.1:6379/0"
#: Names tried per node for :func:`names_per_node`: with CRC-32 a node is found within a few dozen.
NAME_SEARCH_LIMIT = 10_000


def node_of(name: str, count: int) -> int:
    """The index of the node (of ``count``) that carries ``name``."""
    return zlib.crc32(name.encode()) % count if count > 1 else 0


class Grouped(Protocol):
    """What names a socket's groups (wsgateway.membership.Membership)."""

    @property
    def groups(self) -> tuple[str, ...]: ...


_Socket = TypeVar("_Socket")


def only_node(name: str) -> int:
    """The node of every name on a layer that is not spread over several."""
    return 0


def sockets_on(
    nodes: Collection[int] | None, sockets: Iterable[_Socket], node_index: Callable[[str], int]
) -> list[_Socket]:
    """Of ``sockets``, in order, those that can have missed a message while ``nodes`` were down (None:
    every node, or which is not known): those with a group on one of them (``node_index(group)``), and
    those whose groups are not known (no ``membership``, or none yet). A message for a group goes
    through the group's node alone (a PUBLISH there, or that node's share of a broadcast), so a socket
    whose groups are all on nodes that stayed up was sent everything. The group of every socket on a
    node that failed takes every socket of the process."""
    if nodes is None:
        return list(sockets)
    on: dict[str, bool] = {}  # each group hashed once: the group of every socket is in all of them
    chosen = []
    for socket in sockets:
        membership: Grouped | None = getattr(socket, "membership", None)
        groups = membership.groups if membership is not None else ()
        if not groups or any(_on(group, on, nodes, node_index) for group in groups):
            chosen.append(socket)
    return chosen


def _on(group: str, known: dict[str, bool], nodes: Collection[int], node_index: Callable[[str], int]) -> bool:
    down = known.get(group)
    if down is None:
        down = known[group] = node_index(group) in nodes
    return down


def names_per_node(base: str, count: int) -> list[str]:
    """One name per node, derived from ``base``, the ``i``-th carried by node ``i``: what a probe
    sends through to reach every node."""
    if count <= 1:
        return [base]
    found: dict[int, str] = {}
    for i in range(NAME_SEARCH_LIMIT):
        name = f"{base}.{i}"
        found.setdefault(node_of(name, count), name)
        if len(found) == count:
            return [found[node] for node in range(count)]
    raise RuntimeError(f"no name for every one of {count} nodes within {NAME_SEARCH_LIMIT} tries")


def parse_hosts(hosts: list[Any] | None) -> list[Host]:
    """The layer's ``hosts`` as ``(url, options)``, checked: ``ValueError`` for a host that is neither a
    URL nor a dict with an ``"address"``, and for one Redis listed twice. Pub/sub ignores the database
    number, so two URLs that differ only by it are one Redis: a broadcast subscribed to on both would
    reach every socket twice."""
    parsed: list[Host] = []
    seen: dict[tuple[str, str], int] = {}
    for index, host in enumerate(hosts or [DEFAULT_HOST]):
        if isinstance(host, dict):
            options = dict(host)
            url = options.pop("address", None)
        else:
            url, options = host, {}
        if not isinstance(url, str) or not url:
            raise ValueError(
                f"hosts[{index}] must be a Redis URL or a dict with an 'address' URL, not {host!r}"
            )
        where = _server(url)
        if where in seen:
            raise ValueError(
                f"hosts[{index}] is the Redis of hosts[{seen[where]}] ({url!r}): list each Redis once "
                "(pub/sub channels are shared by all of a Redis's databases)"
            )
        seen[where] = index
        parsed.append((url, options))
    return parsed


def _server(url: str) -> tuple[str, str]:
    """The Redis a URL names, database left out."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return ("unix", parts.path)
    try:
        port = parts.port or 6379
    except ValueError:
        raise ValueError(f"{url!r} has no valid port") from None
    return ((parts.hostname or "").lower(), str(port))
