"""The ``WSGATEWAY`` setting: one table of its keys, and one typed accessor per key.

:data:`KEYS` declares each key once: its default, its shape, whether ``None`` is
allowed, its bound (the hard ceilings are :mod:`wsgateway.bounds`) and what it is for.
:data:`DEFAULTS` and :data:`IMPORT_STRINGS` are read off it, and :mod:`wsgateway.checks`
generates its shape and bound checks from it, so a new key is declared in one place.

Nothing is cached except imported dotted paths, and that cache is dropped on
``setting_changed``, so ``override_settings`` works in tests. This module knows none of
what it names: the code that uses a dotted path imports it through :func:`import_from_setting`
(``wsgateway.auth.authenticator_classes``, ``wsgateway.services.base.service_classes``,
``wsgateway.services.clipboard.clipboard_permission``). What a key may hold is :mod:`wsgateway.shapes`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any, Generic, TypeVar, overload

from django.conf import settings
from django.utils.module_loading import import_string

from .bounds import (
    DAPHNE_MAX_SEND,
    MAX_ACK_TIMEOUT,
    MAX_CONNECTIONS_BOUND,
    MAX_GC_FREEZE_EVERY,
    MAX_GROUP_PREFIX_LENGTH,
    MAX_KEEP_DAYS,
    MAX_LAYER_CONNECT_TIMEOUT,
    MAX_MAINTENANCE_CHECK_INTERVAL,
    MAX_OUTBOUND_WINDOW,
    MAX_PAGE_SIZE,
    MAX_PENDING_BOUND,
    MAX_PENDING_REPAIRS_BOUND,
    MAX_PRESENCE_GRACE,
    MAX_PRUNE_BATCH,
    MAX_RATE,
    MAX_RATE_LIMIT_COOLDOWN,
    MAX_REQUEST_TIMEOUT_BOUND,
    MAX_RESYNC_RATE,
    MAX_RETRY_AFTER,
    MAX_SEND_CEILING,
    MAX_SNOOZE_CHECK_INTERVAL,
    MIN_OUTBOUND_WINDOW,
)
from .shapes import Key, Shape

KEYS: dict[str, Key] = {
    "SERVICES": Key(
        [
            "wsgateway.services.notifier.NotifierService",
            "wsgateway.services.clipboard.ClipboardService",
        ],
        Shape.LIST_OF_DOTTED_PATHS,
        "Service classes, one per channel, in the order their connect frames are sent.",
    ),
    # The token comes first so that an explicit token wins over an ambient session.
    "AUTHENTICATORS": Key(
        ["wsgateway.auth.BearerTokenAuthenticator", "wsgateway.auth.SessionAuthenticator"],
        Shape.LIST_OF_DOTTED_PATHS,
        "Authenticator classes, tried in order; the first that recognises credentials decides.",
    ),
    "ALLOWED_ORIGINS": Key(
        None,
        Shape.LIST_OF_STRINGS,
        'Browser origins that may open a socket, like "https://example.com", or "*" for any; '
        "None: a page on the socket's own host and port (the Host header), if ALLOWED_HOSTS allows it.",
        nullable=True,
    ),
    "MAX_MESSAGE_SIZE": Key(
        64 * 1024,
        Shape.POSITIVE_INTEGER,
        "Largest client frame in bytes; a bigger one closes the socket with 1009.",
    ),
    "TOKEN_MAX_AGE": Key(
        60 * 60,
        Shape.POSITIVE_INTEGER,
        "Lifetime in seconds of bearer tokens issued by wsgateway.auth.issue_token.",
    ),
    "REVALIDATE_INTERVAL": Key(
        5 * 60,
        Shape.POSITIVE_INTEGER,
        "Seconds between the re-checks of an open socket's login (the user still active, the same "
        "password, the session still there); a session's or token's expiry is checked when it passes.",
    ),
    "TOKEN_COOKIE_NAME": Key(
        "wsgateway_token",
        Shape.STRING,
        "Cookie read by BearerTokenAuthenticator when there is no Authorization header; "
        'None or "": no cookie.',
        nullable=True,
    ),
    "CHANNEL_LAYER": Key(
        "default",
        Shape.STRING,
        "Alias in CHANNEL_LAYERS of the layer wsgateway uses.",
    ),
    "GROUP_PREFIX": Key(
        "wsgateway",
        Shape.STRING,
        'Prefix of the per-user group names, "<prefix>.user.<id>", to share a layer with other apps; '
        f"at most {MAX_GROUP_PREFIX_LENGTH} characters, so that a 20-character user id still fits "
        "within Channels' limit on names.",
        most=MAX_GROUP_PREFIX_LENGTH,
    ),
    "CLIPBOARD_MAX_ENTRIES": Key(
        500,
        Shape.POSITIVE_INTEGER,
        "Most clipboard entries one user may hold.",
    ),
    "CLIPBOARD_PERMISSION": Key(
        "wsgateway.services.clipboard.user_can_view",
        Shape.DOTTED_PATH,
        "Callable (user, obj) -> bool: may this user put this object on the clipboard?",
    ),
    # Over MAX_PAGE_SIZE, every "list" without a limit would be refused.
    "NOTIFICATIONS_PAGE_SIZE": Key(
        20,
        Shape.POSITIVE_INTEGER,
        f'Page size of the notifications "list" action when the client gives no limit; '
        f"at most {MAX_PAGE_SIZE}, the largest limit a client may ask for.",
        most=MAX_PAGE_SIZE,
    ),
    "NOTIFICATIONS_BADGE": Key(
        "unread",
        Shape.BADGE_COUNT,
        'What the badge count ("counts": {"badge"}) counts: "unread" notifications, or "unseen" ones '
        "(not yet shown by an inbox), as Novu, Knock and MagicBell do.",
    ),
    # Every process runs the clock while it serves a notifications socket: no scheduler to add.
    "NOTIFICATIONS_SNOOZE_CHECK_INTERVAL": Key(
        10,
        Shape.POSITIVE_INTEGER,
        "Seconds between two looks, by each process serving notification sockets, for snoozed "
        "notifications that are due; one comes back (pushed as new) within this many seconds. "
        f"At most {MAX_SNOOZE_CHECK_INTERVAL}.",
        most=MAX_SNOOZE_CHECK_INTERVAL,
    ),
    "NOTIFICATIONS_KEEP_READ": Key(
        180,
        Shape.POSITIVE_INTEGER,
        "Days a read notification is kept after its last change; then pruning removes it "
        "(manage.py wsgateway_prune). None: kept for ever.",
        nullable=True,
        most=MAX_KEEP_DAYS,
    ),
    "NOTIFICATIONS_KEEP_ARCHIVED": Key(
        180,
        Shape.POSITIVE_INTEGER,
        "Days an archived notification is kept after its last change; then pruning removes it. "
        "None: kept for ever.",
        nullable=True,
        most=MAX_KEEP_DAYS,
    ),
    # A tab offline for longer than this is told to reload its inbox (a sync's "reset").
    "NOTIFICATIONS_KEEP_DELETED": Key(
        30,
        Shape.POSITIVE_INTEGER,
        "Days the tombstone of a notification the user deleted is kept, so that a tab offline at the "
        "time is told; then pruning removes it, and a tab offline longer reloads its inbox.",
        most=MAX_KEEP_DAYS,
    ),
    # 250: on 1,000,000 rows a range of 1000 ids held its locks up to 2.5 s on a loaded machine, one of
    # 250 up to 0.14 s on PostgreSQL (bench/README.md).
    "NOTIFICATION_KINDS": Key(
        {},
        Shape.DICT,
        "The kinds of notification the site sends, by name: each a dict with its label, the channels it "
        "may use (inapp, email), whether it is required, its default per channel, and its e-mail "
        "fallback (email_after seconds, email_if_offline). See docs/away.md.",
    ),
    "NOTIFICATIONS_PRUNE_BATCH": Key(
        250,
        Shape.POSITIVE_INTEGER,
        "Primary keys one pruning statement covers (a range of ids): what bounds how long it holds "
        f"its locks. At most {MAX_PRUNE_BATCH}.",
        most=MAX_PRUNE_BATCH,
    ),
    "RATE_LIMIT": Key(
        20,
        Shape.POSITIVE_INTEGER,
        "Client frames a second one socket may send, sustained; a frame over it is answered "
        "rate_limited and not handled.",
        most=MAX_RATE,
    ),
    "RATE_BURST": Key(
        40,
        Shape.POSITIVE_INTEGER,
        "Client frames one socket may send at once, over RATE_LIMIT (the size of its token bucket), "
        "and the most that wait to be handled.",
        most=MAX_RATE,
    ),
    "USER_RATE_LIMIT": Key(
        50,
        Shape.POSITIVE_INTEGER,
        "Client frames a second all of one user's sockets on one process may send, sustained.",
        most=MAX_RATE,
    ),
    "USER_RATE_BURST": Key(
        100,
        Shape.POSITIVE_INTEGER,
        "Client frames all of one user's sockets on one process may send at once, over USER_RATE_LIMIT.",
        most=MAX_RATE,
    ),
    "RATE_LIMIT_CLOSE_AFTER": Key(
        50,
        Shape.POSITIVE_INTEGER,
        "Frames refused in a row (rate_limited) after which the socket is closed with 4429.",
        most=MAX_RATE,
    ),
    # Without it, a client that reconnects on each 4429 gets a fresh burst and a fresh refusal budget
    # every time, at the price of a handshake: the red team's flood did so at once, and cost another
    # user's pushes 20 times their latency. Within the JS client's pause after a 4429 (8-16 s) or so.
    "RATE_LIMIT_COOLDOWN": Key(
        15,
        Shape.POSITIVE_INTEGER,
        "Seconds a user whose socket was closed with 4429 is refused new sockets (4429 again, with "
        "retry_after), on every process sharing wsgateway's Redis layer (per process on another "
        f"layer). At most {MAX_RATE_LIMIT_COOLDOWN}.",
        most=MAX_RATE_LIMIT_COOLDOWN,
    ),
    # daphne's send never blocks and its transport buffers without bound: this is the only
    # bound on what a socket that does not read costs the server.
    "OUTBOUND_WINDOW": Key(
        1024 * 1024,
        Shape.POSITIVE_INTEGER,
        "Bytes the server may have sent a socket that the client has not acknowledged yet; a frame "
        "past it waits for an acknowledgement (ACK_TIMEOUT), then the socket is closed with 4408 "
        "(the client reconnects and catches up).",
        least=MIN_OUTBOUND_WINDOW,
        most=MAX_OUTBOUND_WINDOW,
    ),
    "ACK_TIMEOUT": Key(
        10,
        Shape.POSITIVE_INTEGER,
        "Seconds a frame waits for the client to acknowledge enough of its window; then the socket "
        "is closed with 4408. Its pushes wait in the channel layer meanwhile.",
        most=MAX_ACK_TIMEOUT,
    ),
    # Phoenix, Ably and Centrifugo debounce presence over 15 to 60 s: long enough for a reload or a
    # short network change, short enough for a green dot that means "here now".
    "PRESENCE_GRACE": Key(
        30,
        Shape.POSITIVE_INTEGER,
        "Seconds a user stays online after their last socket ended (wsgateway.presence): a reconnect "
        f"within it sends neither user_offline nor user_online. At most {MAX_PRESENCE_GRACE}.",
        most=MAX_PRESENCE_GRACE,
    ),
    # Being online is personal data: the default shows a non-staff user no one but themselves.
    "PRESENCE_VISIBLE": Key(
        "wsgateway.services.presence.staff_see_all",
        Shape.DOTTED_PATH,
        "Callable (user, ids) -> the ids of those the user may watch on the presence channel; by default "
        "staff see everyone, anyone else only themselves.",
    ),
    "MAX_CONNECTIONS_PER_USER": Key(
        20,
        Shape.POSITIVE_INTEGER,
        "Sockets one user may have open at once, on all processes sharing the channel layer (per process "
        "on a layer without the connections extension); the next is refused with 4409.",
        most=MAX_CONNECTIONS_BOUND,
    ),
    # Bounded by MAX_SEND_CEILING; above DAPHNE_MAX_SEND, W006 until the site says daphne sends more.
    "MAX_SEND_SIZE": Key(
        512 * 1024,
        Shape.POSITIVE_INTEGER,
        "Largest frame in bytes the server sends: notify() refuses a bigger notification, a list or "
        "sync page is cut short, and a reply that would be bigger is answered too_large. At most "
        f"what the server can send: daphne sends {DAPHNE_MAX_SEND} bytes unless its "
        f"--websocket-max-message-size says more, and nothing over {MAX_SEND_CEILING} ever (Redis' "
        "pub/sub buffer).",
        most=MAX_SEND_CEILING,
    ),
    "CLIPBOARD_MAX_ENTRY_BYTES": Key(
        64 * 1024,
        Shape.POSITIVE_INTEGER,
        "Largest clipboard entry in bytes: its data as JSON, or its reference (model, key and label).",
    ),
    "CLIPBOARD_MAX_BYTES": Key(
        256 * 1024,
        Shape.POSITIVE_INTEGER,
        "Most bytes of clipboard entries one user may hold, counted as CLIPBOARD_MAX_ENTRY_BYTES counts "
        "them; with CLIPBOARD_MAX_ENTRIES, the whole clipboard must fit in MAX_SEND_SIZE (E012).",
    ),
    # Server requests (wsgateway.asking): what one socket holds for requesters, however many ask.
    "MAX_PENDING_REQUESTS": Key(
        32,
        Shape.POSITIVE_INTEGER,
        "Requests from the server (ask()) one socket may have unanswered at once; the next is not sent "
        "to its client, and its requester is told at once (RequestDropped, code busy).",
        most=MAX_PENDING_BOUND,
    ),
    "MAX_REQUEST_TIMEOUT": Key(
        300,
        Shape.POSITIVE_INTEGER,
        "Longest timeout in seconds ask() accepts: how long a socket may hold a request unanswered.",
        most=MAX_REQUEST_TIMEOUT_BOUND,
    ),
    # A paused Redis answers nothing and refuses nothing: without a bound, a connect waits on it for
    # as long as the client does, and ends in a traceback instead of a refusal. Under daphne's own
    # bound on a handshake (--websocket_connect_timeout, 5 s), past which it drops it without a word.
    "LAYER_CONNECT_TIMEOUT": Key(
        2,
        Shape.POSITIVE_INTEGER,
        "Seconds a connect waits for the channel layer (its place under the cap, its groups); past it, "
        "or at once if the layer fails, the socket is refused with 4503 and `unavailable`. "
        f"At most {MAX_LAYER_CONNECT_TIMEOUT}.",
        most=MAX_LAYER_CONNECT_TIMEOUT,
    ),
    # Per process: each runs its own recovery, so N processes resync N times this in all.
    "RESYNC_RATE": Key(
        200,
        Shape.POSITIVE_INTEGER,
        "Sockets a second one process resyncs at most once a channel layer (or a Redis node of it) is back "
        "after an outage, in batches of a tenth: a socket waiting its turn gets new pushes meanwhile, and "
        f"only what it missed waits. At most {MAX_RESYNC_RATE}.",
        most=MAX_RESYNC_RATE,
    ),
    # Per process, and for this process's pushes only: each process repairs what it failed to send.
    "MAX_PENDING_REPAIRS": Key(
        10_000,
        Shape.POSITIVE_INTEGER,
        "Users one process keeps at most whose pushes the channel layer refused, to tell their sockets to "
        "catch up once it takes a send again (wsgateway.repairs). Past it a user is counted "
        '(`wsgateway_push_repairs_total{outcome="unrepaired"}`) and logged once, and its sockets catch up '
        f"on their next push or connect. About 100 bytes a user. At most {MAX_PENDING_REPAIRS_BOUND}.",
        most=MAX_PENDING_REPAIRS_BOUND,
    ),
    # Read once per interval per process, not per connect: a connect storm costs no database work.
    "MAINTENANCE_CHECK_INTERVAL": Key(
        2,
        Shape.POSITIVE_INTEGER,
        "Seconds each process keeps the maintenance state (wsgateway.maintenance) it read from the "
        "database; `manage.py wsgateway_maintenance on` and `off` take effect on every process within "
        f"this many seconds. At most {MAX_MAINTENANCE_CHECK_INTERVAL}.",
        most=MAX_MAINTENANCE_CHECK_INTERVAL,
    ),
    "MAINTENANCE_RETRY_AFTER": Key(
        30,
        Shape.POSITIVE_INTEGER,
        "Seconds a client refused for maintenance waits before it reconnects, when the maintenance "
        f"was switched on without --retry-after. At most {MAX_RETRY_AFTER}.",
        most=MAX_RETRY_AFTER,
    ),
    "EMAIL_TASK_BACKEND": Key(
        "default",
        Shape.STRING,
        "The alias in TASKS of the Tasks backend that sends the e-mails of unread notifications and the "
        "digests (wsgateway.tasks). It must support run_after for a kind with email_after (W009).",
        most=100,
    ),
    # An origin, not a request's host: the e-mails are written by a worker, which has no request.
    "EMAIL_SITE_URL": Key(
        "",
        Shape.STRING,
        "The site's origin (https://example.com) that the e-mails' links start with: the site itself "
        "and the one-click unsubscribe. Required when a kind falls back to e-mail (E017).",
        most=200,
    ),
    # Process-wide, so a setting a site can turn off, with what it costs measured in docs/deployment.md.
    "GC_FREEZE": Key(
        True,
        Shape.BOOLEAN,
        "At a process's first socket, collect once and then gc.freeze() what is left (what start-up "
        "loaded), so that no later full collection walks it again (wsgateway.collector). False: "
        "the collector is left as the site set it.",
    ),
    # On by default: at 5,000 uvicorn sockets no pause over 143 ms but the hourly thaw's (CPython's own: up
    # to 948 ms), and what a closed socket leaves frozen (uvicorn's cycle, 21 objects, 5 KiB) the thaw
    # frees, its memory reused by later sockets (bench/README.md, "What a closed socket leaves frozen").
    "GC_FREEZE_EVERY": Key(
        30,
        Shape.POSITIVE_INTEGER,
        "Seconds between two freezes of what lived through the interval (one collection of what is not "
        "frozen, then gc.freeze()): that collection walks only what is newer, however many sockets are "
        "held, and while the timer runs CPython starts no full collection of its own. A reference cycle "
        "frozen (a server's, of a closed socket) waits for the hourly thaw. None: only start-up, and "
        "CPython's thresholds as they are. "
        f"At most {MAX_GC_FREEZE_EVERY}.",
        nullable=True,
        most=MAX_GC_FREEZE_EVERY,
    ),
    # A scraper has no session: a token in its config (Prometheus' "authorization" block) instead.
    "METRICS_TOKEN": Key(
        None,
        Shape.STRING,
        "The bearer token (Authorization: Bearer ...) a Prometheus scrape of wsgateway:metrics presents; "
        "None: only a logged-in staff user may read the metrics.",
        nullable=True,
        most=200,
    ),
}

#: Each key's default.
DEFAULTS: dict[str, Any] = {name: key.default for name, key in KEYS.items()}

#: The keys that name things to import.
IMPORT_STRINGS: tuple[str, ...] = tuple(name for name, key in KEYS.items() if key.shape.imports)


T = TypeVar("T")


class Setting(Generic[T]):
    """One key of ``WSGATEWAY`` as an attribute of :class:`GatewaySettings`, read on every access
    and converted by ``convert`` (a fresh list each time: a caller may change what it gets)."""

    def __init__(self, convert: Callable[[Any], T]) -> None:
        self.convert = convert
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type) -> Setting[T]: ...
    @overload
    def __get__(self, instance: GatewaySettings, owner: type) -> T: ...
    def __get__(self, instance: GatewaySettings | None, owner: type) -> Setting[T] | T:
        if instance is None:
            return self
        return self.convert(instance.get(self.name))


def _optional_list(value: Any) -> list[str] | None:
    return None if value is None else list(value)


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _optional_name(value: Any) -> str | None:
    return str(value) if value else None


class GatewaySettings:
    """Read-through view of ``settings.WSGATEWAY`` merged over :data:`DEFAULTS`."""

    @property
    def user_settings(self) -> dict[str, Any]:
        value = getattr(settings, "WSGATEWAY", {})
        return value if isinstance(value, dict) else {}

    def get(self, key: str) -> Any:
        return self.user_settings.get(key, DEFAULTS[key])

    SERVICES = Setting(list[str])
    AUTHENTICATORS = Setting(list[str])
    ALLOWED_ORIGINS = Setting(_optional_list)
    MAX_MESSAGE_SIZE = Setting(int)
    TOKEN_MAX_AGE = Setting(int)
    PRESENCE_GRACE = Setting(int)
    PRESENCE_VISIBLE = Setting(str)
    REVALIDATE_INTERVAL = Setting(int)
    TOKEN_COOKIE_NAME = Setting(_optional_name)
    CHANNEL_LAYER = Setting(str)
    GROUP_PREFIX = Setting(str)
    CLIPBOARD_MAX_ENTRIES = Setting(int)
    CLIPBOARD_PERMISSION = Setting(str)
    NOTIFICATIONS_PAGE_SIZE = Setting(int)
    NOTIFICATIONS_BADGE = Setting(str)
    NOTIFICATIONS_SNOOZE_CHECK_INTERVAL = Setting(int)
    NOTIFICATIONS_KEEP_READ = Setting(_optional_int)
    NOTIFICATIONS_KEEP_ARCHIVED = Setting(_optional_int)
    NOTIFICATIONS_KEEP_DELETED = Setting(int)
    NOTIFICATIONS_PRUNE_BATCH = Setting(int)
    NOTIFICATION_KINDS = Setting(dict[str, Any])
    RATE_LIMIT = Setting(int)
    RATE_BURST = Setting(int)
    USER_RATE_LIMIT = Setting(int)
    USER_RATE_BURST = Setting(int)
    RATE_LIMIT_CLOSE_AFTER = Setting(int)
    RATE_LIMIT_COOLDOWN = Setting(int)
    OUTBOUND_WINDOW = Setting(int)
    ACK_TIMEOUT = Setting(int)
    MAX_CONNECTIONS_PER_USER = Setting(int)
    MAX_SEND_SIZE = Setting(int)
    CLIPBOARD_MAX_ENTRY_BYTES = Setting(int)
    CLIPBOARD_MAX_BYTES = Setting(int)
    MAX_PENDING_REQUESTS = Setting(int)
    MAX_REQUEST_TIMEOUT = Setting(int)
    LAYER_CONNECT_TIMEOUT = Setting(int)
    RESYNC_RATE = Setting(int)
    MAX_PENDING_REPAIRS = Setting(int)
    MAINTENANCE_CHECK_INTERVAL = Setting(int)
    MAINTENANCE_RETRY_AFTER = Setting(int)
    EMAIL_TASK_BACKEND = Setting(str)
    EMAIL_SITE_URL = Setting(str)
    METRICS_TOKEN = Setting(_optional_name)
    GC_FREEZE = Setting(bool)
    GC_FREEZE_EVERY = Setting(_optional_int)


gateway_settings = GatewaySettings()


@cache
def import_from_setting(dotted_path: str) -> Any:
    """Import a dotted path named in ``WSGATEWAY``; cached until settings change."""
    return import_string(dotted_path)


def reset_caches(*, setting: str, **kwargs: Any) -> None:
    """Receiver of ``setting_changed``, connected in ``AppConfig.ready``."""
    if setting in {"WSGATEWAY", "CHANNEL_LAYERS", "ALLOWED_HOSTS"}:
        import_from_setting.cache_clear()
