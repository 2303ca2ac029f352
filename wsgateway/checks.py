"""System checks: ``wsgateway.E001`` and up for errors, ``wsgateway.W001`` and up for warnings.

The shape, ``None`` and bound checks are generated from :data:`wsgateway.conf.KEYS`;
the checks of contents (origins, the group prefix, the sizes of frames: E012, W006), of
security (W002 to W005 and W012, tagged ``security``) are written out below; those of the site's wiring (its
ASGI application: E014, E015; its ``runserver``: W008) are in :mod:`wsgateway.wiring`; those of Django's
messages on the socket (E019, W013) in :mod:`wsgateway.messages`.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning
from django.core.checks import register as register_check
from django.utils.module_loading import import_string

from .bounds import DAPHNE_MAX_SEND
from .conf import IMPORT_STRINGS, KEYS, gateway_settings
from .layers.extensions import CONNECTIONS, PRESENCE, is_process_local, supports
from .messages import check_live_messages
from .notifications.checks import email_fallback_errors, kind_errors
from .shapes import Key, Shape
from .wiring import check_asgi_routing, check_runserver

#: What Channels accepts in a group name (``BaseChannelLayer.group_name_regex``, whose ``\d``
#: would also take non-ASCII digits that its own error message rules out).
_GROUP_NAME_CHARACTER = re.compile(r"[A-Za-z0-9._-]")


def _raw_setting() -> dict[Any, Any] | None:
    """``settings.WSGATEWAY`` as the site wrote it ({} when unset), without the defaults; None if it
    is not a dict (E001). The checks of contents read what the site wrote, not the defaults."""
    value = getattr(settings, "WSGATEWAY", {})
    return value if isinstance(value, dict) else None


def _written(name: str) -> Any:
    """The value the site wrote for ``name``, or None (unset, or no dict at all)."""
    return (_raw_setting() or {}).get(name)


def _integer_fits(key: Key, item: Any) -> bool:
    """Whether ``item`` is a positive integer within the key's bounds (E003 otherwise)."""
    return (
        key.shape.accepts(item)
        and (key.most is None or item <= key.most)
        and (key.least is None or item >= key.least)
    )


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    value = _raw_setting()
    if value is None:
        return [
            Error(
                "WSGATEWAY must be a dict.", hint="See the settings table in the README.", id="wsgateway.E001"
            )
        ]
    errors: list[CheckMessage] = []
    for name in sorted(set(value) - set(KEYS), key=repr):  # repr: a key need not be a string
        errors.append(
            Error(
                f"WSGATEWAY has an unknown key {name!r}.",
                hint=f"Known keys: {', '.join(sorted(KEYS))}.",
                id="wsgateway.E002",
            )
        )
    malformed: set[str] = set()
    for name, key in KEYS.items():
        if name not in value:
            continue
        item = value[name]
        errors += _check_against_table(name, key, item)
        if not (key.shape.accepts(item) or (item is None and key.nullable)):
            malformed.add(name)  # no import or content check on it, which could only crash or mislead
        elif name == "GROUP_PREFIX" and isinstance(item, str):
            errors += _check_group_prefix(item)
        elif name == "NOTIFICATION_KINDS":
            errors += kind_errors(item)
    return errors + _check_imports(malformed)


def _check_against_table(name: str, key: Key, item: Any) -> list[CheckMessage]:
    """The value's shape, ``None`` and bound, as :data:`~wsgateway.conf.KEYS` declares them."""
    if item is None and key.nullable:
        return []
    hint = f"{key.doc} The default is {key.default!r}."
    if key.shape is Shape.POSITIVE_INTEGER:
        if _integer_fits(key, item):
            return []
        bounds = [f"at least {key.least}"] if key.least is not None else []
        bounds += [f"at most {key.most}"] if key.most is not None else []
        of = f" of {' and '.join(bounds)}" if bounds else ""
        return [
            Error(
                f"WSGATEWAY[{name!r}] must be a positive integer{of}, not {item!r}.",
                hint=hint,
                id="wsgateway.E003",
            )
        ]
    if not key.shape.accepts(item):
        # Also what stops a class given where a dotted path belongs from crashing the import check.
        return [
            Error(
                f"WSGATEWAY[{name!r}] must be {key.shape.value}{' or None' if key.nullable else ''}, "
                f"not {item!r}.",
                hint=hint,
                id="wsgateway.E007",
            )
        ]
    if key.most is not None and isinstance(item, str) and len(item) > key.most:
        return [
            Error(
                f"WSGATEWAY[{name!r}] is {len(item)} characters long, more than {key.most}.",
                hint=hint,
                id="wsgateway.E011",
            )
        ]
    return []


def _check_group_prefix(prefix: str) -> list[CheckMessage]:
    """A character Channels refuses in group names would make every socket fail to join its group."""
    refused = sorted({char for char in prefix if not _GROUP_NAME_CHARACTER.fullmatch(char)})
    if not refused:
        return []
    suggestion = "".join(char if _GROUP_NAME_CHARACTER.fullmatch(char) else "_" for char in prefix)
    return [
        Error(
            f"WSGATEWAY['GROUP_PREFIX'] is {prefix!r}, with {', '.join(map(repr, refused))}: Channels "
            "refuses such group names, so no socket could join its user's group.",
            hint=f"Use only ASCII letters, digits, hyphens, underscores and periods, like {suggestion!r}.",
            id="wsgateway.E010",
        )
    ]


#: What to install for the parts of wsgateway that need an optional package (an extra), when it is missing.
EXTRA_HINTS = {
    "wsgateway.authenticators.simplejwt.SimpleJWTAuthenticator": "Install djangorestframework-simplejwt: "
    "pip install 'wsgateway[simplejwt]'.",
}


def _check_imports(malformed: set[str]) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    named: list[tuple[str, str]] = []
    for name in IMPORT_STRINGS:
        item = gateway_settings.get(name)
        if name in malformed or item is None:
            continue
        named += [(name, path) for path in ([item] if isinstance(item, str) else item)]
    channels: dict[str, str] = {}
    for key, path in named:
        try:
            imported = import_string(path)
        except Exception as exc:  # not only ImportError: ".services.X" raises TypeError; report, never crash
            errors.append(
                Error(
                    f"WSGATEWAY[{key!r}] names {path!r}, which cannot be imported: {exc}",
                    hint=EXTRA_HINTS.get(path, "Use a dotted path to a class or function."),
                    id="wsgateway.E004",
                )
            )
            continue
        if key == "SERVICES":
            channel = getattr(imported, "channel", None)
            if not isinstance(channel, str) or channel == "gateway" or channel in channels:
                errors.append(
                    Error(
                        f"Service {path!r} needs a unique channel name other than 'gateway' "
                        f"(got {channel!r}).",
                        hint="Set the class attribute `channel`.",
                        id="wsgateway.E005",
                    )
                )
            else:
                channels[channel] = path
    return errors


def check_allowed_origins(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Each entry of ``ALLOWED_ORIGINS`` is an origin as a browser sends it, or ``"*"``.

    A wrong entry fails quietly at connect time: one without a scheme matches no
    browser, and one with a path allows the whole site, since origins have no path.
    """
    origins = _written("ALLOWED_ORIGINS")
    if origins is None or not KEYS["ALLOWED_ORIGINS"].shape.accepts(origins):
        return []  # the default, or E001 or E007 from check_settings
    errors: list[CheckMessage] = []
    for origin in origins:
        if origin != "*":
            errors += _check_origin(origin)
    return errors


def _check_origin(origin: str) -> list[CheckMessage]:
    try:
        parts = urlsplit(origin.strip())
        port = parts.port  # ValueError for a port out of range or not a number
    except ValueError:
        parts, port = None, None
    if parts is None or not parts.scheme or not parts.hostname:
        return [
            Error(
                f"WSGATEWAY['ALLOWED_ORIGINS'] has {origin!r}, which is not an origin "
                "(scheme://host[:port]): it matches no browser.",
                hint="Write the scheme and the host, and the port if it is not the scheme's default, "
                "as a browser sends them: 'https://example.com', 'http://localhost:8000'; "
                "'*' allows every origin.",
                id="wsgateway.E008",
            )
        ]
    extra = [part for part in ("query", "fragment") if getattr(parts, part)]
    if parts.path not in ("", "/"):  # a trailing "/" is harmless: it is dropped when origins are compared
        extra.insert(0, "path")
    if not extra:
        return []
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    site = f"{parts.scheme}://{host}" + ("" if port is None else f":{port}")
    return [
        Error(
            f"WSGATEWAY['ALLOWED_ORIGINS'] has {origin!r}, with a {' and a '.join(extra)}: an origin has "
            f"none, so this entry allows every page of {site!r}.",
            hint=f"Browsers send only the scheme, host and port: write {site!r}.",
            id="wsgateway.E009",
        )
    ]


def _layer_config() -> dict[str, Any] | None:
    """The ``CHANNEL_LAYERS`` entry of wsgateway's layer, if there is one with a ``BACKEND`` (E006)."""
    layers = getattr(settings, "CHANNEL_LAYERS", None)
    config = layers.get(gateway_settings.CHANNEL_LAYER) if isinstance(layers, dict) else None
    return config if isinstance(config, dict) and config.get("BACKEND") else None


def _backend_class(config: dict[str, Any]) -> type | None:
    """The layer's class, or None when its ``BACKEND`` does not import as one (Channels reports that)."""
    try:
        cls = import_string(config["BACKEND"])
    except Exception:  # ImportError, or TypeError for ".relative.Path" and a BACKEND that is no string
        return None
    return cls if isinstance(cls, type) else None


def check_channel_layer(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    alias = gateway_settings.CHANNEL_LAYER
    config = _layer_config()
    if config is None:
        return [
            Error(
                f"No channel layer {alias!r} in CHANNEL_LAYERS: wsgateway cannot push to sockets.",
                hint='Add CHANNEL_LAYERS = {"default": {"BACKEND": '
                '"wsgateway.layers.redis.RedisChannelLayer", "CONFIG": {"hosts": ["redis://..."]}}}, '
                "or wsgateway.layers.InProcessChannelLayer for one process.",
                id="wsgateway.E006",
            )
        ]
    cls = _backend_class(config)
    if cls is not None and is_process_local(cls) and not settings.DEBUG:
        return [
            Warning(
                "The in-process channel layer is configured while DEBUG is off.",
                hint="Notifications sent from other processes (workers, manage.py, other daphnes) will be "
                "stored but only seen on the next connect. Use wsgateway.layers.redis.RedisChannelLayer "
                "in production.",
                id="wsgateway.W001",
            )
        ]
    return []


#: Longest ``TOKEN_MAX_AGE`` that passes without a warning: a day.
MAX_ADVISED_TOKEN_AGE = 24 * 60 * 60


def _imported_classes(name: str) -> list[tuple[str, type]]:
    """The classes of a list of dotted paths (``AUTHENTICATORS``, ``SERVICES``) that import, in order,
    with their paths; the others are E004's or E007's from check_settings."""
    paths = gateway_settings.get(name)
    if not KEYS[name].shape.accepts(paths):
        return []  # E007 from check_settings
    classes = []
    for path in paths:
        try:
            cls = import_string(path)
        except Exception:  # E004 from check_settings
            continue
        if isinstance(cls, type):
            classes.append((path, cls))
    return classes


def _sessions_authenticate() -> bool:
    """Whether ``SessionAuthenticator`` (or a subclass) is in ``AUTHENTICATORS``: the browser's cookie
    then authenticates any page's socket that the origin check lets through."""
    from .auth import SessionAuthenticator  # not at import time: auth reads the app registry

    return any(issubclass(cls, SessionAuthenticator) for _, cls in _imported_classes("AUTHENTICATORS"))


#: Authenticators of tokens that ``BearerTokenAuthenticator`` cannot read, and refuses: they go before it.
TOKENS_THE_BEARER_REFUSES = ["wsgateway.authenticators.simplejwt.SimpleJWTAuthenticator"]


def check_authenticator_order(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """A JWT that ``BearerTokenAuthenticator`` sees first is refused as ``token_invalid``."""
    from .auth import BearerTokenAuthenticator  # not at import time: auth reads the app registry

    bearer: str | None = None
    warnings: list[CheckMessage] = []
    for path, cls in _imported_classes("AUTHENTICATORS"):
        if bearer is None and issubclass(cls, BearerTokenAuthenticator):
            bearer = path
        elif bearer is not None and any(
            f"{base.__module__}.{base.__qualname__}" in TOKENS_THE_BEARER_REFUSES for base in cls.__mro__
        ):
            warnings.append(
                Warning(
                    f"WSGATEWAY['AUTHENTICATORS'] lists {path!r} after {bearer!r}, which refuses the "
                    "tokens it reads (token_invalid) before they reach it: no socket connects with one.",
                    hint=f"List {path!r} before {bearer!r}; it passes a token that is not its own.",
                    id="wsgateway.W007",
                )
            )
    return warnings


def check_origin_policy(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """A setting that lets a page of any site open a socket with the user's session cookie."""
    origins = _written("ALLOWED_ORIGINS")
    if origins is not None and not KEYS["ALLOWED_ORIGINS"].shape.accepts(origins):
        return []  # E007 from check_settings
    if not _sessions_authenticate():
        return []
    if origins is not None:
        if "*" not in origins:
            return []
        return [
            Warning(
                "WSGATEWAY['ALLOWED_ORIGINS'] has '*' while SessionAuthenticator authenticates sockets: "
                "a page of any site may open a socket with the user's session cookie, read what is "
                "pushed to it and act as the user.",
                hint="List the origins of your pages instead, like ['https://app.example.com'], or "
                "authenticate cross-site clients by bearer token only.",
                id="wsgateway.W002",
            )
        ]
    if "*" not in settings.ALLOWED_HOSTS:
        return []
    return [
        Warning(
            "ALLOWED_HOSTS has '*' while SessionAuthenticator authenticates sockets: the default origin "
            "rule (the page on the socket's host and port) then trusts any host name that reaches this "
            "server, such as another subdomain that gets the session cookie, or a DNS rebinding page.",
            hint="List your hosts in ALLOWED_HOSTS, or set WSGATEWAY['ALLOWED_ORIGINS'] to the origins "
            "of your pages.",
            id="wsgateway.W003",
        )
    ]


def check_token_max_age(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """A bearer token lives until it expires: nothing but a password change revokes it."""
    age = _written("TOKEN_MAX_AGE")
    if not KEYS["TOKEN_MAX_AGE"].shape.accepts(age) or age <= MAX_ADVISED_TOKEN_AGE:
        return []  # the default, a day or less, or E003 from check_settings
    return [
        Warning(
            f"WSGATEWAY['TOKEN_MAX_AGE'] is {age} seconds, more than a day ({MAX_ADVISED_TOKEN_AGE}): "
            "a token that leaks opens sockets as its user for that long, and only a password change "
            "revokes it.",
            hint="Issue short-lived tokens (the default is an hour) and fetch a fresh one from the "
            "token view before reconnecting.",
            id="wsgateway.W004",
        )
    ]


#: Shortest METRICS_TOKEN not warned about: 32 characters, what ``secrets.token_urlsafe(24)`` gives.
MIN_ADVISED_METRICS_TOKEN = 32


def check_metrics_token(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """A scrape token is a password that opens the site's traffic figures: a short one can be guessed."""
    token = _written("METRICS_TOKEN")
    if not isinstance(token, str) or not token or len(token) >= MIN_ADVISED_METRICS_TOKEN:
        return []  # None (staff only), long enough, or E00x from check_settings
    return [
        Warning(
            f"WSGATEWAY['METRICS_TOKEN'] is {len(token)} characters long: a short token can be guessed, "
            "and it opens the metrics (who is connected how much, refusals) to whoever guesses it.",
            hint=f"Use at least {MIN_ADVISED_METRICS_TOKEN} random characters: "
            'python -c "import secrets; print(secrets.token_urlsafe(24))".',
            id="wsgateway.W012",
        )
    ]


def _shared_layer_without(extension: str) -> str | None:
    """The ``BACKEND`` of wsgateway's layer when it reaches other processes but lacks ``extension``.

    What W005 and W014 warn of: such a layer keeps that extension's state per server process. None when
    there is no layer (E006), its class does not import (Channels reports it), it is process-local (one
    process sees everything) or it has the extension.
    """
    config = _layer_config()
    if config is None:
        return None
    cls = _backend_class(config)
    if cls is None or is_process_local(cls) or supports(cls, extension):
        return None
    return str(config["BACKEND"])


def check_connection_cap(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """A layer that reaches other processes but cannot count their sockets: the cap is then per process."""
    backend = _shared_layer_without(CONNECTIONS)
    if backend is None:
        return []
    limit = gateway_settings.get("MAX_CONNECTIONS_PER_USER")
    return [
        Warning(
            f"The channel layer {backend!r} cannot count a user's sockets across processes: "
            f"MAX_CONNECTIONS_PER_USER ({limit!r}) is then enforced per server process, so a user may "
            "open that many on each.",
            hint='Use wsgateway.layers.redis.RedisChannelLayer (its "connections" extension counts on all '
            "processes), or set MAX_CONNECTIONS_PER_USER to the per-process share you want.",
            id="wsgateway.W005",
        )
    ]


def check_presence_layer(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """The presence channel served on a layer that reaches other processes but keeps presence per process."""
    from .services.presence import PresenceService  # not at import time: it reads the app registry

    backend = _shared_layer_without(PRESENCE)
    if backend is None:
        return []
    if not any(issubclass(served, PresenceService) for _, served in _imported_classes("SERVICES")):
        return []
    return [
        Warning(
            f"The channel layer {backend!r} keeps presence per server process: a watcher of the "
            "presence channel sees a user offline when their socket on one process closes while another "
            "of theirs stays open on another process.",
            hint='Use wsgateway.layers.redis.RedisChannelLayer (its "presence" extension), or one process.',
            id="wsgateway.W014",
        )
    ]


def _integer_setting(name: str) -> int | None:
    """The key's value if it is a valid positive integer (the default if unset); else None (E003)."""
    item = gateway_settings.get(name)
    return int(item) if _integer_fits(KEYS[name], item) else None


def _serves_clipboard() -> bool:
    """Whether ``SERVICES`` has the clipboard service (or a subclass), whose quotas then matter."""
    from .services.clipboard import ClipboardService  # not at import time: it reads the app registry

    return any(issubclass(cls, ClipboardService) for _, cls in _imported_classes("SERVICES"))


def check_send_size(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Every frame the server sends fits in ``MAX_SEND_SIZE``, and that in what daphne sends."""
    if _raw_setting() is None:
        return []  # E001
    limit = _integer_setting("MAX_SEND_SIZE")
    sizes = [_integer_setting(name) for name in ("CLIPBOARD_MAX_ENTRIES", "CLIPBOARD_MAX_BYTES")]
    if limit is None:
        return []
    errors: list[CheckMessage] = []
    if limit > DAPHNE_MAX_SEND:
        errors.append(
            Warning(
                f"WSGATEWAY['MAX_SEND_SIZE'] is {limit} bytes, over the {DAPHNE_MAX_SEND} that daphne "
                "sends by default: a frame over daphne's limit closes its socket with 1011.",
                hint="Run daphne with --websocket-max-message-size of at least MAX_SEND_SIZE (it also "
                "raises what clients may send daphne) and silence wsgateway.W006, or lower MAX_SEND_SIZE.",
                id="wsgateway.W006",
            )
        )
    window = _integer_setting("OUTBOUND_WINDOW")
    if window is not None and window < 2 * limit:
        errors.append(
            Error(
                f"WSGATEWAY['OUTBOUND_WINDOW'] ({window}) is under twice MAX_SEND_SIZE ({limit}): a "
                "frame of MAX_SEND_SIZE would often find too little of the window free, and wait for its "
                "client to acknowledge all that came before it (a round trip for each large frame); "
                "under MAX_SEND_SIZE it would never fit, and its socket would be closed with 4408.",
                hint="Raise OUTBOUND_WINDOW to at least twice MAX_SEND_SIZE, or lower MAX_SEND_SIZE.",
                id="wsgateway.E013",
            )
        )
    entries, total = sizes
    if entries is not None and total is not None and _serves_clipboard():
        from .services.clipboard import snapshot_bound

        if (bound := snapshot_bound(entries, total)) > limit:
            errors.append(
                Error(
                    f"A clipboard at its quotas (CLIPBOARD_MAX_ENTRIES {entries}, CLIPBOARD_MAX_BYTES "
                    f"{total}) is a connect frame of up to {bound} bytes, over WSGATEWAY['MAX_SEND_SIZE'] "
                    f"({limit}): its user's sockets could not be sent their clipboard.",
                    hint="Lower CLIPBOARD_MAX_BYTES or CLIPBOARD_MAX_ENTRIES, or raise MAX_SEND_SIZE.",
                    id="wsgateway.E012",
                )
            )
    return errors


def check_email_fallback(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E017, E018, W009, W010, W011: what the e-mails of unread notifications need (notifications.checks)."""
    if _raw_setting() is None:  # E001
        return []
    config = _layer_config()  # None: E006
    layer = _backend_class(config) if config is not None else None
    return email_fallback_errors(config["BACKEND"] if config else None, layer)


def register() -> None:
    register_check(check_settings, "wsgateway")
    register_check(check_allowed_origins, "wsgateway", Tags.security)
    register_check(check_origin_policy, "wsgateway", Tags.security)
    register_check(check_token_max_age, "wsgateway", Tags.security)
    register_check(check_metrics_token, "wsgateway", Tags.security)
    register_check(check_channel_layer, "wsgateway")
    register_check(check_connection_cap, "wsgateway", Tags.security)
    register_check(check_presence_layer, "wsgateway")
    register_check(check_send_size, "wsgateway")
    register_check(check_authenticator_order, "wsgateway")
    register_check(check_asgi_routing, "wsgateway")
    register_check(check_runserver, "wsgateway")
    register_check(check_email_fallback, "wsgateway")
    register_check(check_live_messages, "wsgateway")
