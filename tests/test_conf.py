"""``WSGATEWAY`` through ``gateway_settings``: the defaults, and overrides that take effect at once."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings

from tests.support.communicators import connected, create_user, frame
from wsgateway.conf import DEFAULTS, GatewaySettings, gateway_settings, import_from_setting
from wsgateway.consumers import GatewayConsumer
from wsgateway.groups import user_group
from wsgateway.services.clipboard import ClipboardService
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
    "TOKEN_COOKIE_NAME": "wsgateway_token",
    "CHANNEL_LAYER": "default",
    "GROUP_PREFIX": "wsgateway",
    "CLIPBOARD_MAX_ENTRIES": 500,
    "CLIPBOARD_PERMISSION": "wsgateway.services.clipboard.user_can_view",
    "NOTIFICATIONS_PAGE_SIZE": 20,
}


def current() -> dict[str, Any]:
    return {key: getattr(gateway_settings, key) for key in DEFAULTS}


def test_defaults_are_the_documented_ones() -> None:
    assert DEFAULTS == EXPECTED_DEFAULTS


def test_every_default_has_a_typed_accessor() -> None:
    accessors = {name for name, value in vars(GatewaySettings).items() if isinstance(value, property)}
    assert accessors - {"user_settings"} == set(DEFAULTS)


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
                frame("gateway", {"user": {"id": ann.pk, "username": "ann"}, "services": ["clipboard"]}),
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
