"""The rows the benchmark compares, and how each is configured: the channel layers on daphne, then each
ASGI server of bench/servers.py on wsgateway's in-process layer.

Kept free of Django imports: the orchestrator reads it before any settings exist.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import Any

from bench.servers import SERVERS


@dataclass(frozen=True)
class Row:
    name: str
    #: "in-process" rows run one server process; "redis" rows run two on one Redis (or ``redis_nodes``).
    kind: str
    #: Dotted path of the layer class; None for the ceiling's own plumbing (the stock in-memory layer).
    backend: str
    #: The stock layers this row is shown as a ratio to.
    compare_to: tuple[str, ...] = ()
    #: wsgateway's own layers: skipped with a note while they do not exist yet.
    optional: bool = False
    description: str = ""
    #: The phases this row runs (of those asked for).
    phases: tuple[str, ...] = ("connections", "fanout", "e2e", "broadcast")
    #: False: the inbound limits at their largest values, the login re-check daily (bench/settings.py).
    limits: bool = True
    #: False: wsgateway.metrics' calls on the push path (per frame, per push) are no-ops (bench/asgi.py),
    #: the baseline that what the series cost is measured against (issue 23: under 3% of fan-out).
    metrics: bool = True
    #: An attack row ("flood", "slow-reader") runs bench.attacks instead of the phases.
    attack: str | None = None
    #: Attacking users of an attack row, each with its own socket (the flood's rows: one and five).
    attackers: int = 1
    #: Handshakes a second the attackers (one IP) get through to daphne, all together: what a proxy's
    #: per-IP limit on connects lets by (docs/deployment.md); the rest it refuses itself. None: all.
    connect_rate: float | None = None
    #: Bytes a second each attacking socket gets through to daphne: a proxy's per-connection limit on
    #: what a client sends (nginx stream's proxy_upload_rate; docs/deployment.md). None: all.
    upload_rate: float | None = None
    #: The ASGI server (a key of bench.servers.SERVERS) the row's processes run.
    server: str = "daphne"
    #: Redis nodes a "redis" row's layer spreads over (redis-servers of the row's own, on 127.0.0.1).
    redis_nodes: int = 1


#: The attacks each server's rows include besides its phases: ``<server>:flood``, ``<server>:slow-reader``.
SERVER_ATTACKS = ("flood", "slow-reader")


def server_rows() -> list[Row]:
    """Per server, a row of the phases and a row per attack, on wsgateway's in-process layer in one process
    each: only the server differs between them. The phases' ratios are to daphne's."""
    rows = []
    for name, spec in SERVERS.items():
        rows.append(
            Row(
                name,
                "in-process",
                "wsgateway.layers.InProcessChannelLayer",
                compare_to=() if name == "daphne" else ("daphne",),
                optional=True,
                description=f"{spec.description}; wsgateway's in-process layer",
                server=name,
            )
        )
        for attack in SERVER_ATTACKS:
            rows.append(
                Row(
                    f"{name}:{attack}",
                    "in-process",
                    "wsgateway.layers.InProcessChannelLayer",
                    optional=True,
                    description=f"{attack} on {spec.description}",
                    attack=attack,
                    server=name,
                )
            )
    return rows


ROWS: dict[str, Row] = {
    row.name: row
    for row in [
        Row(
            "ceiling",
            "in-process",
            "channels.layers.InMemoryChannelLayer",
            description="no layer on the push path: consumers in a process-local dict, sent directly",
            phases=("connections", "fanout", "e2e"),  # a broadcast goes through a layer
        ),
        Row(
            "stock-inmemory",
            "in-process",
            "channels.layers.InMemoryChannelLayer",
            description="Channels' InMemoryChannelLayer",
        ),
        Row(
            "inprocess",
            "in-process",
            "wsgateway.layers.InProcessChannelLayer",
            compare_to=("stock-inmemory", "ceiling", "inprocess-nolimits", "inprocess-nometrics"),
            optional=True,
            description="wsgateway's in-process layer",
        ),
        Row(
            "inprocess-nolimits",
            "in-process",
            "wsgateway.layers.InProcessChannelLayer",
            optional=True,
            description="wsgateway's in-process layer, the limits at their largest values (off)",
            phases=("connections", "fanout"),
            limits=False,
        ),
        Row(
            "inprocess-nometrics",
            "in-process",
            "wsgateway.layers.InProcessChannelLayer",
            optional=True,
            description="wsgateway's in-process layer, the metrics' calls on the push path made no-ops",
            phases=("connections", "fanout"),
            metrics=False,
        ),
        Row(
            "redis-core",
            "redis",
            "channels_redis.core.RedisChannelLayer",
            description="channels-redis RedisChannelLayer",
        ),
        Row(
            "redis-pubsub",
            "redis",
            "channels_redis.pubsub.RedisPubSubChannelLayer",
            description="channels-redis RedisPubSubChannelLayer",
        ),
        Row(
            "redis",
            "redis",
            "wsgateway.layers.redis.RedisChannelLayer",
            compare_to=("redis-core", "redis-pubsub", "redis-nometrics"),
            optional=True,
            description="wsgateway's Redis layer (prometheus-client in multiprocess mode, as deployed)",
        ),
        Row(
            "redis-3",
            "redis",
            "wsgateway.layers.redis.RedisChannelLayer",
            compare_to=("redis",),
            optional=True,
            description="wsgateway's Redis layer spread over three Redis nodes (three redis-servers)",
            redis_nodes=3,
        ),
        Row(
            "redis-nometrics",
            "redis",
            "wsgateway.layers.redis.RedisChannelLayer",
            optional=True,
            description="wsgateway's Redis layer, the metrics' calls on the push path made no-ops",
            phases=("connections", "fanout"),
            metrics=False,
        ),
        Row(
            "flood",
            "in-process",
            "wsgateway.layers.InProcessChannelLayer",
            optional=True,
            description="a socket floods list requests, reconnecting when closed; another user's pushes",
            attack="flood",
        ),
        Row(
            "flood-5",
            "in-process",
            "wsgateway.layers.InProcessChannelLayer",
            optional=True,
            description="five users' sockets flood list requests, each reconnecting when closed; "
            "another user's pushes",
            attack="flood",
            attackers=5,
        ),
        Row(
            "flood-proxied",
            "in-process",
            "wsgateway.layers.InProcessChannelLayer",
            optional=True,
            description="flood, behind a proxy's limits: 5 handshakes a second per IP, 64 KiB a second "
            "per connection",
            attack="flood",
            connect_rate=5.0,
            upload_rate=65536.0,
        ),
        Row(
            "flood-5-proxied",
            "in-process",
            "wsgateway.layers.InProcessChannelLayer",
            optional=True,
            description="flood-5, behind a proxy's limits: 5 handshakes a second per IP, 64 KiB a second "
            "per connection",
            attack="flood",
            attackers=5,
            connect_rate=5.0,
            upload_rate=65536.0,
        ),
        Row(
            "slow-reader",
            "in-process",
            "wsgateway.layers.InProcessChannelLayer",
            optional=True,
            description="pushes to a socket that never reads; another user's pushes",
            attack="slow-reader",
        ),
        *server_rows(),
    ]
}

#: ``--only`` takes a server's name for its three rows (the phases, then its attacks).
SERVER_GROUPS: dict[str, list[str]] = {
    name: [name, *(f"{name}:{attack}" for attack in SERVER_ATTACKS)] for name in SERVERS
}


def layer_config(name: str, redis_url: str | None, prefix: str | None = None) -> dict[str, Any]:
    """The ``CHANNEL_LAYERS["default"]`` of one row."""
    row = ROWS[name]
    if row.kind == "in-process":
        return {"BACKEND": row.backend}
    if not redis_url:
        raise RuntimeError(f"BENCH_LAYER={name} needs REDIS_URL")
    config: dict[str, Any]
    if name == "redis-core":
        # As project/settings.py configures it: reads may block longer than the 5 s BZPOPMIN,
        # and a burst of 20 pushes to one socket must not hit the default capacity of 100.
        # Plus a bigger connection pool: redis-py 8's async pool holds 100 connections and raises
        # MaxConnectionsError beyond (older redis-py did not cap it); a burst of connects, each with
        # its group_add, exceeds that, and the baseline would be measured losing sockets.
        host = {"address": redis_url, "socket_timeout": 15, "max_connections": 2000}
        config = {"hosts": [host], "capacity": 5000}
    else:
        # A row of several nodes is given their URLs joined with commas (bench/__main__.py).
        config = {"hosts": redis_url.split(",")}
    if prefix:
        config["prefix"] = prefix
    return {"BACKEND": row.backend, "CONFIG": config}


def availability(name: str) -> str | None:
    """None when the row's server is installed and its layer can be imported, else why not."""
    program = SERVERS[ROWS[name].server].program
    if importlib.util.find_spec(program) is None:
        return f"not available: {program} is not installed (the {program} extra)"
    backend = ROWS[name].backend
    module_name, _, class_name = backend.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # a half-written module may fail in any way
        return f"not available: {module_name} cannot be imported ({exc})"
    if not hasattr(module, class_name):
        return f"not available: {backend} does not exist yet"
    return None
