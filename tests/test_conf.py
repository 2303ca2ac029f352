"""``WSGATEWAY`` through ``gateway_settings``: the defaults, and overrides that take effect at once."""

from __future__ import annotations

from typing import Any

import pytest
from channels.layers import BaseChannelLayer
from django.conf import settings
from django.test import override_settings

from tests.support.communicators import connected, create_user, frame
from tests.support.extensions import ApiKeyAuthenticator, EchoService, nobody_may_view
from wsgateway.auth import BearerTokenAuthenticator, SessionAuthenticator, authenticator_classes
from wsgateway.bounds import MAX_GROUP_PREFIX_LENGTH
from wsgateway.conf import (
    DEFAULTS,
    IMPORT_STRINGS,
    KEYS,
    GatewaySettings,
    Setting,
    Shape,
    gateway_settings,
    import_from_setting,
)
from wsgateway.consumers import GatewayConsumer
from wsgateway.groups import user_group
from wsgateway.services.base import service_classes
from wsgateway.services.clipboard import ClipboardService, clipboard_permission, user_can_view
from wsgateway.services.notifier import NotifierService

EXPECTED_DEFAULTS = {
    "SERVICES": [
        "wsgateway.services.notifier.NotifierService",
        "wsgateway.services.clipboard.ClipboardService",
    ],
    "AUTHENTICATORS": ["wsgateway.auth.BearerTokenAuthenticator", "wsgateway.auth.SessionAuthenticator"],
    "ALLOWED_ORIGINS": None,
    "MAX_MESSAGE_SIZE": 64 * 1024,
    "TOKEN_MAX_AGE": 3600,
    "REVALIDATE_INTERVAL": 300,
    "TOKEN_COOKIE_NAME": "wsgateway_token",
    "CHANNEL_LAYER": "default",
    "GROUP_PREFIX": "wsgateway",
    "CLIPBOARD_MAX_ENTRIES": 500,
    "CLIPBOARD_PERMISSION": "wsgateway.services.clipboard.user_can_view",
    "NOTIFICATIONS_PAGE_SIZE": 20,
    "NOTIFICATIONS_BADGE": "unread",
    "NOTIFICATIONS_SNOOZE_CHECK_INTERVAL": 10,
    "NOTIFICATIONS_KEEP_READ": 180,
    "NOTIFICATIONS_KEEP_ARCHIVED": 180,
    "NOTIFICATIONS_KEEP_DELETED": 30,
    "NOTIFICATION_KINDS": {},
    "NOTIFICATIONS_PRUNE_BATCH": 250,
    "RATE_LIMIT": 20,
    "RATE_BURST": 40,
    "USER_RATE_LIMIT": 50,
    "USER_RATE_BURST": 100,
    "RATE_LIMIT_CLOSE_AFTER": 50,
    "RATE_LIMIT_COOLDOWN": 15,
    "PRESENCE_GRACE": 30,
    "PRESENCE_VISIBLE": "wsgateway.services.presence.staff_see_all",
    "OUTBOUND_WINDOW": 1024 * 1024,
    "ACK_TIMEOUT": 10,
    "MAX_CONNECTIONS_PER_USER": 20,
    "MAX_SEND_SIZE": 512 * 1024,
    "CLIPBOARD_MAX_ENTRY_BYTES": 64 * 1024,
    "CLIPBOARD_MAX_BYTES": 256 * 1024,
    "MAX_PENDING_REQUESTS": 32,
    "MAX_REQUEST_TIMEOUT": 300,
    "LAYER_CONNECT_TIMEOUT": 2,
    "RESYNC_RATE": 200,
    "MAX_PENDING_REPAIRS": 10_000,
    "MAINTENANCE_CHECK_INTERVAL": 2,
    "MAINTENANCE_RETRY_AFTER": 30,
    "EMAIL_TASK_BACKEND": "default",
    "EMAIL_SITE_URL": "",
    "METRICS_TOKEN": None,
    "GC_FREEZE": True,
    "GC_FREEZE_EVERY": 30,
}


def current() -> dict[str, Any]:
    return {key: getattr(gateway_settings, key) for key in DEFAULTS}


def test_defaults_are_the_documented_ones() -> None:
    assert DEFAULTS == EXPECTED_DEFAULTS


def test_every_default_has_a_typed_accessor() -> None:
    keys = {name for name, value in vars(GatewaySettings).items() if isinstance(value, Setting)}
    assert keys == set(DEFAULTS)
    accessors = {name for name, value in vars(GatewaySettings).items() if isinstance(value, property)}
    assert {name for name in accessors if not name.isupper()} == {"user_settings"}


# -- the table --------------------------------------------------------------------------


def test_defaults_and_import_strings_are_read_off_the_table() -> None:
    assert DEFAULTS == {name: key.default for name, key in KEYS.items()}
    assert IMPORT_STRINGS == ("SERVICES", "AUTHENTICATORS", "CLIPBOARD_PERMISSION", "PRESENCE_VISIBLE")
    assert all(KEYS[name].shape in (Shape.DOTTED_PATH, Shape.LIST_OF_DOTTED_PATHS) for name in IMPORT_STRINGS)


@pytest.mark.parametrize("name", list(KEYS))
def test_every_default_fits_its_own_row(name: str) -> None:
    key = KEYS[name]
    assert key.doc.strip()
    if key.default is None:
        assert key.nullable
        return
    assert key.shape.accepts(key.default)
    if key.most is not None:
        measure = len(key.default) if isinstance(key.default, str) else key.default
        assert measure <= key.most
    if key.least is not None:
        assert key.default >= key.least


def test_the_table_declares_the_documented_nulls_and_bounds() -> None:
    assert {name for name, key in KEYS.items() if key.nullable} == {
        "ALLOWED_ORIGINS",
        "TOKEN_COOKIE_NAME",
        "NOTIFICATIONS_KEEP_READ",
        "NOTIFICATIONS_KEEP_ARCHIVED",
        "METRICS_TOKEN",
        "GC_FREEZE_EVERY",
    }
    assert {name: key.most for name, key in KEYS.items() if key.most is not None} == {
        "GROUP_PREFIX": 73,
        "NOTIFICATIONS_PAGE_SIZE": 100,
        "NOTIFICATIONS_SNOOZE_CHECK_INTERVAL": 300,
        "NOTIFICATIONS_KEEP_READ": 10_000,
        "NOTIFICATIONS_KEEP_ARCHIVED": 10_000,
        "NOTIFICATIONS_KEEP_DELETED": 10_000,
        "NOTIFICATIONS_PRUNE_BATCH": 10_000,
        "RATE_LIMIT": 10_000,
        "RATE_BURST": 10_000,
        "USER_RATE_LIMIT": 10_000,
        "USER_RATE_BURST": 10_000,
        "RATE_LIMIT_CLOSE_AFTER": 10_000,
        "RATE_LIMIT_COOLDOWN": 600,
        "PRESENCE_GRACE": 600,
        "OUTBOUND_WINDOW": 64 * 1024 * 1024,
        "ACK_TIMEOUT": 300,
        "MAX_CONNECTIONS_PER_USER": 1000,
        "MAX_SEND_SIZE": 4 * 1024 * 1024,
        "MAX_PENDING_REQUESTS": 1000,
        "MAX_REQUEST_TIMEOUT": 3600,
        "LAYER_CONNECT_TIMEOUT": 60,
        "RESYNC_RATE": 5000,
        "MAX_PENDING_REPAIRS": 1_000_000,
        "MAINTENANCE_CHECK_INTERVAL": 60,
        "MAINTENANCE_RETRY_AFTER": 3600,
        "EMAIL_TASK_BACKEND": 100,
        "EMAIL_SITE_URL": 200,
        "METRICS_TOKEN": 200,
        "GC_FREEZE_EVERY": 3600,
    }
    assert {name: key.least for name, key in KEYS.items() if key.least is not None} == {
        "OUTBOUND_WINDOW": 64 * 1024,
    }


@pytest.mark.parametrize(
    ("shape", "good", "bad"),
    [
        (Shape.POSITIVE_INTEGER, [1, 2**40], [0, -1, True, 1.0, "1", None]),
        (Shape.STRING, ["", "x"], [None, 1, b"x", ["x"]]),
        (Shape.DOTTED_PATH, ["a.B"], [None, object, ["a.B"]]),
        (Shape.LIST_OF_STRINGS, [[], ["a"], ("a", "b")], ["ab", None, [None], {"a": 1}, [b"a"]]),
        (Shape.LIST_OF_DOTTED_PATHS, [["a.B"], ("a.B",)], ["a.B", [object], {"a.B"}]),
    ],
)
def test_each_shape_accepts_its_values_and_no_others(shape: Shape, good: list[Any], bad: list[Any]) -> None:
    assert [value for value in good if not shape.accepts(value)] == []
    assert [value for value in bad if shape.accepts(value)] == []


def test_the_longest_group_prefix_leaves_room_for_a_64_bit_user_id() -> None:
    layer = BaseChannelLayer()
    for user_id in (-(2**63), 2**64 - 1):
        with override_settings(WSGATEWAY={"GROUP_PREFIX": "p" * MAX_GROUP_PREFIX_LENGTH}):
            assert layer.require_valid_group_name(user_group(user_id))
        with override_settings(WSGATEWAY={"GROUP_PREFIX": "p" * (MAX_GROUP_PREFIX_LENGTH + 1)}):
            with pytest.raises(TypeError):
                layer.require_valid_group_name(user_group(user_id))


@override_settings(WSGATEWAY={})
def test_empty_setting_reads_as_the_defaults() -> None:
    assert current() == EXPECTED_DEFAULTS


def test_missing_setting_reads_as_the_defaults() -> None:
    with override_settings():
        del settings.WSGATEWAY
        assert current() == EXPECTED_DEFAULTS


def test_override_settings_takes_effect_and_is_undone() -> None:
    with override_settings(WSGATEWAY={"MAX_MESSAGE_SIZE": 100, "ALLOWED_ORIGINS": ["https://a.example"]}):
        assert gateway_settings.MAX_MESSAGE_SIZE == 100
        assert gateway_settings.ALLOWED_ORIGINS == ["https://a.example"]
        assert gateway_settings.TOKEN_MAX_AGE == 3600  # the keys not given keep their defaults
    assert gateway_settings.MAX_MESSAGE_SIZE == 64 * 1024
    assert gateway_settings.ALLOWED_ORIGINS is None


def test_nested_overrides_each_take_effect() -> None:
    with override_settings(WSGATEWAY={"GROUP_PREFIX": "outer"}):
        assert user_group(7) == "outer.user.7"
        with override_settings(WSGATEWAY={"GROUP_PREFIX": "inner"}):
            assert user_group(7) == "inner.user.7"
        assert user_group(7) == "outer.user.7"
    assert user_group(7) == "wsgateway.user.7"


def test_empty_token_cookie_name_means_no_cookie() -> None:
    with override_settings(WSGATEWAY={"TOKEN_COOKIE_NAME": ""}):
        assert gateway_settings.TOKEN_COOKIE_NAME is None


def test_lists_read_from_settings_are_copies() -> None:
    services = ["wsgateway.services.notifier.NotifierService"]
    with override_settings(WSGATEWAY={"SERVICES": services}):
        gateway_settings.SERVICES.append("something.Else")
        assert gateway_settings.SERVICES == ["wsgateway.services.notifier.NotifierService"]
    assert services == ["wsgateway.services.notifier.NotifierService"]


def test_import_cache_is_dropped_when_the_setting_changes() -> None:
    assert import_from_setting("wsgateway.services.notifier.NotifierService") is NotifierService
    assert import_from_setting.cache_info().currsize >= 1
    with override_settings(WSGATEWAY={"MAX_MESSAGE_SIZE": 10}):
        assert import_from_setting.cache_info().currsize == 0


# -- the dotted paths, imported ----------------------------------------------------------


def test_resolved_accessors_import_the_defaults() -> None:
    assert service_classes() == [NotifierService, ClipboardService]
    assert authenticator_classes() == [BearerTokenAuthenticator, SessionAuthenticator]
    assert clipboard_permission() is user_can_view


def test_resolved_accessors_follow_override_settings() -> None:
    override = {
        "SERVICES": ["tests.support.extensions.EchoService", "wsgateway.services.notifier.NotifierService"],
        "AUTHENTICATORS": ["tests.support.extensions.ApiKeyAuthenticator"],
        "CLIPBOARD_PERMISSION": "tests.support.extensions.nobody_may_view",
    }
    with override_settings(WSGATEWAY=override):
        assert service_classes() == [EchoService, NotifierService]  # in the setting's order
        assert authenticator_classes() == [ApiKeyAuthenticator]
        assert clipboard_permission() is nobody_may_view
    assert service_classes() == [NotifierService, ClipboardService]
    assert authenticator_classes() == [BearerTokenAuthenticator, SessionAuthenticator]
    assert clipboard_permission() is user_can_view


def test_resolved_accessors_go_through_the_import_cache() -> None:
    import_from_setting.cache_clear()
    assert service_classes() == [NotifierService, ClipboardService]
    assert import_from_setting.cache_info().misses == 2
    assert service_classes() == [NotifierService, ClipboardService]
    assert clipboard_permission() is user_can_view
    assert clipboard_permission() is user_can_view
    info = import_from_setting.cache_info()
    assert (info.hits, info.misses) == (3, 3)


def test_resolved_lists_are_fresh_copies() -> None:
    service_classes().clear()
    authenticator_classes().clear()
    assert service_classes() == [NotifierService, ClipboardService]
    assert authenticator_classes() == [BearerTokenAuthenticator, SessionAuthenticator]


def test_a_path_that_cannot_be_imported_raises_when_resolved() -> None:
    with override_settings(WSGATEWAY={"CLIPBOARD_PERMISSION": "wsgateway.services.clipboard.may_view"}):
        with pytest.raises(ImportError):
            clipboard_permission()


def test_service_classes_follow_the_setting_with_no_stale_cache() -> None:
    assert GatewayConsumer.service_classes() == [NotifierService, ClipboardService]
    with override_settings(WSGATEWAY={"SERVICES": ["wsgateway.services.clipboard.ClipboardService"]}):
        assert GatewayConsumer.service_classes() == [ClipboardService]
    assert GatewayConsumer.service_classes() == [NotifierService, ClipboardService]


@pytest.mark.django_db(transaction=True)
async def test_a_socket_opened_under_an_override_uses_it() -> None:
    ann = await create_user("ann")
    with override_settings(WSGATEWAY={"SERVICES": ["wsgateway.services.clipboard.ClipboardService"]}):
        async with connected(ann) as socket:
            assert socket.connect_frames == [
                frame(
                    "gateway",
                    {
                        "user": {"id": ann.pk, "username": "ann"},
                        "services": ["clipboard"],
                        "window": 1024 * 1024,
                    },
                ),
                frame("clipboard", {"clipboard": []}),
            ]
    async with connected(ann) as socket:
        assert socket.connect_frames[0]["payload"]["services"] == ["notifications", "clipboard"]


@pytest.mark.django_db(transaction=True)
async def test_group_prefix_override_routes_pushes() -> None:
    ann = await create_user("ann")
    with override_settings(WSGATEWAY={"GROUP_PREFIX": "site-a"}):
        async with connected(ann) as asker, connected(ann) as other:
            reply = await asker.request("clipboard", {"action": "clipboard_add", "data": "x"}, 1)
            assert await other.receive() == frame("clipboard", reply["payload"])
