"""The ``WSGATEWAY`` setting: its defaults, and one typed accessor per key.

Nothing is cached except imported classes, and that cache is dropped on
``setting_changed``, so ``override_settings`` works in tests.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

#: Most notifications one "list" page may hold, whatever the client asks for.
MAX_PAGE_SIZE = 100

DEFAULTS: dict[str, Any] = {
    # Service classes, one per channel; the gateway endpoint serves all of them.
    "SERVICES": [
        "wsgateway.services.notifier.NotifierService",
        "wsgateway.services.clipboard.ClipboardService",
    ],
    # Tried in order; the first that recognises credentials decides. The token
    # comes first so that an explicit token wins over an ambient session.
    "AUTHENTICATORS": [
        "wsgateway.auth.BearerTokenAuthenticator",
        "wsgateway.auth.SessionAuthenticator",
    ],
    # Browser origins allowed to open a socket, e.g. ["https://example.com"].
    # None: the hosts of ALLOWED_HOSTS, on any scheme and port.
    "ALLOWED_ORIGINS": None,
    # Largest client frame in bytes; a bigger one closes the socket with 1009.
    "MAX_MESSAGE_SIZE": 64 * 1024,
    # Lifetime of bearer tokens issued by wsgateway.auth.issue_token, seconds.
    "TOKEN_MAX_AGE": 60 * 60,
    # Cookie read by BearerTokenAuthenticator when there is no Authorization header.
    "TOKEN_COOKIE_NAME": "wsgateway_token",
    # Alias in CHANNEL_LAYERS used for per-user groups.
    "CHANNEL_LAYER": "default",
    # Prefix of the channel-layer group names, to share a Redis with other apps.
    "GROUP_PREFIX": "wsgateway",
    # Most clipboard entries one user may hold.
    "CLIPBOARD_MAX_ENTRIES": 500,
    # Callable (user, obj) -> bool deciding which objects a user may put on the clipboard.
    "CLIPBOARD_PERMISSION": "wsgateway.services.clipboard.user_can_view",
    # Default page size of the notifications "list" action (the client may ask up to 100).
    "NOTIFICATIONS_PAGE_SIZE": 20,
}


class GatewaySettings:
    """Read-through view of ``settings.WSGATEWAY`` merged over :data:`DEFAULTS`."""

    @property
    def user_settings(self) -> dict[str, Any]:
        value = getattr(settings, "WSGATEWAY", {})
        return value if isinstance(value, dict) else {}

    def get(self, key: str) -> Any:
        return self.user_settings.get(key, DEFAULTS[key])

    @property
    def SERVICES(self) -> list[str]:
        return list(self.get("SERVICES"))

    @property
    def AUTHENTICATORS(self) -> list[str]:
        return list(self.get("AUTHENTICATORS"))

    @property
    def ALLOWED_ORIGINS(self) -> list[str] | None:
        value = self.get("ALLOWED_ORIGINS")
        return None if value is None else list(value)

    @property
    def MAX_MESSAGE_SIZE(self) -> int:
        return int(self.get("MAX_MESSAGE_SIZE"))

    @property
    def TOKEN_MAX_AGE(self) -> int:
        return int(self.get("TOKEN_MAX_AGE"))

    @property
    def TOKEN_COOKIE_NAME(self) -> str | None:
        value = self.get("TOKEN_COOKIE_NAME")
        return str(value) if value else None

    @property
    def CHANNEL_LAYER(self) -> str:
        return str(self.get("CHANNEL_LAYER"))

    @property
    def GROUP_PREFIX(self) -> str:
        return str(self.get("GROUP_PREFIX"))

    @property
    def CLIPBOARD_MAX_ENTRIES(self) -> int:
        return int(self.get("CLIPBOARD_MAX_ENTRIES"))

    @property
    def CLIPBOARD_PERMISSION(self) -> str:
        return str(self.get("CLIPBOARD_PERMISSION"))

    @property
    def NOTIFICATIONS_PAGE_SIZE(self) -> int:
        return int(self.get("NOTIFICATIONS_PAGE_SIZE"))


gateway_settings = GatewaySettings()


@cache
def import_from_setting(dotted_path: str) -> Any:
    """Import a dotted path named in ``WSGATEWAY``; cached until settings change."""
    return import_string(dotted_path)


def reset_caches(*, setting: str, **kwargs: Any) -> None:
    """Receiver of ``setting_changed``, connected in ``AppConfig.ready``."""
    if setting in {"WSGATEWAY", "CHANNEL_LAYERS", "ALLOWED_HOSTS"}:
        import_from_setting.cache_clear()
