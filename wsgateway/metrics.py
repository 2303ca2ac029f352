"""What happened, and how often: Prometheus series (with ``prometheus-client``) and process-wide counters.

Every event is counted once, by one call: ``increment(NAME)`` for today's named counters (the
constants below), :class:`SocketMeter` for a socket's life and frames, :func:`pushed`,
:func:`errored` and the histograms' functions for the rest. A named counter adds to a process-local
integer, which :func:`value` and :func:`snapshot` read (tests, a status command), and, when
``prometheus-client`` is installed, to the one series the table :data:`ROUTES` names for it. The
per-frame series count in prometheus-client alone when it is there (see :class:`Count`). Without
``prometheus-client``, wsgateway runs all the same: only the integers count, and no histogram.

Label values come from fixed sets only (the names below, close and error codes, the channels of the
registered services, the consumers' class names), never from what a client sends: a hostile
client cannot create series. A close code no rule knows is ``"other"``; a channel no service has,
``"unknown"``.

The series are registered in prometheus-client's default ``REGISTRY``, the one
django-prometheus exposes. Under ``PROMETHEUS_MULTIPROC_DIR`` prometheus-client writes them to files
its multiprocess collector sums (see docs/metrics.md).

A counter is a name and an integer that only grows; it exists once it was first incremented.
Every thread of the process shares them (a layer's loop, a view's thread), so an increment
takes a lock. Tests read a counter before and after, never reset it: other tests count too.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

from .codes import RECONNECT, ErrorCode

try:
    import prometheus_client as prometheus_client  # re-exported: the view asks it too
except ImportError:  # the optional extra "metrics" is not installed: the integers alone count
    prometheus_client = None  # type: ignore[assignment]

#: Messages a layer dropped because their channel's queue was full (group sends, other processes' sends).
LAYER_DROPPED = "layer.dropped"
#: Messages a layer dropped on arrival because their channel's receiver had forgotten it: replies that
#: came after their requester gave up (wsgateway.asking).
LAYER_LATE = "layer.late"
#: Queued messages a layer dropped because nobody read them within ``expiry`` seconds.
LAYER_EXPIRED = "layer.expired"
#: Overflow episodes: a channel lost its first message since its consumer last asked (``take_overflow``).
LAYER_OVERFLOWED_CHANNELS = "layer.overflowed_channels"
#: Calls the layer refused as busy, not down (the Redis layer's pool stayed full for ``pool_timeout``),
#: and probes that timed out behind a full pool: back-pressure, never counted as an outage.
LAYER_BUSY = "layer.busy"
#: Frames broadcast to every socket (broadcast(), abroadcast()): one layer send each, whatever the sockets.
BROADCASTS = "broadcasts.sent"
#: Notifications stored but not pushed, because the channel layer failed (sockets catch up by resync).
PUSH_FAILED = "push.failed"
#: Users told to catch up once the layer took sends again, after their pushes failed (wsgateway.repairs).
PUSH_REPAIRED = "push.repaired"
#: Users whose failed pushes could not be kept for repair (past WSGATEWAY["MAX_PENDING_REPAIRS"]): their
#: sockets catch up on their next push or connect.
PUSH_UNREPAIRED = "push.unrepaired"
#: Group memberships the refresher failed to renew (the layer was down; the watchdog resyncs later).
MEMBERSHIP_REFRESH_FAILED = "membership.refresh_failed"
#: Sockets' places under ``MAX_CONNECTIONS_PER_USER`` put back after the layer lost them (Redis flushed
#: or restarted without persistence), before any new place was given.
PLACES_RESTORED = "connections.places_restored"
#: Client frames refused ``rate_limited`` (their socket's or their user's bucket was empty).
INBOUND_RATE_LIMITED = "inbound.rate_limited"
#: Sockets closed with 4429 after ``RATE_LIMIT_CLOSE_AFTER`` refused frames in a row.
INBOUND_CLOSED = "inbound.closed"
#: Handshakes refused with 4429 because their user is cooling down after a 4429 (RATE_LIMIT_COOLDOWN).
CONNECTIONS_COOLING_DOWN = "connections.cooling_down"
#: Client frames dropped unread because their socket had closed (the server still held them).
INBOUND_DROPPED_AFTER_CLOSE = "inbound.dropped_after_close"
#: Sockets refused with 4409: their user had ``MAX_CONNECTIONS_PER_USER`` open already.
CONNECTIONS_REFUSED = "connections.refused"
#: Sockets accepted only to be told the site is in maintenance, and closed with 4503.
CONNECTIONS_MAINTENANCE = "connections.maintenance"
#: Sockets refused with 4503 ``unavailable``: the channel layer failed their connect, or did not
#: answer within ``LAYER_CONNECT_TIMEOUT``.
CONNECTIONS_UNAVAILABLE = "connections.unavailable"
#: Handshakes to a path no route serves (wsgateway.routing.unrouted), refused before accept.
CONNECTIONS_UNROUTED = "connections.unrouted"
#: Sockets refused on a retired path (RefusingConsumer), closed with 4410.
CONNECTIONS_GONE = "connections.gone"
#: Handshakes refused before accept: the client offered subprotocols, none of them wsgateway.v1.
CONNECTIONS_SUBPROTOCOL_REFUSED = "connections.subprotocol_refused"
#: Handshakes refused before accept: their Origin is not allowed (wsgateway.origin).
CONNECTIONS_ORIGIN_REFUSED = "connections.origin_refused"

#: Sockets closed with 4408: they left more than ``OUTBOUND_WINDOW`` bytes unacknowledged.
OUTBOUND_CLOSED = "outbound.closed"
#: Frames that waited for room in their socket's window (flow control), whether room came or not.
OUTBOUND_WAITED = "outbound.waited"
#: Sockets brought back in step after a layer outage or overflow: groups re-joined, connect frames resent.
SOCKETS_RESYNCED = "sockets.resynced"
#: Pages of missed notifications served: on a resync's connect frame, and on a client's "sync".
CATCHUP_RESYNC = "catchup.resync"
CATCHUP_SYNC = "catchup.sync"
#: Frames not sent because they were over ``MAX_SEND_SIZE``: replies and connect frames (answered
#: ``too_large`` instead) and pushes (dropped; a notification's stays listable, trimmed).
SEND_TOO_LARGE = "send.too_large"

#: Server requests (wsgateway.asking) a socket passed on to its client.
REQUESTS_SENT = "requests.sent"
#: Client replies to a request the socket held, passed on to the requester.
REQUESTS_ANSWERED = "requests.answered"
#: Server requests a socket did not send its client: over MAX_SEND_SIZE.
REQUESTS_TOO_LARGE = "requests.too_large"
#: Server requests a socket held when it closed, their requesters told at once.
REQUESTS_CLOSED = "requests.closed"
#: Server requests (wsgateway.asking) a socket did not send its client: it held MAX_PENDING_REQUESTS already.
REQUESTS_BUSY = "requests.busy"
#: Server requests a socket forgot unanswered at their deadline (their requester had given up).
REQUESTS_EXPIRED = "requests.expired"
#: Client replies to no request the socket holds: late (after the deadline, or a cancel), or unknown.
REQUESTS_UNMATCHED_REPLY = "requests.unmatched_reply"

#: E-mails of unread notifications sent (wsgateway.notifications.mailing), one per notification at most.
EMAIL_SENT = "email.sent"
#: E-mails whose sending failed: their claim was rolled back, the failure logged, and a later try enqueued.
EMAIL_FAILED = "email.failed"
#: E-mails given up: their last try failed (``mailing.RETRY_AFTER``), or their retry was not enqueued.
EMAIL_GIVEN_UP = "email.given_up"
#: E-mails not sent, one counter per reason: ``email.skipped.read``, ``.seen``, ``.online``...
#: (``mailing.Skip`` names them all).
EMAIL_SKIPPED = "email.skipped"
#: E-mails that could not be scheduled: the Tasks backend cannot defer, or failed to enqueue.
EMAIL_NOT_SCHEDULED = "email.not_scheduled"
#: Digests sent (wsgateway.notifications.digests), and digests whose sending failed.
DIGESTS_SENT = "digests.sent"
DIGESTS_FAILED = "digests.failed"

#: The counters, by series name: what each counts, and its labels. Base units, ``_total`` counters
#: (prometheus-client writes the suffix itself on a Counter named without it, and takes it named with it).
COUNTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "wsgateway_connects_total": ("Sockets accepted, by consumer.", ("endpoint",)),
    "wsgateway_closes_total": (
        "Accepted sockets ended, by consumer and close code (whoever closed; other: a code no rule knows).",
        ("endpoint", "code"),
    ),
    "wsgateway_frames_received_total": ("Client frames handled, by channel.", ("channel",)),
    "wsgateway_frames_sent_total": ("Data frames and pushes sent to clients, by channel.", ("channel",)),
    "wsgateway_errors_total": ("Error frames sent to clients, by error code.", ("code",)),
    "wsgateway_pushes_total": ("Pushes handed to the channel layer, one per user and frame.", ()),
    "wsgateway_broadcasts_total": ("Frames broadcast to every socket, one per broadcast() call.", ()),
    "wsgateway_pushes_failed_total": ("Notifications stored but not pushed: the channel layer failed.", ()),
    "wsgateway_push_repairs_total": (
        "Users told to catch up after their pushes failed (sent), or not kept for it (unrepaired).",
        ("outcome",),
    ),
    "wsgateway_refusals_total": (
        "Handshakes refused, by reason; and client frames refused rate_limited.",
        ("reason",),
    ),
    "wsgateway_layer_dropped_total": ("Messages a layer dropped: their channel's queue was full.", ()),
    "wsgateway_layer_expired_total": ("Queued messages a layer dropped unread after its expiry.", ()),
    "wsgateway_layer_late_total": (
        "Replies a layer dropped on arrival: their requester had given up (wsgateway.asking).",
        (),
    ),
    "wsgateway_layer_overflows_total": (
        "Overflow episodes: a channel lost a message (a resync follows).",
        (),
    ),
    "wsgateway_layer_busy_total": (
        "Layer calls refused as busy (a full pool of Redis connections), and probes behind one: not outages.",
        (),
    ),
    "wsgateway_membership_refresh_failures_total": ("Group memberships the refresher failed to renew.", ()),
    "wsgateway_places_restored_total": (
        "Places under MAX_CONNECTIONS_PER_USER put back after a layer loss.",
        (),
    ),
    "wsgateway_frames_dropped_after_close_total": (
        "Client frames dropped unread: their socket had closed.",
        (),
    ),
    "wsgateway_frames_too_large_total": ("Frames not sent: over MAX_SEND_SIZE.", ()),
    "wsgateway_flow_control_waits_total": ("Frames that waited for room in their socket's window.", ()),
    "wsgateway_resyncs_total": ("Sockets resynced after a layer outage or overflow.", ()),
    "wsgateway_catchup_pages_total": (
        "Pages of missed notifications served, by what asked: a resync's connect frame or a client's sync.",
        ("source",),
    ),
    "wsgateway_requests_total": (
        "Requests to clients (wsgateway.asking), by outcome.",
        ("outcome",),
    ),
    "wsgateway_emails_total": ("E-mails of unread notifications, by outcome.", ("outcome",)),
    "wsgateway_emails_skipped_total": ("E-mails not sent, by reason.", ("reason",)),
    "wsgateway_digests_total": ("Digests, by outcome.", ("outcome",)),
}

#: The histograms: what each measures, and its buckets (no labels: one series each).
HISTOGRAMS: dict[str, tuple[str, tuple[float, ...]]] = {
    # From a push's event (after the commit, for notify()) to its frame's send on one socket, in seconds:
    # a millisecond on one machine, up to seconds behind a socket that does not read (flow control).
    "wsgateway_push_latency_seconds": (
        "Seconds from a push handed to the layer to its frame sent on a socket, one frame in 16.",
        (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    ),
    # Users one push() reaches: a personal notification is 1, a team's ten, a site's announcement thousands.
    "wsgateway_push_fanout_users": (
        "Users one push() or apush() call sends its frame to.",
        (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000),
    ),
    # A full collection stalls every socket of the process: under a millisecond with start-up frozen
    # and few sockets, seconds at thousands of sockets before issue 24 (wsgateway.collector).
    "wsgateway_gc_pause_seconds": (
        "Seconds each full collection (the oldest generation) of the cyclic garbage collector stalled "
        "the process, from the first socket on.",
        (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
    ),
}

#: The gauge of open sockets. Under PROMETHEUS_MULTIPROC_DIR, one sample per process (a ``pid``
#: label; "liveall"): the sockets of each process, not only their sum. A dead process's sample goes
#: at the next scrape (wsgateway.metrics_view.forget_dead), or when gunicorn's ``child_exit`` marks it.
SOCKETS_OPEN = "wsgateway_sockets_open"
SOCKETS_OPEN_DOC = "Sockets open now, by consumer (and, multiprocess, by process)."

#: Each named counter's series and label values. ``None``: the event is counted by another series
#: already (a 4429 or 4408 close is a ``wsgateway_closes_total`` sample), so that nothing is counted twice.
ROUTES: dict[str, tuple[str, tuple[str, ...]] | None] = {
    LAYER_DROPPED: ("wsgateway_layer_dropped_total", ()),
    LAYER_EXPIRED: ("wsgateway_layer_expired_total", ()),
    LAYER_LATE: ("wsgateway_layer_late_total", ()),
    LAYER_OVERFLOWED_CHANNELS: ("wsgateway_layer_overflows_total", ()),
    LAYER_BUSY: ("wsgateway_layer_busy_total", ()),
    BROADCASTS: ("wsgateway_broadcasts_total", ()),
    PUSH_FAILED: ("wsgateway_pushes_failed_total", ()),
    PUSH_REPAIRED: ("wsgateway_push_repairs_total", ("sent",)),
    PUSH_UNREPAIRED: ("wsgateway_push_repairs_total", ("unrepaired",)),
    MEMBERSHIP_REFRESH_FAILED: ("wsgateway_membership_refresh_failures_total", ()),
    PLACES_RESTORED: ("wsgateway_places_restored_total", ()),
    INBOUND_RATE_LIMITED: ("wsgateway_refusals_total", ("rate_limited",)),
    INBOUND_CLOSED: None,
    CONNECTIONS_COOLING_DOWN: ("wsgateway_refusals_total", ("cooling_down",)),
    INBOUND_DROPPED_AFTER_CLOSE: ("wsgateway_frames_dropped_after_close_total", ()),
    CONNECTIONS_REFUSED: ("wsgateway_refusals_total", ("cap",)),
    CONNECTIONS_MAINTENANCE: ("wsgateway_refusals_total", ("maintenance",)),
    CONNECTIONS_UNAVAILABLE: ("wsgateway_refusals_total", ("unavailable",)),
    CONNECTIONS_UNROUTED: ("wsgateway_refusals_total", ("unrouted",)),
    CONNECTIONS_GONE: ("wsgateway_refusals_total", ("gone",)),
    CONNECTIONS_SUBPROTOCOL_REFUSED: ("wsgateway_refusals_total", ("subprotocol",)),
    CONNECTIONS_ORIGIN_REFUSED: ("wsgateway_refusals_total", ("origin",)),
    OUTBOUND_CLOSED: None,
    OUTBOUND_WAITED: ("wsgateway_flow_control_waits_total", ()),
    SOCKETS_RESYNCED: ("wsgateway_resyncs_total", ()),
    CATCHUP_RESYNC: ("wsgateway_catchup_pages_total", ("resync",)),
    CATCHUP_SYNC: ("wsgateway_catchup_pages_total", ("sync",)),
    SEND_TOO_LARGE: ("wsgateway_frames_too_large_total", ()),
    REQUESTS_SENT: ("wsgateway_requests_total", ("sent",)),
    REQUESTS_ANSWERED: ("wsgateway_requests_total", ("answered",)),
    REQUESTS_TOO_LARGE: ("wsgateway_requests_total", ("too_large",)),
    REQUESTS_CLOSED: ("wsgateway_requests_total", ("closed",)),
    REQUESTS_BUSY: ("wsgateway_requests_total", ("busy",)),
    REQUESTS_EXPIRED: ("wsgateway_requests_total", ("expired",)),
    REQUESTS_UNMATCHED_REPLY: ("wsgateway_requests_total", ("unmatched_reply",)),
    EMAIL_SENT: ("wsgateway_emails_total", ("sent",)),
    EMAIL_FAILED: ("wsgateway_emails_total", ("failed",)),
    EMAIL_GIVEN_UP: ("wsgateway_emails_total", ("given_up",)),
    EMAIL_NOT_SCHEDULED: ("wsgateway_emails_total", ("not_scheduled",)),
    DIGESTS_SENT: ("wsgateway_digests_total", ("sent",)),
    DIGESTS_FAILED: ("wsgateway_digests_total", ("failed",)),
}

ERROR_CODES = frozenset(code.value for code in ErrorCode)

#: A channel label for a frame on no service's channel: the client chose its name.
UNKNOWN_CHANNEL = "unknown"
#: A code label for a close code no rule knows (a client may close with any code from 3000 to 4999).
OTHER = "other"

_lock = threading.Lock()
_counters: dict[str, int] = {}


def _make_series() -> dict[str, Any]:
    if prometheus_client is None:
        return {}
    made: dict[str, Any] = {
        name: prometheus_client.Counter(name, doc, labels) for name, (doc, labels) in COUNTERS.items()
    }
    for name, (doc, buckets) in HISTOGRAMS.items():
        made[name] = prometheus_client.Histogram(name, doc, buckets=buckets)
    made[SOCKETS_OPEN] = prometheus_client.Gauge(
        SOCKETS_OPEN, SOCKETS_OPEN_DOC, ("endpoint",), multiprocess_mode="liveall"
    )
    return made


#: The prometheus-client metrics, by series name, registered in its default REGISTRY at import.
SERIES: dict[str, Any] = _make_series()


def key(series: str, *values: str) -> str:
    """The name :func:`value` reads a series' sample by: ``series`` and its label values, colon-joined."""
    return ":".join((series, *values))


class Count:
    """One sample: its prometheus-client child, or without prometheus-client its process-local integer.
    Made once per sample and kept (:func:`count`). Not both: these are counted per frame, and the
    integer's lock and dict would double what a frame pays (0.35 us for the child's ``inc`` alone, 0.62 us
    with the integer too, measured with timeit here); the child is read through the registry instead."""

    __slots__ = ("child", "name")

    def __init__(self, name: str, child: Any) -> None:
        self.name = name
        self.child = child

    def inc(self, by: int = 1) -> None:
        if self.child is not None:
            self.child.inc(by)
            return
        with _lock:
            _counters[self.name] = _counters.get(self.name, 0) + by


_counts: dict[str, Count] = {}


def count(series: str, *values: str) -> Count:
    """The sample of ``series`` with these label values (which must come from a fixed set)."""
    name = key(series, *values)
    found = _counts.get(name)
    if found is None:
        metric = SERIES.get(series)
        child = None if metric is None else (metric.labels(*values) if values else metric)
        found = _counts[name] = Count(name, child)
    return found


def _routed(name: str) -> Count | None:
    """The sample a named counter adds to, or None when another series counts its event."""
    if name.startswith(EMAIL_SKIPPED + "."):  # mailing.Skip's values, a fixed set
        return count("wsgateway_emails_skipped_total", name[len(EMAIL_SKIPPED) + 1 :])
    route = ROUTES.get(name)
    return None if route is None else count(route[0], *route[1])


_named: dict[str, Count | None] = {}


def increment(name: str, by: int = 1) -> None:
    """Count one event (``by`` events) under a named counter, and in its series."""
    with _lock:
        _counters[name] = _counters.get(name, 0) + by
    if name not in _named:
        _named[name] = _routed(name)
    sample = _named[name]
    if sample is not None and sample.child is not None:
        sample.child.inc(by)


def close_label(code: int | None) -> str:
    """A close code as a label: one a rule knows (wsgateway.codes.RECONNECT), else ``"other"``."""
    return str(int(code)) if code is not None and code in RECONNECT else OTHER


def error_label(code: str) -> str:
    """An error code as a label: one of wsgateway.codes.ErrorCode, else ``"other"``."""
    return str(code) if code in ERROR_CODES else OTHER


def pushed(pushes: int) -> None:
    """``pushes`` frames handed to the layer, one per user (push(), push_many() and their async twins)."""
    count("wsgateway_pushes_total").inc(pushes)


def fanned_out(users: int) -> None:
    """One push() to ``users`` users: the fan-out histogram (nothing without prometheus-client)."""
    if (histogram := SERIES.get("wsgateway_push_fanout_users")) is not None:
        histogram.observe(users)


def gc_paused(seconds: float) -> None:
    """A full collection took ``seconds`` (see wsgateway.collector; nothing without prometheus-client)."""
    if (histogram := SERIES.get("wsgateway_gc_pause_seconds")) is not None:
        histogram.observe(seconds)


#: One pushed frame in this many, in the order the process sends them, is timed into the latency
#: histogram. A sample's observe costs 0.7 us in one process and 1.9 us in multiprocess mode (timeit),
#: where a frame's whole send costs 30 to 100 us: timing every frame cost 2 to 4% of fan-out, timing one in
#: 16 costs a sixteenth of that. Taken evenly over the frames, the sample has the distribution of them all,
#: so the quantiles hold; only ``_count`` and ``_sum`` are a sixteenth of the frames'.
LATENCY_SAMPLE = 16
_frames_sent = itertools.count()  # next() on it is one C call: no lock, nothing lost between threads


def push_delivered(pushed_at: float) -> None:
    """A push's frame sent on a socket, ``pushed_at`` (``time.time()``, the pushing process's clock)
    being when it was handed to the layer: timed if it is the one in :data:`LATENCY_SAMPLE`. A negative
    delay (clocks of two machines) is counted as 0."""
    if next(_frames_sent) % LATENCY_SAMPLE:
        return
    if (histogram := SERIES.get("wsgateway_push_latency_seconds")) is not None:
        histogram.observe(max(0.0, time.time() - pushed_at))


def errored(code: str) -> None:
    count("wsgateway_errors_total", error_label(code)).inc()


class SocketMeter:
    """One socket's part in the series: opened once, closed once (the gauge goes up and back down,
    whatever order the end's steps run in), and its frames by channel.

    ``channels``: the channels its frames may be labelled with (the gateway's and its services');
    a client's frame on another is counted as ``"unknown"``.
    """

    __slots__ = ("_received", "_sent", "channels", "endpoint", "is_open")

    def __init__(self, endpoint: str, channels: frozenset[str]) -> None:
        self.endpoint = endpoint
        self.channels = channels
        self.is_open = False
        self._received: dict[str, Count] = {}
        self._sent: dict[str, Count] = {}

    def opened(self) -> None:
        if not self.is_open:
            self.is_open = True
            count("wsgateway_connects_total", self.endpoint).inc()
            count(SOCKETS_OPEN, self.endpoint).inc()

    def closed(self, code: int | None) -> None:
        if self.is_open:
            self.is_open = False
            count("wsgateway_closes_total", self.endpoint, close_label(code)).inc()
            count(SOCKETS_OPEN, self.endpoint).inc(-1)

    def received(self, channel: str) -> None:
        label = channel if channel in self.channels else UNKNOWN_CHANNEL
        if (sample := self._received.get(label)) is None:
            sample = self._received[label] = count("wsgateway_frames_received_total", label)
        sample.inc()

    def sent(self, channel: str) -> None:
        label = channel if channel in self.channels else UNKNOWN_CHANNEL
        if (sample := self._sent.get(label)) is None:
            sample = self._sent[label] = count("wsgateway_frames_sent_total", label)
        sample.inc()


def value(name: str) -> int:
    """The named counter's current value; 0 for one never incremented. A series' sample by :func:`key`
    only without prometheus-client (with it, read the registry: see :class:`Count`)."""
    with _lock:
        return _counters.get(name, 0)


def snapshot() -> dict[str, int]:
    """Every counter, as one consistent copy."""
    with _lock:
        return dict(_counters)
