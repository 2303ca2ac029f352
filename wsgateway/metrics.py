"""Process-wide named counters: what went wrong, and how often, for a metrics endpoint to expose.

A counter is a name and an integer that only grows; it exists once it was first incremented.
Every thread of the process shares them (a layer's loop, a view's thread), so an increment
takes a lock. Tests read a counter before and after, never reset it: other tests count too.
"""

from __future__ import annotations

import threading

#: Messages a layer dropped because their channel's queue was full (group sends, other processes' sends).
LAYER_DROPPED = "layer.dropped"
#: Messages a layer dropped on arrival because their channel's receiver had forgotten it: replies that
#: came after their requester gave up (wsgateway.asking).
LAYER_LATE = "layer.late"
#: Queued messages a layer dropped because nobody read them within ``expiry`` seconds.
LAYER_EXPIRED = "layer.expired"
#: Overflow episodes: a channel lost its first message since its consumer last asked (``take_overflow``).
LAYER_OVERFLOWED_CHANNELS = "layer.overflowed_channels"
#: Notifications stored but not pushed, because the channel layer failed (sockets catch up by resync).
PUSH_FAILED = "push.failed"
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

#: Sockets closed with 4408: they left more than ``OUTBOUND_WINDOW`` bytes unacknowledged.
OUTBOUND_CLOSED = "outbound.closed"
#: Frames not sent because they were over ``MAX_SEND_SIZE``: replies and connect frames (answered
#: ``too_large`` instead) and pushes (dropped; a notification's stays listable, trimmed).
SEND_TOO_LARGE = "send.too_large"

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

_lock = threading.Lock()
_counters: dict[str, int] = {}


def increment(name: str, by: int = 1) -> None:
    with _lock:
        _counters[name] = _counters.get(name, 0) + by


def value(name: str) -> int:
    """The counter's current value; 0 for one never incremented."""
    with _lock:
        return _counters.get(name, 0)


def snapshot() -> dict[str, int]:
    """Every counter, as one consistent copy."""
    with _lock:
        return dict(_counters)
