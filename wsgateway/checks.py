"""System checks: ``wsgateway.E001`` and up for errors, ``wsgateway.W001`` and up for warnings."""

from __future__ import annotations

import sys
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning
from django.core.checks import register as register_check
from django.utils.module_loading import import_string

from .conf import DEFAULTS, MAX_PAGE_SIZE, gateway_settings
from .layers.extensions import is_process_local


def _process_local(backend: str) -> bool:
    try:
        cls = import_string(backend)
    except Exception:  # ImportError, or TypeError for ".relative.Path": Channels reports a bad BACKEND
        return False
    return isinstance(cls, type) and is_process_local(cls)


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    value = getattr(settings, "WSGATEWAY", {})
    if not isinstance(value, dict):
        return [
            Error(
                "WSGATEWAY must be a dict.", hint="See the settings table in the README.", id="wsgateway.E001"
            )
        ]
    errors: list[CheckMessage] = []
    for key in sorted(set(value) - set(DEFAULTS)):
        errors.append(
            Error(
                f"WSGATEWAY has an unknown key {key!r}.",
                hint=f"Known keys: {', '.join(sorted(DEFAULTS))}.",
                id="wsgateway.E002",
            )
        )
    for key, most in _POSITIVE_INTEGERS.items():
        if key in value and (type(value[key]) is not int or not 1 <= value[key] <= most):
            errors.append(
                Error(
                    f"WSGATEWAY[{key!r}] must be a positive integer"
                    + (f" of at most {most}." if most < sys.maxsize else "."),
                    hint=f"The default is {DEFAULTS[key]}.",
                    id="wsgateway.E003",
                )
            )
    malformed = sorted(key for key in _SHAPED_KEYS if key in value and not _well_shaped(key, value[key]))
    for key in malformed:
        shape = "a list of strings" if key in _LISTS_OF_STRINGS else "a string"
        errors.append(
            Error(
                f"WSGATEWAY[{key!r}] must be {shape}{' or None' if key in _MAY_BE_NONE else ''}, "
                f"not {value[key]!r}.",
                hint=f"The default is {DEFAULTS[key]!r}.",
                id="wsgateway.E007",
            )
        )
    return errors + _check_imports(set(malformed))


# Each with its ceiling: a page size over what "list" accepts would fail every request.
_POSITIVE_INTEGERS = {
    "MAX_MESSAGE_SIZE": sys.maxsize,
    "TOKEN_MAX_AGE": sys.maxsize,
    "CLIPBOARD_MAX_ENTRIES": sys.maxsize,
    "NOTIFICATIONS_PAGE_SIZE": MAX_PAGE_SIZE,
}

# A string where a list belongs would be read character by character, and a class
# where a dotted path belongs would crash the import check: say so instead.
_LISTS_OF_STRINGS = ("SERVICES", "AUTHENTICATORS", "ALLOWED_ORIGINS")
_SHAPED_KEYS = (
    *_LISTS_OF_STRINGS,
    "CLIPBOARD_PERMISSION",
    "TOKEN_COOKIE_NAME",
    "CHANNEL_LAYER",
    "GROUP_PREFIX",
)
_MAY_BE_NONE = ("ALLOWED_ORIGINS", "TOKEN_COOKIE_NAME")


def _well_shaped(key: str, item: Any) -> bool:
    if item is None:
        return key in _MAY_BE_NONE
    if key in _LISTS_OF_STRINGS:
        return isinstance(item, (list, tuple)) and all(isinstance(part, str) for part in item)
    return isinstance(item, str)


def _check_imports(malformed: set[str]) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    named: list[tuple[str, str]] = []
    for key in ("SERVICES", "AUTHENTICATORS"):
        if key not in malformed:
            named += [(key, path) for path in getattr(gateway_settings, key)]
    if "CLIPBOARD_PERMISSION" not in malformed:
        named.append(("CLIPBOARD_PERMISSION", gateway_settings.CLIPBOARD_PERMISSION))
    channels: dict[str, str] = {}
    for key, path in named:
        try:
            imported = import_string(path)
        except Exception as exc:  # not only ImportError: ".services.X" raises TypeError; report, never crash
            errors.append(
                Error(
                    f"WSGATEWAY[{key!r}] names {path!r}, which cannot be imported: {exc}",
                    hint="Use a dotted path to a class or function.",
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


def check_channel_layer(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    alias = gateway_settings.CHANNEL_LAYER
    layers = getattr(settings, "CHANNEL_LAYERS", {}) or {}
    config = layers.get(alias)
    if not config or not config.get("BACKEND"):
        return [
            Error(
                f"No channel layer {alias!r} in CHANNEL_LAYERS: wsgateway cannot push to sockets.",
                hint='Add CHANNEL_LAYERS = {"default": {"BACKEND": '
                '"wsgateway.layers.redis.RedisChannelLayer", "CONFIG": {"hosts": ["redis://..."]}}}, '
                "or wsgateway.layers.InProcessChannelLayer for one process.",
                id="wsgateway.E006",
            )
        ]
    if _process_local(config["BACKEND"]) and not settings.DEBUG:
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


def register() -> None:
    register_check(check_settings, "wsgateway")
    register_check(check_channel_layer, "wsgateway")
