"""System checks: each id is triggered by the mistake it names, and silent on a good configuration."""

from __future__ import annotations

from typing import Any

import pytest
from channels.layers import BaseChannelLayer
from django.conf import settings
from django.core.checks import Error, Tags, Warning, run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from wsgateway.bounds import MAX_GROUP_PREFIX_LENGTH
from wsgateway.checks import (
    MAX_ADVISED_TOKEN_AGE,
    MIN_ADVISED_METRICS_TOKEN,
    check_allowed_origins,
    check_authenticator_order,
    check_channel_layer,
    check_connection_cap,
    check_metrics_token,
    check_origin_policy,
    check_presence_layer,
    check_send_size,
    check_settings,
    check_token_max_age,
)
from wsgateway.conf import DEFAULTS, KEYS
from wsgateway.groups import user_group
from wsgateway.origin import origin_allowed
from wsgateway.shapes import Shape
from wsgateway.wiring import check_asgi_routing, check_runserver

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
    assert check_allowed_origins() == []
    assert check_origin_policy() == []
    assert check_token_max_age() == []
    assert check_channel_layer() == []
    assert check_connection_cap() == []
    assert check_send_size() == []


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
        "REVALIDATE_INTERVAL": 30,
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
    assert check_allowed_origins() == []
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


def test_e002_keys_that_are_not_strings_are_reported_not_raised() -> None:
    with override_settings(WSGATEWAY={1: 2, "a": 3, None: 4}):
        assert ids(check_settings()) == ["wsgateway.E002"] * 3


def test_e002_is_silent_for_every_known_key() -> None:
    from wsgateway.conf import DEFAULTS

    with override_settings(WSGATEWAY=dict(DEFAULTS)):
        assert check_settings() == []


# -- E003: not a positive integer -------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "MAX_MESSAGE_SIZE",
        "TOKEN_MAX_AGE",
        "REVALIDATE_INTERVAL",
        "CLIPBOARD_MAX_ENTRIES",
        "NOTIFICATIONS_PAGE_SIZE",
    ],
)
@pytest.mark.parametrize("value", [0, -1, "100", 1.5, None, True])
def test_e003_not_a_positive_integer(key: str, value: Any) -> None:
    with override_settings(WSGATEWAY={key: value}):
        message = only(check_settings(), "wsgateway.E003")
    assert key in message.msg


@pytest.mark.parametrize(
    "key",
    [
        "MAX_MESSAGE_SIZE",
        "TOKEN_MAX_AGE",
        "REVALIDATE_INTERVAL",
        "CLIPBOARD_MAX_ENTRIES",
        "NOTIFICATIONS_PAGE_SIZE",
    ],
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


@pytest.mark.parametrize("window", [64 * 1024 - 1, 64 * 1024 * 1024 + 1])
def test_e003_outbound_window_out_of_its_bounds(window: int) -> None:
    with override_settings(WSGATEWAY={"OUTBOUND_WINDOW": window}):
        message = only(check_settings(), "wsgateway.E003")
    assert "of at least 65536 and at most 67108864" in message.msg


@pytest.mark.parametrize("window", [64 * 1024, 64 * 1024 * 1024])
def test_e003_is_silent_for_an_outbound_window_on_its_bounds(window: int) -> None:
    with override_settings(WSGATEWAY={"OUTBOUND_WINDOW": window}):
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
        ("PRESENCE_VISIBLE", "wsgateway.services.presence.friends"),
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
        ("PRESENCE_VISIBLE", None),
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


# -- generated from the table: every key's shape, None and bound -----------------------


@pytest.mark.parametrize("name", list(KEYS))
def test_every_key_refuses_a_value_of_no_shape_with_the_id_of_its_shape(name: str) -> None:
    with override_settings(WSGATEWAY={name: object()}):
        message = only(
            check_settings(),
            "wsgateway.E003" if KEYS[name].shape is Shape.POSITIVE_INTEGER else "wsgateway.E007",
        )
    assert repr(name) in message.msg
    assert repr(KEYS[name].default) in message.hint


@pytest.mark.parametrize("name", list(KEYS))
def test_none_is_refused_unless_the_table_allows_it(name: str) -> None:
    with override_settings(WSGATEWAY={name: None}):
        messages = check_settings()
    if KEYS[name].nullable:
        assert messages == []
    else:
        assert len(messages) == 1 and repr(name) in messages[0].msg, messages


@pytest.mark.parametrize("name", [name for name, key in KEYS.items() if key.most is not None])
def test_every_bound_in_the_table_is_checked(name: str) -> None:
    key = KEYS[name]
    assert key.most is not None
    at_most, over = (
        ("p" * key.most, "p" * (key.most + 1)) if key.shape is Shape.STRING else (key.most, key.most + 1)
    )
    with override_settings(WSGATEWAY={name: at_most}):
        assert check_settings() == []
    with override_settings(WSGATEWAY={name: over}):
        (message,) = check_settings()
    assert repr(name) in message.msg and str(key.most) in message.msg


# -- E008: an allowed origin with no scheme or no host ----------------------------------

NOT_ORIGINS = [
    "example.com",
    "localhost:8000",
    "//example.com",
    "https://",
    "https://:8000",
    "null",
    "https://example.com:99999",
    "https://example.com:port",
    "http://[::1",
    " * ",
]


@pytest.mark.parametrize("entry", NOT_ORIGINS)
def test_e008_allowed_origin_that_is_not_an_origin(entry: str) -> None:
    with override_settings(WSGATEWAY={"ALLOWED_ORIGINS": ["https://ok.example", entry]}):
        message = only(check_allowed_origins(), "wsgateway.E008")
        assert check_settings() == []  # the shape is right: the contents are wrong
    assert isinstance(message, Error)
    assert repr(entry) in message.msg


def test_e008_once_per_bad_entry() -> None:
    with override_settings(WSGATEWAY={"ALLOWED_ORIGINS": ["example.com", "https://ok.example", "b.example"]}):
        messages = check_allowed_origins()
    assert ids(messages) == ["wsgateway.E008", "wsgateway.E008"]
    assert "'example.com'" in messages[0].msg and "'b.example'" in messages[1].msg


@pytest.mark.parametrize(
    "origins",
    [
        ["*"],
        ["https://example.com"],
        ["http://localhost:8000", "https://example.com:8443"],
        ["HTTPS://Example.COM"],
        ["http://[::1]:8000"],
        ["https://example.com/"],  # the trailing slash is dropped when origins are compared
        ["*", "https://example.com"],
        [],
    ],
)
def test_e008_and_e009_are_silent_for_origins(origins: list[str]) -> None:
    with override_settings(WSGATEWAY={"ALLOWED_ORIGINS": origins}):
        assert check_allowed_origins() == []


@pytest.mark.parametrize(
    "value", [None, "https://example.com", [None], ["https://example.com", 1], "example.com"]
)
def test_e008_leaves_a_missing_or_misshapen_setting_to_other_checks(value: Any) -> None:
    with override_settings(WSGATEWAY={"ALLOWED_ORIGINS": value}):
        assert check_allowed_origins() == []
    with override_settings(WSGATEWAY=["ALLOWED_ORIGINS"]):
        assert check_allowed_origins() == []


def test_e008_entries_are_refused_at_connect_time_and_good_ones_are_not() -> None:
    """What the check is for: an entry it reports matches no browser; one it passes matches its origin."""

    def allowed(entry: str, origin: str) -> bool:
        with override_settings(WSGATEWAY={"ALLOWED_ORIGINS": [entry]}):
            return origin_allowed({"headers": [(b"origin", origin.encode())]})

    assert not allowed("example.com", "https://example.com")
    assert not allowed("example.com", "http://example.com")
    assert not allowed("localhost:8000", "http://localhost:8000")
    assert allowed("https://example.com", "https://example.com")
    assert allowed("https://example.com/", "https://example.com")
    assert allowed("http://localhost:8000", "http://localhost:8000")


# -- E009: an allowed origin with a path, query or fragment -----------------------------


@pytest.mark.parametrize(
    ("entry", "parts", "site"),
    [
        ("https://example.com/app", "with a path", "'https://example.com'"),
        ("https://example.com/app/", "with a path", "'https://example.com'"),
        ("https://example.com?next=1", "with a query", "'https://example.com'"),
        ("https://example.com#top", "with a fragment", "'https://example.com'"),
        ("http://localhost:8000/app?x=1", "with a path and a query", "'http://localhost:8000'"),
        ("https://[::1]:8443/app", "with a path", "'https://[::1]:8443'"),
    ],
)
def test_e009_allowed_origin_with_a_path_query_or_fragment(entry: str, parts: str, site: str) -> None:
    with override_settings(WSGATEWAY={"ALLOWED_ORIGINS": [entry]}):
        message = only(check_allowed_origins(), "wsgateway.E009")
    assert isinstance(message, Error)
    assert repr(entry) in message.msg and parts in message.msg
    assert site in message.hint


def test_e009_is_what_it_says_a_path_allows_the_whole_site() -> None:
    with override_settings(WSGATEWAY={"ALLOWED_ORIGINS": ["https://example.com/app"]}):
        assert "every page of 'https://example.com'" in only(check_allowed_origins(), "wsgateway.E009").msg
        assert origin_allowed({"headers": [(b"origin", b"https://example.com")]})


def test_e008_and_e009_are_security_checks() -> None:
    with override_settings(WSGATEWAY={"ALLOWED_ORIGINS": ["example.com", "https://example.com/app"]}):
        assert ids(run_checks(tags=[Tags.security])) == ["wsgateway.E008", "wsgateway.E009"]


# -- E010: a group prefix with characters Channels refuses ------------------------------

REFUSED_PREFIXES = ["my app", "site:a", "a/b", "café", "tab\t", "line\n", "٣", "dash—"]


@pytest.mark.parametrize("prefix", REFUSED_PREFIXES)
def test_e010_group_prefix_with_characters_channels_refuses(prefix: str) -> None:
    with override_settings(WSGATEWAY={"GROUP_PREFIX": prefix}):
        message = only(check_settings(), "wsgateway.E010")
    assert isinstance(message, Error)
    assert repr(prefix) in message.msg


def test_e010_names_the_characters_and_suggests_a_prefix() -> None:
    with override_settings(WSGATEWAY={"GROUP_PREFIX": "my app:1"}):
        message = only(check_settings(), "wsgateway.E010")
    assert "' ', ':'" in message.msg
    assert "'my_app_1'" in message.hint


ACCEPTED_PREFIXES = ["wsgateway", "site-a", "my_app", "a.b", "Site.2-x_y"]


@pytest.mark.parametrize("prefix", ACCEPTED_PREFIXES)
def test_e010_is_silent_for_a_prefix_channels_accepts(prefix: str) -> None:
    with override_settings(WSGATEWAY={"GROUP_PREFIX": prefix}):
        assert check_settings() == []


@pytest.mark.parametrize("prefix", REFUSED_PREFIXES + ACCEPTED_PREFIXES)
def test_e010_agrees_with_channels(prefix: str) -> None:
    with override_settings(WSGATEWAY={"GROUP_PREFIX": prefix}):
        reported = check_settings() != []
        try:
            BaseChannelLayer().require_valid_group_name(user_group(2**63 - 1))
        except TypeError:
            refused_by_channels = True
        else:
            refused_by_channels = False
    if prefix == "٣":  # an Arabic-Indic digit: Channels' \d takes it, though its own message says ASCII
        assert reported and not refused_by_channels
    else:
        assert reported == refused_by_channels


# -- E011: a string longer than the table allows (GROUP_PREFIX) -------------------------


def test_e011_group_prefix_too_long_for_a_user_id() -> None:
    with override_settings(WSGATEWAY={"GROUP_PREFIX": "p" * (MAX_GROUP_PREFIX_LENGTH + 1)}):
        message = only(check_settings(), "wsgateway.E011")
    assert isinstance(message, Error)
    assert (
        f"is {MAX_GROUP_PREFIX_LENGTH + 1} characters long, more than {MAX_GROUP_PREFIX_LENGTH}"
        in message.msg
    )
    assert "user id" in message.hint


def test_e011_is_silent_for_the_longest_prefix() -> None:
    with override_settings(WSGATEWAY={"GROUP_PREFIX": "p" * MAX_GROUP_PREFIX_LENGTH}):
        assert check_settings() == []


def test_e010_and_e011_together() -> None:
    with override_settings(WSGATEWAY={"GROUP_PREFIX": "my app " * 20}):
        assert ids(check_settings()) == ["wsgateway.E011", "wsgateway.E010"]


# -- W002: any origin, with session cookies -------------------------------------------

SESSION_ONLY = ["wsgateway.auth.SessionAuthenticator"]
TOKEN_ONLY = ["wsgateway.auth.BearerTokenAuthenticator"]


@pytest.mark.parametrize("origins", [["*"], ["https://app.example.com", "*"]])
@pytest.mark.parametrize(
    "authenticators",
    [
        None,
        SESSION_ONLY,
        ["tests.support.extensions.ApiKeyAuthenticator", "tests.support.extensions.MySession"],
    ],
    ids=["the default", "sessions only", "a subclass"],
)
def test_w002_any_origin_while_sessions_authenticate(origins: list[str], authenticators: Any) -> None:
    value: dict[str, Any] = {"ALLOWED_ORIGINS": origins}
    if authenticators is not None:
        value["AUTHENTICATORS"] = authenticators
    with override_settings(WSGATEWAY=value):
        message = only(check_origin_policy(), "wsgateway.W002")
        assert check_settings() == []
    assert isinstance(message, Warning)
    assert "cookie" in message.msg


def test_w002_is_what_it_says_a_foreign_page_gets_in() -> None:
    with override_settings(WSGATEWAY={"ALLOWED_ORIGINS": ["*"]}):
        only(check_origin_policy(), "wsgateway.W002")
        assert origin_allowed({"headers": [(b"origin", b"https://evil.example"), (b"host", b"testserver")]})


@pytest.mark.parametrize(
    "value",
    [
        {"ALLOWED_ORIGINS": ["*"], "AUTHENTICATORS": TOKEN_ONLY},
        {"ALLOWED_ORIGINS": ["https://app.example.com"]},
        {"ALLOWED_ORIGINS": []},
        {"ALLOWED_ORIGINS": "*"},  # E007's business
        {"ALLOWED_ORIGINS": ["*"], "AUTHENTICATORS": ["no.such.SessionAuthenticator"]},  # E004's
    ],
)
def test_w002_is_silent_without_sessions_or_without_a_star(value: dict[str, Any]) -> None:
    with override_settings(WSGATEWAY=value):
        assert check_origin_policy() == []


# -- W003: ALLOWED_HOSTS = ["*"] under the default origin rule, with session cookies ----


@override_settings(ALLOWED_HOSTS=["*"], WSGATEWAY={})
def test_w003_wildcard_allowed_hosts_while_sessions_authenticate() -> None:
    message = only(check_origin_policy(), "wsgateway.W003")
    assert isinstance(message, Warning)
    assert "ALLOWED_HOSTS" in message.msg and "ALLOWED_ORIGINS" in message.hint
    # What it warns of: any host name that reaches the server passes, on its own socket.
    assert origin_allowed({"headers": [(b"origin", b"https://other.example"), (b"host", b"other.example")]})


@pytest.mark.parametrize(
    ("hosts", "value"),
    [
        (["*"], {"AUTHENTICATORS": TOKEN_ONLY}),
        (["*"], {"ALLOWED_ORIGINS": ["https://app.example.com"]}),  # the list decides, not ALLOWED_HOSTS
        ([".example.com", "testserver"], {}),
        ([], {}),
    ],
)
def test_w003_is_silent_without_sessions_a_wildcard_or_the_default_rule(
    hosts: list[str], value: dict[str, Any]
) -> None:
    with override_settings(ALLOWED_HOSTS=hosts, WSGATEWAY=value):
        assert check_origin_policy() == []


@override_settings(ALLOWED_HOSTS=["*"], WSGATEWAY={"ALLOWED_ORIGINS": ["*"]})
def test_w002_and_not_w003_when_both_are_wildcards() -> None:
    only(check_origin_policy(), "wsgateway.W002")


# -- W004: tokens that live more than a day --------------------------------------------


@pytest.mark.parametrize("age", [MAX_ADVISED_TOKEN_AGE + 1, 7 * 24 * 3600, 10**9])
def test_w004_token_lifetime_over_a_day(age: int) -> None:
    with override_settings(WSGATEWAY={"TOKEN_MAX_AGE": age}):
        message = only(check_token_max_age(), "wsgateway.W004")
        assert check_settings() == []
    assert isinstance(message, Warning)
    assert str(age) in message.msg and "more than a day" in message.msg


@pytest.mark.parametrize("value", [{}, {"TOKEN_MAX_AGE": MAX_ADVISED_TOKEN_AGE}, {"TOKEN_MAX_AGE": 60}])
def test_w004_is_silent_for_a_day_or_less(value: dict[str, Any]) -> None:
    with override_settings(WSGATEWAY=value):
        assert check_token_max_age() == []


@pytest.mark.parametrize("age", ["999999", 10.0**9, True, None, 0])
def test_w004_leaves_a_value_of_the_wrong_shape_to_e003(age: Any) -> None:
    with override_settings(WSGATEWAY={"TOKEN_MAX_AGE": age}):
        assert check_token_max_age() == []
        only(check_settings(), "wsgateway.E003")


@override_settings(
    ALLOWED_HOSTS=["*"],
    WSGATEWAY={"TOKEN_MAX_AGE": 2 * MAX_ADVISED_TOKEN_AGE},
    CHANNEL_LAYERS=IN_MEMORY,
    DEBUG=True,
)
def test_w003_and_w004_are_registered_security_checks() -> None:
    assert sorted(ids(run_checks(tags=[Tags.security]))) == ["wsgateway.W003", "wsgateway.W004"]
    with override_settings(WSGATEWAY={"ALLOWED_ORIGINS": ["*"]}):
        assert ids(run_checks(tags=[Tags.security])) == ["wsgateway.W002"]


# -- W012: a short metrics token --------------------------------------------------------


@pytest.mark.parametrize("token", ["q", "hunter2", "a" * (MIN_ADVISED_METRICS_TOKEN - 1)])
def test_w012_a_short_metrics_token(token: str) -> None:
    with override_settings(WSGATEWAY={"METRICS_TOKEN": token}):
        message = only(check_metrics_token(), "wsgateway.W012")
        assert ids(run_checks(tags=[Tags.security])).count("wsgateway.W012") == 1
    assert isinstance(message, Warning)
    assert str(len(token)) in message.msg
    assert token not in message.msg  # the warning names its length, never the token (logs, CI output)


@pytest.mark.parametrize(
    "value",
    [{}, {"METRICS_TOKEN": None}, {"METRICS_TOKEN": "a" * MIN_ADVISED_METRICS_TOKEN}, {"METRICS_TOKEN": 5}],
)
def test_w012_is_silent_for_no_token_a_long_one_or_one_e_checks_report(value: dict[str, Any]) -> None:
    with override_settings(WSGATEWAY=value):
        assert check_metrics_token() == []


# -- E006: no channel layer -------------------------------------------------------------


@pytest.mark.parametrize(
    "layers", [{}, None, {"other": IN_MEMORY["default"]}, {"default": {}}, {"default": {"BACKEND": ""}}]
)
def test_e006_no_channel_layer(layers: Any) -> None:
    with override_settings(CHANNEL_LAYERS=layers):
        message = only(check_channel_layer(), "wsgateway.E006")
    assert isinstance(message, Error)


@pytest.mark.parametrize("layers", [["default"], {"default": "channels.layers.InMemoryChannelLayer"}])
def test_e006_channel_layers_of_the_wrong_shape_are_reported_not_raised(layers: Any) -> None:
    with override_settings(CHANNEL_LAYERS=layers):
        only(check_channel_layer(), "wsgateway.E006")


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


ISSUE_EXAMPLE = {"GROUP_PREFIX": "my app", "ALLOWED_ORIGINS": ["example.com"]}


# The database: since Django 6.1, `check` without --database runs the model checks against every
# alias, and JSONField's asks SQLite whether it supports JSON (a query); 5.2 and 6.0 skip that.
@pytest.mark.django_db
@override_settings(WSGATEWAY=ISSUE_EXAMPLE, CHANNEL_LAYERS=IN_MEMORY, DEBUG=True)
def test_manage_py_check_reports_the_issue_example_with_ids_and_hints() -> None:
    """Every origin refused and every group name invalid at connect time: now caught by ``check``."""
    assert sorted(ids(run_checks(tags=["wsgateway"]))) == ["wsgateway.E008", "wsgateway.E010"]
    with pytest.raises(SystemCheckError) as raised:
        call_command("check")
    report = str(raised.value)
    for check_id, setting in [("wsgateway.E008", "'example.com'"), ("wsgateway.E010", "'my app'")]:
        (line,) = [line for line in report.splitlines() if f"({check_id})" in line]
        assert setting in line
        following = report.splitlines()[report.splitlines().index(line) + 1]
        assert following.strip().startswith("HINT:")


# -- W005: a cap on each user's sockets that only each process can count ------------------


@pytest.mark.parametrize(
    "backend", ["channels_redis.core.RedisChannelLayer", "channels_redis.pubsub.RedisPubSubChannelLayer"]
)
def test_w005_a_layer_that_cannot_count_sockets_across_processes(backend: str) -> None:
    with override_settings(
        CHANNEL_LAYERS={"default": {"BACKEND": backend}}, WSGATEWAY={"MAX_CONNECTIONS_PER_USER": 5}
    ):
        message = only(check_connection_cap(), "wsgateway.W005")
    assert isinstance(message, Warning)
    assert "per server process" in message.msg and "(5)" in message.msg


@pytest.mark.parametrize(
    "backend",
    [
        "wsgateway.layers.redis.RedisChannelLayer",  # counts on every process
        "wsgateway.layers.InProcessChannelLayer",  # one process: its count is the count
        "channels.layers.InMemoryChannelLayer",
        "no.such.Layer",  # Channels' error, not a warning of ours
    ],
)
def test_w005_is_silent_where_the_count_is_the_whole_count(backend: str) -> None:
    with override_settings(CHANNEL_LAYERS={"default": {"BACKEND": backend}}):
        assert check_connection_cap() == []


@override_settings(CHANNEL_LAYERS=REDIS)
def test_w005_is_a_registered_security_check() -> None:
    assert ids(run_checks(tags=[Tags.security])) == ["wsgateway.W005"]


# -- W014: the presence channel on a layer that keeps presence per process -------------------

PRESENCE_SERVED = [*DEFAULTS["SERVICES"], "wsgateway.services.presence.PresenceService"]


@pytest.mark.parametrize(
    "backend", ["channels_redis.core.RedisChannelLayer", "channels_redis.pubsub.RedisPubSubChannelLayer"]
)
def test_w014_the_presence_channel_on_a_layer_that_keeps_presence_per_process(backend: str) -> None:
    with override_settings(
        CHANNEL_LAYERS={"default": {"BACKEND": backend}}, WSGATEWAY={"SERVICES": PRESENCE_SERVED}
    ):
        message = only(check_presence_layer(), "wsgateway.W014")
    assert isinstance(message, Warning)
    assert backend in message.msg and "per server process" in message.msg


@pytest.mark.parametrize(
    ("backend", "services"),
    [
        ("wsgateway.layers.redis.RedisChannelLayer", PRESENCE_SERVED),  # presence on every process
        ("wsgateway.layers.InProcessChannelLayer", PRESENCE_SERVED),  # one process: exact
        ("channels.layers.InMemoryChannelLayer", PRESENCE_SERVED),
        ("channels_redis.core.RedisChannelLayer", DEFAULTS["SERVICES"]),  # the channel not served
    ],
)
def test_w014_is_silent_where_presence_is_exact_or_unused(backend: str, services: list[str]) -> None:
    with override_settings(
        CHANNEL_LAYERS={"default": {"BACKEND": backend}}, WSGATEWAY={"SERVICES": services}
    ):
        assert check_presence_layer() == []


# -- E012 and W006: what the server sends -------------------------------------------------


@override_settings(WSGATEWAY={"CLIPBOARD_MAX_BYTES": 600 * 1024})
def test_e012_a_full_clipboard_would_not_fit_in_max_send_size() -> None:
    message = only(check_send_size(), "wsgateway.E012")
    assert isinstance(message, Error)
    assert "CLIPBOARD_MAX_ENTRIES 500, CLIPBOARD_MAX_BYTES 614400" in message.msg
    assert "over WSGATEWAY['MAX_SEND_SIZE'] (524288)" in message.msg


def test_e012_counts_each_entrys_id_and_time() -> None:
    # 10 000 entries of nothing are 10 000 ids and times: over 512 KiB on their own.
    with override_settings(WSGATEWAY={"CLIPBOARD_MAX_ENTRIES": 10_000, "CLIPBOARD_MAX_BYTES": 1}):
        assert ids(check_send_size()) == ["wsgateway.E012"]
    with override_settings(WSGATEWAY={"CLIPBOARD_MAX_ENTRIES": 500, "CLIPBOARD_MAX_BYTES": 400 * 1024}):
        assert check_send_size() == []


def test_e012_is_silent_without_the_clipboard_service_or_with_a_larger_max_send_size() -> None:
    with override_settings(WSGATEWAY={"CLIPBOARD_MAX_BYTES": 600 * 1024, "SERVICES": DEFAULT_SERVICES[:1]}):
        assert check_send_size() == []
    with override_settings(
        WSGATEWAY={
            "CLIPBOARD_MAX_BYTES": 600 * 1024,
            "MAX_SEND_SIZE": 1024 * 1024,
            "OUTBOUND_WINDOW": 2 * 1024 * 1024,  # E013: a frame of MAX_SEND_SIZE must fit in it
        }
    ):
        assert check_send_size() == []


@override_settings(WSGATEWAY={"MAX_SEND_SIZE": 1024 * 1024 + 1, "OUTBOUND_WINDOW": 4 * 1024 * 1024})
def test_w006_max_send_size_over_what_daphne_sends_by_default() -> None:
    message = only(check_send_size(), "wsgateway.W006")
    assert isinstance(message, Warning)
    assert "1048577 bytes, over the 1048576 that daphne sends by default" in message.msg
    assert "--websocket-max-message-size" in message.hint


@override_settings(WSGATEWAY={"MAX_SEND_SIZE": 1024 * 1024, "OUTBOUND_WINDOW": 2 * 1024 * 1024})
def test_w006_is_silent_up_to_daphnes_default() -> None:
    assert check_send_size() == []


def test_w006_is_registered_and_e003_bounds_max_send_size_at_4_mib() -> None:
    with override_settings(
        WSGATEWAY={"MAX_SEND_SIZE": 2 * 1024 * 1024, "OUTBOUND_WINDOW": 4 * 1024 * 1024},
        CHANNEL_LAYERS=IN_MEMORY,
        DEBUG=True,
    ):
        assert ids(run_checks()) == ["wsgateway.W006"]
    with override_settings(WSGATEWAY={"MAX_SEND_SIZE": 4 * 1024 * 1024 + 1}):
        assert ids(check_settings()) == ["wsgateway.E003"]
        assert check_send_size() == []  # left to E003


# -- E013: a frame of MAX_SEND_SIZE must fit in what a client leaves unacknowledged -------


@pytest.mark.parametrize(
    ("window", "send"), [(64 * 1024, 512 * 1024), (1024 * 1024, 512 * 1024 + 1), (64 * 1024, 32 * 1024 + 1)]
)
def test_e013_an_outbound_window_under_twice_max_send_size(window: int, send: int) -> None:
    # Without the clipboard service: its quotas (E012) are another matter.
    with override_settings(
        WSGATEWAY={"OUTBOUND_WINDOW": window, "MAX_SEND_SIZE": send, "SERVICES": DEFAULT_SERVICES[:1]}
    ):
        message = only(check_send_size(), "wsgateway.E013")
    assert isinstance(message, Error)
    assert f"({window}) is under twice MAX_SEND_SIZE ({send})" in message.msg


@pytest.mark.parametrize(("window", "send"), [(1024 * 1024, 512 * 1024), (64 * 1024, 32 * 1024)])
def test_e013_is_silent_for_a_window_of_twice_max_send_size(window: int, send: int) -> None:
    with override_settings(
        WSGATEWAY={"OUTBOUND_WINDOW": window, "MAX_SEND_SIZE": send, "SERVICES": DEFAULT_SERVICES[:1]}
    ):
        assert check_send_size() == []


# -- W007: a token authenticator after the bearer one, which refuses its tokens ----------------

SIMPLEJWT = "wsgateway.authenticators.simplejwt.SimpleJWTAuthenticator"
BEARER = "wsgateway.auth.BearerTokenAuthenticator"
SESSION = "wsgateway.auth.SessionAuthenticator"


@pytest.mark.parametrize(
    "authenticators",
    [
        [BEARER, SIMPLEJWT],
        [SESSION, BEARER, SESSION, SIMPLEJWT],
        [BEARER, "tests.support.jwt.SiteJWTAuthenticator"],
    ],
    ids=["after", "after, not next to it", "a subclass"],
)
def test_w007_simplejwt_after_the_bearer_authenticator(authenticators: list[str]) -> None:
    with override_settings(WSGATEWAY={"AUTHENTICATORS": authenticators}):
        message = only(check_authenticator_order(), "wsgateway.W007")
    assert isinstance(message, Warning)
    assert repr(authenticators[-1]) in message.msg and repr(BEARER) in message.msg


@pytest.mark.parametrize(
    "authenticators",
    [[SIMPLEJWT, BEARER, SESSION], [SIMPLEJWT], [BEARER, SESSION], [BEARER, "no.such.Authenticator"], "nope"],
    ids=["before", "alone", "no simplejwt", "E004's", "E007's"],
)
def test_w007_is_silent_for_a_good_order(authenticators: Any) -> None:
    with override_settings(WSGATEWAY={"AUTHENTICATORS": authenticators}):
        assert check_authenticator_order() == []


@override_settings(WSGATEWAY={"AUTHENTICATORS": [BEARER, SIMPLEJWT]})
def test_w007_is_registered() -> None:
    assert "wsgateway.W007" in ids(run_checks())


# -- E014, E015: an ASGI application that routes no WebSocket, or does not import -----------------

APPS = "tests.support.asgi_apps"


@pytest.mark.parametrize(
    ("application", "what"),
    [
        ("django_only", "Django's ASGIHandler"),  # startproject's own asgi.py
        ("wrapped_django_only", "Django's ASGIHandler"),
        ("http_only", 'a ProtocolTypeRouter without a "websocket" entry'),
        ("validated_http_only", 'a ProtocolTypeRouter without a "websocket" entry'),
    ],
)
def test_e014_an_asgi_application_without_websocket_routing(application: str, what: str) -> None:
    with override_settings(ASGI_APPLICATION=f"{APPS}.{application}"):
        message = only(check_asgi_routing(), "wsgateway.E014")
    assert f"'{APPS}.{application}' is {what}" in message.msg
    assert "websocket_urlpatterns" in message.hint
    assert isinstance(message, Error)


@pytest.mark.parametrize("application", ["routed", "validated_routed", "of_its_own", "looping"])
def test_e014_is_silent_for_routed_or_unknown_applications(application: str) -> None:
    with override_settings(ASGI_APPLICATION=f"{APPS}.{application}"):
        assert check_asgi_routing() == []


@pytest.mark.parametrize("value", [None, "", "asgi"])
def test_e014_is_silent_without_an_asgi_application_setting(value: Any) -> None:
    with override_settings(ASGI_APPLICATION=value):
        assert check_asgi_routing() == []


def test_e014_on_the_example_projects_own_routing_is_silent() -> None:
    assert check_asgi_routing() == []


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("tests.support.asgi_broken.application", "RuntimeError: REDIS_URL is not set"),
        ("tests.support.no_such_module.application", "ModuleNotFoundError"),
        (f"{APPS}.no_such_name", "ImportError"),
    ],
)
def test_e015_an_asgi_application_that_does_not_import(path: str, error: str) -> None:
    with override_settings(ASGI_APPLICATION=path):
        message = only(check_asgi_routing(), "wsgateway.E015")
    assert f"ASGI_APPLICATION {path!r} cannot be imported: {error}" in message.msg


@pytest.mark.django_db  # `check` runs the model checks too (see the issue example above)
@override_settings(ASGI_APPLICATION=f"{APPS}.django_only", CHANNEL_LAYERS=IN_MEMORY, DEBUG=True)
def test_manage_py_check_fails_on_startprojects_own_asgi_py() -> None:
    with pytest.raises(SystemCheckError, match=r"wsgateway\.E014"):
        call_command("check")


# -- W008: a runserver that serves no WebSocket --------------------------------------------------

WITHOUT_DAPHNE = [app for app in settings.INSTALLED_APPS if app != "daphne"]


@pytest.mark.parametrize(
    ("installed", "runserver"),
    [
        (WITHOUT_DAPHNE, "django.contrib.staticfiles"),
        ([*WITHOUT_DAPHNE, "daphne"], "django.contrib.staticfiles"),  # after staticfiles: daphne.E001 too
        ([app for app in WITHOUT_DAPHNE if app != "django.contrib.staticfiles"], "django.core"),
    ],
)
def test_w008_runserver_is_djangos_wsgi_server(installed: list[str], runserver: str) -> None:
    with override_settings(INSTALLED_APPS=installed, DEBUG=True):
        message = only(check_runserver(), "wsgateway.W008")
    assert f"Django's WSGI server (from {runserver!r})" in message.msg
    assert "daphne" in message.hint and isinstance(message, Warning)


def test_w008_is_silent_with_daphne_first_or_debug_off() -> None:
    with override_settings(DEBUG=True):
        assert "daphne" == settings.INSTALLED_APPS[0]
        assert check_runserver() == []
    with override_settings(INSTALLED_APPS=WITHOUT_DAPHNE, DEBUG=False):
        assert check_runserver() == []


@override_settings(INSTALLED_APPS=WITHOUT_DAPHNE, CHANNEL_LAYERS=IN_MEMORY, DEBUG=True)
def test_w008_is_registered_with_django() -> None:
    assert ids(run_checks(tags=["wsgateway"])) == ["wsgateway.W008"]
