"""System checks: each id is triggered by the mistake it names, and silent on a good configuration."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.checks import Error, Warning, run_checks
from django.test import override_settings

from wsgateway.checks import check_channel_layer, check_settings

IN_MEMORY = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
REDIS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": ["redis://x"]}}}
DEFAULT_SERVICES = [
    "wsgateway.services.notifier.NotifierService",
    "wsgateway.services.clipboard.ClipboardService",
]


def ids(messages: list[Any]) -> list[str]:
    return [message.id for message in messages]


def only(messages: list[Any], check_id: str) -> Any:
    """The one message, which must have ``check_id`` and a hint."""
    assert ids(messages) == [check_id], messages
    (message,) = messages
    assert message.hint, f"{check_id} has no hint"
    return message


# -- a good configuration ---------------------------------------------------------------


@override_settings(WSGATEWAY={}, DEBUG=True)
def test_no_messages_for_the_defaults() -> None:
    assert check_settings() == []
    assert check_channel_layer() == []


@override_settings(
    WSGATEWAY={
        "SERVICES": [*DEFAULT_SERVICES, "tests.support.extensions.EchoService"],
        "AUTHENTICATORS": [
            "tests.support.extensions.ApiKeyAuthenticator",
            "wsgateway.auth.SessionAuthenticator",
        ],
        "ALLOWED_ORIGINS": ["https://example.com"],
        "MAX_MESSAGE_SIZE": 1,
        "TOKEN_MAX_AGE": 60,
        "TOKEN_COOKIE_NAME": None,
        "CHANNEL_LAYER": "default",
        "GROUP_PREFIX": "site",
        "CLIPBOARD_MAX_ENTRIES": 10,
        "CLIPBOARD_PERMISSION": "tests.support.extensions.nobody_may_view",
        "NOTIFICATIONS_PAGE_SIZE": 100,
    },
    CHANNEL_LAYERS=REDIS,
)
def test_no_messages_for_a_full_valid_configuration() -> None:
    assert check_settings() == []
    assert check_channel_layer() == []


# -- E001: not a dict -------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, [], "SERVICES", ("SERVICES",)])
def test_e001_wsgateway_is_not_a_dict(value: Any) -> None:
    with override_settings(WSGATEWAY=value):
        message = only(check_settings(), "wsgateway.E001")
    assert isinstance(message, Error)


def test_e001_is_silent_without_a_wsgateway_setting() -> None:
    from django.conf import settings

    with override_settings():
        del settings.WSGATEWAY
        assert check_settings() == []


# -- E002: unknown key ------------------------------------------------------------------


def test_e002_unknown_key_names_the_key_and_the_known_ones() -> None:
    with override_settings(WSGATEWAY={"MAX_MESSAGE_SIZ": 10, "SERVICES": DEFAULT_SERVICES}):
        message = only(check_settings(), "wsgateway.E002")
    assert "'MAX_MESSAGE_SIZ'" in message.msg
    assert "MAX_MESSAGE_SIZE" in message.hint


def test_e002_once_per_unknown_key() -> None:
    with override_settings(WSGATEWAY={"a": 1, "b": 2}):
        assert ids(check_settings()) == ["wsgateway.E002", "wsgateway.E002"]


def test_e002_is_silent_for_every_known_key() -> None:
    from wsgateway.conf import DEFAULTS

    with override_settings(WSGATEWAY=dict(DEFAULTS)):
        assert check_settings() == []


# -- E003: not a positive integer -------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["MAX_MESSAGE_SIZE", "TOKEN_MAX_AGE", "CLIPBOARD_MAX_ENTRIES", "NOTIFICATIONS_PAGE_SIZE"]
)
@pytest.mark.parametrize("value", [0, -1, "100", 1.5, None, True])
def test_e003_not_a_positive_integer(key: str, value: Any) -> None:
    with override_settings(WSGATEWAY={key: value}):
        message = only(check_settings(), "wsgateway.E003")
    assert key in message.msg


@pytest.mark.parametrize(
    "key", ["MAX_MESSAGE_SIZE", "TOKEN_MAX_AGE", "CLIPBOARD_MAX_ENTRIES", "NOTIFICATIONS_PAGE_SIZE"]
)
def test_e003_is_silent_for_a_positive_integer(key: str) -> None:
    with override_settings(WSGATEWAY={key: 1}):
        assert check_settings() == []


def test_e003_page_size_above_what_list_accepts() -> None:
    with override_settings(WSGATEWAY={"NOTIFICATIONS_PAGE_SIZE": 101}):
        message = only(check_settings(), "wsgateway.E003")
    assert "at most 100" in message.msg


def test_e003_is_silent_for_the_largest_page_size() -> None:
    with override_settings(WSGATEWAY={"NOTIFICATIONS_PAGE_SIZE": 100}):
        assert check_settings() == []


# -- E004: cannot be imported -----------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("SERVICES", ["wsgateway.services.notifier.NoSuchService"]),
        ("SERVICES", ["no_such_module.Service"]),
        ("AUTHENTICATORS", ["wsgateway.auth.TokenAuthenticator"]),
        ("AUTHENTICATORS", ["nodots"]),
        ("CLIPBOARD_PERMISSION", "wsgateway.services.clipboard.may_view"),
    ],
)
def test_e004_dotted_path_that_cannot_be_imported(key: str, value: Any) -> None:
    with override_settings(WSGATEWAY={key: value}):
        message = only(check_settings(), "wsgateway.E004")
    assert key in message.msg


def test_e004_relative_dotted_path() -> None:
    with override_settings(WSGATEWAY={"SERVICES": [".services.Local", *DEFAULT_SERVICES]}):
        message = only(check_settings(), "wsgateway.E004")
    assert "'.services.Local'" in message.msg


def test_e004_once_per_bad_path() -> None:
    with override_settings(WSGATEWAY={"SERVICES": ["a.B", *DEFAULT_SERVICES, "c.D"]}):
        assert ids(check_settings()) == ["wsgateway.E004", "wsgateway.E004"]


def test_e004_is_silent_for_importable_paths() -> None:
    with override_settings(
        WSGATEWAY={
            "SERVICES": DEFAULT_SERVICES,
            "AUTHENTICATORS": ["tests.support.extensions.ApiKeyAuthenticator"],
            "CLIPBOARD_PERMISSION": "wsgateway.services.clipboard.user_can_view",
        }
    ):
        assert check_settings() == []


# -- E005: a service without a unique channel -------------------------------------------


@pytest.mark.parametrize(
    "services",
    [
        [*DEFAULT_SERVICES, "tests.support.extensions.NoChannelService"],
        [*DEFAULT_SERVICES, "tests.support.extensions.GatewayChannelService"],
        [*DEFAULT_SERVICES, "wsgateway.services.notifier.NotifierService"],
        ["wsgateway.services.base.Service"],
    ],
    ids=["no channel", "the gateway's channel", "same channel twice", "the base class"],
)
def test_e005_service_needs_a_unique_channel_other_than_gateway(services: list[str]) -> None:
    with override_settings(WSGATEWAY={"SERVICES": services}):
        only(check_settings(), "wsgateway.E005")


def test_e005_is_silent_for_distinct_channels() -> None:
    with override_settings(
        WSGATEWAY={"SERVICES": [*DEFAULT_SERVICES, "tests.support.extensions.EchoService"]}
    ):
        assert check_settings() == []


# -- E007: a value of the wrong shape --------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("SERVICES", "wsgateway.services.notifier.NotifierService"),
        ("SERVICES", None),
        ("SERVICES", ["wsgateway.services.notifier.NotifierService", 42]),
        ("AUTHENTICATORS", "wsgateway.auth.SessionAuthenticator"),
        ("AUTHENTICATORS", {"wsgateway.auth.SessionAuthenticator": 1}),
        ("ALLOWED_ORIGINS", "https://example.com"),
        ("ALLOWED_ORIGINS", [None]),
        ("CLIPBOARD_PERMISSION", None),
        ("CLIPBOARD_PERMISSION", ["wsgateway.services.clipboard.user_can_view"]),
        ("TOKEN_COOKIE_NAME", 1),
        ("CHANNEL_LAYER", None),
        ("GROUP_PREFIX", 7),
    ],
)
def test_e007_value_of_the_wrong_shape(key: str, value: Any) -> None:
    with override_settings(WSGATEWAY={key: value}):
        message = only(check_settings(), "wsgateway.E007")
    assert key in message.msg and repr(value) in message.msg


def test_e007_class_instead_of_a_dotted_path_is_reported_not_raised() -> None:
    from wsgateway.services.notifier import NotifierService

    with override_settings(WSGATEWAY={"SERVICES": [NotifierService]}):
        only(check_settings(), "wsgateway.E007")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("ALLOWED_ORIGINS", None),
        ("ALLOWED_ORIGINS", ("https://a.example", "https://b.example")),
        ("ALLOWED_ORIGINS", []),
        ("TOKEN_COOKIE_NAME", None),
        ("TOKEN_COOKIE_NAME", "token"),
        ("SERVICES", tuple(DEFAULT_SERVICES)),
        ("SERVICES", []),
        ("GROUP_PREFIX", "site-a"),
    ],
)
def test_e007_is_silent_for_well_shaped_values(key: str, value: Any) -> None:
    with override_settings(WSGATEWAY={key: value}):
        assert check_settings() == []


# -- E006: no channel layer -------------------------------------------------------------


@pytest.mark.parametrize(
    "layers", [{}, None, {"other": IN_MEMORY["default"]}, {"default": {}}, {"default": {"BACKEND": ""}}]
)
def test_e006_no_channel_layer(layers: Any) -> None:
    with override_settings(CHANNEL_LAYERS=layers):
        message = only(check_channel_layer(), "wsgateway.E006")
    assert isinstance(message, Error)


def test_e006_follows_the_channel_layer_setting() -> None:
    with override_settings(WSGATEWAY={"CHANNEL_LAYER": "pushes"}, CHANNEL_LAYERS=REDIS):
        message = only(check_channel_layer(), "wsgateway.E006")
    assert "'pushes'" in message.msg
    with override_settings(
        WSGATEWAY={"CHANNEL_LAYER": "pushes"}, CHANNEL_LAYERS={"pushes": REDIS["default"]}
    ):
        assert check_channel_layer() == []


def test_e006_is_silent_with_a_channel_layer() -> None:
    with override_settings(CHANNEL_LAYERS=REDIS):
        assert check_channel_layer() == []


# -- W001: the in-process layer in production -------------------------------------------


@override_settings(CHANNEL_LAYERS=IN_MEMORY, DEBUG=False)
def test_w001_in_process_layer_while_debug_is_off() -> None:
    message = only(check_channel_layer(), "wsgateway.W001")
    assert isinstance(message, Warning)


@pytest.mark.parametrize(
    "backend",
    [
        "wsgateway.layers.InProcessChannelLayer",
        "wsgateway.layers.inprocess.InProcessChannelLayer",
        "tests.support.extensions.InMemoryLayerSubclass",
    ],
)
def test_w001_any_process_local_layer_while_debug_is_off(backend: str) -> None:
    with override_settings(CHANNEL_LAYERS={"default": {"BACKEND": backend}}, DEBUG=False):
        only(check_channel_layer(), "wsgateway.W001")


@pytest.mark.parametrize(
    "backend",
    [
        "wsgateway.layers.redis.RedisChannelLayer",
        "channels_redis.pubsub.RedisPubSubChannelLayer",
        "no.such.Layer",
        ".relative.Layer",
    ],
)
def test_w001_is_silent_for_a_layer_that_is_not_process_local(backend: str) -> None:
    with override_settings(CHANNEL_LAYERS={"default": {"BACKEND": backend}}, DEBUG=False):
        assert check_channel_layer() == []


@override_settings(CHANNEL_LAYERS=IN_MEMORY, DEBUG=True)
def test_w001_is_silent_in_debug() -> None:
    assert check_channel_layer() == []


@override_settings(CHANNEL_LAYERS=REDIS, DEBUG=False)
def test_w001_is_silent_with_redis() -> None:
    assert check_channel_layer() == []


# -- registration -----------------------------------------------------------------------


@override_settings(WSGATEWAY={"MAX_MESSAGE_SIZE": 0}, CHANNEL_LAYERS={}, DEBUG=True)
def test_checks_are_registered_with_django() -> None:
    assert sorted(ids(run_checks(tags=["wsgateway"]))) == ["wsgateway.E003", "wsgateway.E006"]


@override_settings(CHANNEL_LAYERS=IN_MEMORY, DEBUG=True)
def test_registered_checks_are_silent_on_the_test_settings() -> None:
    assert run_checks(tags=["wsgateway"]) == []
