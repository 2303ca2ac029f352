"""What each server process is doing, for ``manage.py wsgateway_status``: a small snapshot (its sockets
by endpoint, its rates, its push latency, its refusals, its layer's drops) that each process publishes
on the channel layer every :data:`INTERVAL` seconds while it has sockets.

The snapshot is built from the process's own counters, read in its memory (:func:`read_counters`:
``wsgateway.metrics``' integers, and prometheus-client's samples of this process when it is installed),
never from a scrape. The rates and the latency are over the last :data:`RATE_WINDOW` seconds: two
readings of the same counters, by the same clock.

On a layer with the ``status`` extension (wsgateway's Redis layer) each snapshot lives :data:`TTL`
seconds, so a process that died is gone from the list within that. When a process's last socket ends
it publishes once more, a snapshot that lives :data:`IDLE_KEEP` seconds, and stops: a process with no
socket for longer than that is not listed. The publishing runs on a timer in its own task, one per
event loop and layer (:class:`StatusReporter`); a socket costs it a set entry at its accept and at its
end, nothing per frame.

On any other layer nothing is published: no process could read another's.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import secrets
import socket
import sys
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import metrics
from .layers.extensions import STATUS, supports

logger = logging.getLogger("wsgateway")

#: Seconds between a process's snapshots while it has sockets.
INTERVAL = 2.0
#: Seconds a snapshot lives: three intervals, so that one late publish does not drop a living process.
TTL = 3 * INTERVAL
#: Seconds the rates and the latency are measured over (about: from the oldest reading kept, up to
#: this old, to the newest): one interval's are too few events to read, at a few per second.
RATE_WINDOW = 10.0
#: Seconds the last snapshot of a process whose last socket ended lives.
IDLE_KEEP = 60.0
#: Least seconds between two publishes of one reporter, however often its last socket comes and goes.
MIN_GAP = 0.25
#: Most processes one read returns.
MAX_PROCESSES = 1000
#: Largest snapshot, in bytes of JSON: a publisher never sends a larger one, a reader skips one.
MAX_SNAPSHOT = 8 * 1024
#: Most endpoints (consumer classes) a snapshot names; the sockets of the rest are under "other".
MAX_ENDPOINTS = 32
#: Longest endpoint name kept (a consumer class's name).
MAX_ENDPOINT_NAME = 100
#: The snapshot's format; a reader skips one of another, or one without the keys it shows.
VERSION = 1
REQUIRED = frozenset({"id", "host", "at", "started", "sockets", "endpoints", "totals", "refusals", "layer"})

LATENCY = "wsgateway_push_latency_seconds"
LATENCY_BUCKET = LATENCY + "_bucket"

#: What a snapshot rates (events per second), by the series it sums.
RATED: dict[str, str] = {
    "connects": "wsgateway_connects_total",
    "closes": "wsgateway_closes_total",
    "pushes": "wsgateway_pushes_total",
    "frames_in": "wsgateway_frames_received_total",
    "frames_out": "wsgateway_frames_sent_total",
}
#: Handshakes refused (and frames refused rate_limited), by reason: the named counters that
#: wsgateway_refusals_total counts, read off metrics.ROUTES so that a new reason is listed here too.
REFUSALS: dict[str, str] = {
    route[1][0]: name
    for name, route in metrics.ROUTES.items()
    if route is not None and route[0] == "wsgateway_refusals_total"
}
#: What the channel layer dropped, and the sockets brought back in step after it.
LAYER: dict[str, str] = {
    "dropped": metrics.LAYER_DROPPED,
    "expired": metrics.LAYER_EXPIRED,
    "late": metrics.LAYER_LATE,
    "overflows": metrics.LAYER_OVERFLOWED_CHANNELS,
    "resyncs": metrics.SOCKETS_RESYNCED,
}
#: The series whose samples a snapshot reads through prometheus-client, when it is installed.
READ_SERIES = (*RATED.values(), metrics.SOCKETS_OPEN, LATENCY)

Counters = dict[str, float]


# -- reading this process's counters ---------------------------------------------------------------


def read_counters() -> Counters:
    """This process's counters, flat, named as :func:`wsgateway.metrics.key` names them: the named
    counters, and the samples of :data:`READ_SERIES`. Without prometheus-client those samples count in
    the integers too; with it, only in its children, read here through ``collect()`` (this process's
    values, in its multiprocess mode as well: the sum of all is the scrape's)."""
    found: Counters = dict(metrics.snapshot())
    if metrics.prometheus_client is None:
        return found
    wanted = {*READ_SERIES, LATENCY_BUCKET}
    for series in READ_SERIES:
        metric = metrics.SERIES.get(series)
        if metric is None:
            continue
        for family in metric.collect():
            for sample in family.samples:
                if sample.name in wanted:
                    found[metrics.key(sample.name, *sample.labels.values())] = float(sample.value)
    return found


def total(counters: Mapping[str, float], series: str) -> float:
    """The sum of ``series``' samples, 0 for a series never counted."""
    prefix = series + ":"
    return sum(v for k, v in counters.items() if k == series or k.startswith(prefix))


def endpoints(counters: Mapping[str, float]) -> dict[str, int]:
    """Open sockets by endpoint (the consumer's class), the :data:`MAX_ENDPOINTS` largest by name,
    the rest as "other"; endpoints without a socket left out."""
    prefix = metrics.SOCKETS_OPEN + ":"
    found: dict[str, int] = {}
    for k, v in counters.items():
        if k.startswith(prefix) and v > 0:
            name = k[len(prefix) :][:MAX_ENDPOINT_NAME]
            found[name] = found.get(name, 0) + int(v)
    if len(found) <= MAX_ENDPOINTS:
        return dict(sorted(found.items()))
    largest = sorted(found.items(), key=lambda item: (-item[1], item[0]))
    kept = dict(sorted(largest[: MAX_ENDPOINTS - 1]))
    kept["other"] = sum(n for _, n in largest[MAX_ENDPOINTS - 1 :])
    return kept


def buckets(counters: Mapping[str, float]) -> list[tuple[float, float]]:
    """The latency histogram's cumulative buckets, ``(upper bound, count)``, lowest bound first."""
    prefix = LATENCY_BUCKET + ":"
    found = [(float(k[len(prefix) :]), v) for k, v in counters.items() if k.startswith(prefix)]
    return sorted(found)


def quantile(cumulative: list[tuple[float, float]], q: float) -> float | None:
    """The ``q`` quantile of a histogram's cumulative buckets, as Prometheus' ``histogram_quantile``
    estimates it: linear within the bucket it falls in; the highest finite bound for the ``+Inf`` one.
    None without a sample."""
    if not cumulative or cumulative[-1][1] <= 0:
        return None
    rank = q * cumulative[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in cumulative:
        if count >= rank:
            if math.isinf(bound):
                return lower
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def latency(previous: Mapping[str, float] | None, current: Mapping[str, float]) -> dict[str, Any] | None:
    """Push latency since ``previous`` (since the start without it): p50 and p99 in seconds, and how
    many frames were timed (one pushed frame in metrics.LATENCY_SAMPLE is). None when no histogram is
    kept (no prometheus-client)."""
    now = buckets(current)
    if not now:
        return None
    before = dict(buckets(previous or {}))
    window = [(bound, count - before.get(bound, 0.0)) for bound, count in now]
    return {
        "p50": _rounded(quantile(window, 0.5), 6),
        "p99": _rounded(quantile(window, 0.99), 6),
        "samples": int(window[-1][1]),
    }


def rates(
    previous: Mapping[str, float] | None, current: Mapping[str, float], seconds: float
) -> dict[str, float] | None:
    """Events per second over ``seconds``, from two readings of the counters; None without a
    previous reading. A counter that went down (it cannot, but a reading may be partial) rates 0."""
    if previous is None or seconds <= 0:
        return None
    return {
        name: round(max(total(current, series) - total(previous, series), 0.0) / seconds, 3)
        for name, series in RATED.items()
    }


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


# -- the snapshot ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Process:
    """Who publishes: a name unique to this run of the process, its pid, host and server."""

    id: str
    pid: int
    host: str
    server: str | None
    started: float


def server_name(argv: list[str] | None = None, modules: Mapping[str, Any] | None = None) -> str | None:
    """The ASGI server running this process, when its command line or its imports tell."""
    argv = sys.argv if argv is None else argv
    modules = sys.modules if modules is None else modules
    known = ("gunicorn", "daphne", "uvicorn", "hypercorn")
    if argv:
        path = Path(argv[0])
        for name in known:
            if name in path.parts or path.name.startswith(name):
                return name
        if "runserver" in argv[1:2]:
            return "runserver"
    # Not by "daphne" alone: a site lists it in INSTALLED_APPS for runserver, and any server imports it.
    return "gunicorn" if "gunicorn" in modules else None


_process: Process | None = None


def this_process() -> Process:
    """This process, made once (again in a forked child: a new pid, a new name)."""
    global _process
    if _process is None or _process.pid != os.getpid():
        host = socket.gethostname()[:100]
        pid = os.getpid()
        _process = Process(f"{host}-{pid}-{secrets.token_hex(3)}", pid, host, server_name(), time.time())
    return _process


#: The process's first reading: when wsgateway.status was imported (with the consumers, at the start).
this_process()


def build(
    counters: Mapping[str, float],
    previous: Mapping[str, float] | None,
    process: Process,
    at: float,
    window: float,
) -> dict[str, Any]:
    """The snapshot of ``process`` at ``at`` (Unix time), from its ``counters`` and, for the rates and
    the latency, its ``previous`` reading ``window`` seconds before (None: the first)."""
    by_endpoint = endpoints(counters)
    totals = {name: total(counters, series) for name, series in RATED.items()}
    return {
        "v": VERSION,
        "id": process.id,
        "pid": process.pid,
        "host": process.host,
        "server": process.server,
        "started": round(process.started, 3),
        "at": round(at, 3),
        "sockets": sum(by_endpoint.values()),
        "endpoints": by_endpoint,
        "totals": {name: int(n) for name, n in totals.items()},
        "window": None if previous is None else round(window, 3),
        "rates": rates(previous, counters, window),
        "latency": latency(previous, counters),
        "refusals": {reason: int(counters.get(name, 0)) for reason, name in sorted(REFUSALS.items())},
        "layer": {what: int(counters.get(name, 0)) for what, name in LAYER.items()},
    }


def encode(snapshot: Mapping[str, Any]) -> str:
    """The snapshot as published; ValueError over :data:`MAX_SNAPSHOT` (never, with the bounds above)."""
    text = json.dumps(snapshot, separators=(",", ":"), sort_keys=True)
    if len(text.encode()) > MAX_SNAPSHOT:
        raise ValueError(f"a status snapshot of {len(text.encode())} bytes, over {MAX_SNAPSHOT}")
    return text


def decode(texts: list[str]) -> list[dict[str, Any]]:
    """The snapshots read from the layer, each checked: one too large, not JSON, or of another format
    is left out. Ordered by host and pid."""
    found = []
    for text in texts[:MAX_PROCESSES]:
        if len(text) > MAX_SNAPSHOT:
            continue
        try:
            snapshot = json.loads(text)
        except ValueError:
            continue
        if (
            isinstance(snapshot, dict)
            and snapshot.get("v") == VERSION
            and isinstance(snapshot.get("pid"), int)
            and REQUIRED <= snapshot.keys()
        ):
            found.append(snapshot)
    return sorted(found, key=lambda s: (str(s.get("host")), s["pid"], str(s.get("id"))))


# -- the publisher ---------------------------------------------------------------------------------


class StatusReporter:
    """One event loop's publisher of this process's snapshot on ``layer``: runs while the loop has
    sockets, publishes every :data:`INTERVAL` seconds, and once more when the last one ends."""

    __slots__ = ("__weakref__", "channels", "clock", "last", "layer", "readings", "task", "wakeup", "wall")

    def __init__(
        self, layer: Any, clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time
    ) -> None:
        self.layer = layer
        self.clock = clock
        self.wall = wall
        #: This loop's sockets, by channel name: a set, so that an end without its accept changes nothing.
        self.channels: set[str] = set()
        #: The readings of the counters within RATE_WINDOW, and when each was taken (``clock``), oldest first.
        self.readings: deque[tuple[Counters, float]] = deque()
        self.last = -math.inf
        self.task: asyncio.Task[None] | None = None
        self.wakeup = asyncio.Event()

    def add(self, channel: str) -> None:
        self.channels.add(channel)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self.run(), name="wsgateway-status")

    def discard(self, channel: str) -> None:
        self.channels.discard(channel)
        if not self.channels:
            self.wakeup.set()  # the last snapshot now, not at the next round

    def snapshot(self) -> dict[str, Any]:
        """This process's snapshot now, its rates and latency since the oldest reading kept."""
        counters, now = read_counters(), self.clock()
        while len(self.readings) > 1 and now - self.readings[1][1] >= RATE_WINDOW:
            self.readings.popleft()  # the next is old enough: bounded by RATE_WINDOW / MIN_GAP readings
        before, then = self.readings[0] if self.readings else (None, now)
        self.readings.append((counters, now))
        return build(counters, before, this_process(), self.wall(), now - then)

    async def publish(self, idle: bool) -> None:
        """Publish the snapshot: for :data:`TTL` seconds, or :data:`IDLE_KEEP` for the last one."""
        wait = self.last + MIN_GAP - self.clock()
        if wait > 0:
            await asyncio.sleep(wait)
        self.last = self.clock()
        text = encode(self.snapshot())  # outside the try: a failure here is a bug, and says so
        try:
            await self.layer.status_publish(this_process().id, text, IDLE_KEEP if idle else TTL)
        except Exception as exc:  # the layer is down: the watchdog says so; the next round publishes
            logger.debug("wsgateway: could not publish the process's status: %s", exc)

    async def run(self) -> None:
        while True:
            idle = not self.channels
            self.wakeup.clear()
            await self.publish(idle)
            if not self.channels:
                if idle:
                    return
                continue  # the last socket ended during the publish: the last snapshot now
            if idle:
                continue  # a socket came during the last one: back to the timer's snapshots
            try:
                await asyncio.wait_for(self.wakeup.wait(), INTERVAL)
            except TimeoutError:
                pass


_reporters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, StatusReporter]] = (
    weakref.WeakKeyDictionary()
)


def reporter_for(layer: Any) -> StatusReporter:
    """The reporter of ``layer`` in the running event loop."""
    per_loop = _reporters.setdefault(asyncio.get_running_loop(), {})
    reporter = per_loop.get(id(layer))
    if reporter is None or reporter.layer is not layer:
        reporter = per_loop[id(layer)] = StatusReporter(layer)
    return reporter


# -- what the consumer calls -----------------------------------------------------------------------


def arrive(layer: Any, channel: str) -> None:
    """A socket was accepted: the process publishes its status while it has any (on a layer with the
    ``status`` extension; on another, nothing)."""
    if supports(layer, STATUS):
        reporter_for(layer).add(channel)


def depart(layer: Any, channel: str) -> None:
    """A socket ended; with the loop's last, its reporter publishes once more and stops."""
    if supports(layer, STATUS):
        reporter_for(layer).discard(channel)
