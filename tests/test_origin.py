"""Which browser origins may open a socket: by default a page on the socket's own host and port
(the Host header) that ALLOWED_HOSTS allows, or WSGATEWAY["ALLOWED_ORIGINS"].

A refused handshake is closed before it is accepted (daphne answers it with HTTP 403), so the
communicator reports it as not connected.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from django.test import override_settings

from tests.support.communicators import bearer, communicator, frame, origin
from wsgateway.consumers import ClipboardConsumer, GatewayConsumer, NotifierConsumer
from wsgateway.tokens import issue_token

pytestmark = pytest.mark.django_db(transaction=True)


async def accepted(
    user: Any, origin_header: str | None, consumer: Any = GatewayConsumer, host: str | None = "testserver"
) -> bool:
    """Open a socket from ``origin_header`` (None: no Origin header) to ``host`` (the Host header;
    None: none) and say whether it was accepted."""
    headers = [] if origin_header is None else [origin(origin_header)]
    if host is not None:
        headers.append((b"host", host.encode()))
    ws = communicator(user, consumer, headers=headers)
    try:
        is_accepted, close_code = await ws.connect()
        if is_accepted:
            hello = await ws.receive_json_from()
            assert hello["channel"] == "gateway" and hello["payload"]["user"]["id"] == user.pk
        else:
            assert close_code == 1000  # a plain close before accept: the server turns it into HTTP 403
            assert await ws.receive_nothing()
        return bool(is_accepted)
    finally:
        await ws.disconnect()


def own_host(value: str) -> str:
    """The Host header of a socket on the page's own host and port (what a browser sends)."""
    return urlsplit(value).netloc if "://" in value else "testserver"


# -- by default: the page on the socket's host and port, if ALLOWED_HOSTS allows it ------


@pytest.mark.parametrize(
    ("value", "host"),
    [
        ("http://testserver", "testserver"),
        ("https://testserver", "testserver"),
        ("http://testserver:8000", "testserver:8000"),
        ("https://localhost:8443", "localhost:8443"),
        ("http://127.0.0.1:8000", "127.0.0.1:8000"),
        ("HTTP://TestServer", "TESTSERVER"),
        ("http://testserver:80", "testserver"),
        ("https://testserver", "testserver:443"),
    ],
)
async def test_origin_on_the_sockets_host_and_port_is_allowed_on_either_scheme(
    ann: Any, value: str, host: str
) -> None:
    assert await accepted(ann, value, host=host)


@pytest.mark.parametrize(
    ("value", "host"),
    [
        ("http://testserver:8001", "testserver:8000"),  # another port of the same host: the issue's page
        ("http://testserver:8000", "testserver"),
        ("http://testserver", "testserver:8000"),
        ("https://testserver", "testserver:80"),
        ("http://localhost:8000", "127.0.0.1:8000"),  # both allowed hosts, but not the same one
        ("http://127.0.0.1:8000", "testserver"),
    ],
)
async def test_origin_on_another_port_or_host_of_the_allowed_hosts_is_refused(
    ann: Any, value: str, host: str
) -> None:
    assert await accepted(ann, value, host=host) is False
    assert await accepted(ann, value, host=own_host(value))  # the same page, on its own socket


@pytest.mark.parametrize("host", [None, "", "testserver:port", "user@testserver", "testserver/ws", "[::1"])
async def test_origin_is_refused_without_a_host_header_to_match(ann: Any, host: str | None) -> None:
    assert not await accepted(ann, "http://testserver", host=host)


async def test_x_forwarded_host_is_the_sockets_host_when_django_reads_it(ann: Any) -> None:
    """Behind a proxy that rewrites Host, the origin is compared with what Django takes for the host."""
    proxied = [
        origin("https://testserver"),
        (b"host", b"127.0.0.1:8000"),
        (b"x-forwarded-host", b"testserver"),
    ]
    with override_settings(USE_X_FORWARDED_HOST=True):
        assert await connects(ann, proxied)
        assert not await connects(ann, [origin("https://testserver:8443"), *proxied[1:]])
    with override_settings(USE_X_FORWARDED_HOST=False):
        assert not await connects(ann, proxied)


async def connects(user: Any, headers: list[tuple[bytes, bytes]]) -> bool:
    ws = communicator(user, headers=headers)
    try:
        is_accepted, _ = await ws.connect()
        if is_accepted:
            assert (await ws.receive_json_from())["payload"]["user"]["id"] == user.pk
        return bool(is_accepted)
    finally:
        await ws.disconnect()


@pytest.mark.parametrize(
    "value",
    [
        "https://evil.example",
        "http://testserver.evil.example",
        "http://evil-testserver",
        "http://sub.testserver",
        "http://127.0.0.2",
        "http://[::1]",
        "null",
        "",
        "testserver",
        "http://",
        "http://testserver:99999",
        "file:///etc/passwd",
    ],
)
async def test_origin_not_on_allowed_hosts_is_refused(ann: Any, value: str) -> None:
    # Even on a socket of its own host (DNS rebinding): ALLOWED_HOSTS still decides.
    assert not await accepted(ann, value, host=own_host(value))


@pytest.mark.parametrize("consumer", [GatewayConsumer, NotifierConsumer, ClipboardConsumer])
async def test_every_endpoint_refuses_a_foreign_origin(ann: Any, consumer: Any) -> None:
    assert not await accepted(ann, "https://evil.example", consumer)
    assert await accepted(ann, "https://testserver", consumer)


async def test_handshake_without_an_origin_is_allowed(ann: Any) -> None:
    assert await accepted(ann, None)


async def test_foreign_origin_is_refused_before_credentials_are_looked_at(ann: Any) -> None:
    ws = communicator(headers=[origin("https://evil.example"), bearer(issue_token(ann))])
    try:
        assert await ws.connect() == (False, 1000)
    finally:
        await ws.disconnect()


@override_settings(ALLOWED_HOSTS=[".example.com"])
@pytest.mark.parametrize(
    ("value", "allowed"),
    [("https://example.com", True), ("https://app.example.com", True), ("https://badexample.com", False)],
)
async def test_allowed_hosts_subdomain_patterns_apply(ann: Any, value: str, allowed: bool) -> None:
    assert await accepted(ann, value, host=own_host(value)) is allowed


@override_settings(ALLOWED_HOSTS=[".example.com"])
async def test_a_subdomain_allowed_hosts_allows_is_still_refused_on_another_subdomains_socket(
    ann: Any,
) -> None:
    assert not await accepted(ann, "https://other.example.com", host="app.example.com")


@override_settings(ALLOWED_HOSTS=["[::1]"])
async def test_ipv6_origin_matches_an_ipv6_allowed_host(ann: Any) -> None:
    assert await accepted(ann, "http://[::1]:8000", host="[::1]:8000")
    assert not await accepted(ann, "http://[::1]:8001", host="[::1]:8000")
    assert not await accepted(ann, "http://[::2]:8000", host="[::2]:8000")


@override_settings(ALLOWED_HOSTS=["*"])
async def test_wildcard_allowed_hosts_still_needs_the_page_on_the_sockets_host_and_port(ann: Any) -> None:
    assert await accepted(ann, "https://anything.example", host="anything.example")
    assert not await accepted(ann, "https://anything.example", host="testserver")
    assert not await accepted(ann, "http://testserver:8001", host="testserver:8000")
    assert not await accepted(ann, "null")


@override_settings(DEBUG=True, ALLOWED_HOSTS=[])
async def test_debug_with_no_allowed_hosts_allows_localhost_only(ann: Any) -> None:
    assert await accepted(ann, "http://localhost:8000", host="localhost:8000")
    assert await accepted(ann, "http://127.0.0.1:8000", host="127.0.0.1:8000")
    assert await accepted(ann, "http://[::1]:8000", host="[::1]:8000")
    assert not await accepted(ann, "https://evil.example", host="evil.example")
    assert not await accepted(ann, "http://localhost:8001", host="localhost:8000")


@override_settings(DEBUG=False, ALLOWED_HOSTS=[])
async def test_no_allowed_hosts_without_debug_refuses_every_browser_origin(ann: Any) -> None:
    assert not await accepted(ann, "http://localhost:8000", host="localhost:8000")
    assert await accepted(ann, None)


# -- WSGATEWAY["ALLOWED_ORIGINS"] -------------------------------------------------------


@override_settings(WSGATEWAY={"ALLOWED_ORIGINS": ["https://app.example.com"]})
@pytest.mark.parametrize(
    ("value", "allowed"),
    [
        ("https://app.example.com", True),
        ("https://APP.example.com:443", True),
        ("http://app.example.com", False),
        ("https://app.example.com:8443", False),
        ("https://example.com", False),
        ("https://testserver", False),
        ("null", False),
    ],
)
async def test_explicit_allowed_origins_match_scheme_host_and_port(
    ann: Any, value: str, allowed: bool
) -> None:
    assert await accepted(ann, value) is allowed


@override_settings(WSGATEWAY={"ALLOWED_ORIGINS": ["http://localhost:8000"]})
async def test_explicit_allowed_origin_with_a_port_needs_that_port(ann: Any) -> None:
    assert await accepted(ann, "http://localhost:8000")
    assert not await accepted(ann, "http://localhost")
    assert not await accepted(ann, "http://localhost:8001")


@override_settings(WSGATEWAY={"ALLOWED_ORIGINS": ["*"]})
async def test_star_allows_every_origin(ann: Any) -> None:
    assert await accepted(ann, "https://anything.example")
    assert await accepted(ann, "http://localhost:1234")
    assert await accepted(ann, "http://localhost:1234", host=None)


@override_settings(WSGATEWAY={"ALLOWED_ORIGINS": ["https://app.example.com"]})
async def test_explicit_allowed_origins_ignore_the_host_header(ann: Any) -> None:
    """An explicit list works as it always did: the socket's Host neither widens nor narrows it."""
    assert await accepted(ann, "https://app.example.com", host="ws.example.com")
    assert await accepted(ann, "https://app.example.com", host=None)
    assert not await accepted(ann, "https://testserver", host="testserver")


@override_settings(WSGATEWAY={"ALLOWED_ORIGINS": []})
async def test_empty_allowed_origins_refuses_every_browser(ann: Any) -> None:
    assert not await accepted(ann, "http://testserver")
    assert await accepted(ann, None)


async def test_allowed_origin_still_needs_credentials() -> None:
    ws = communicator(headers=[origin("http://testserver"), (b"host", b"testserver")])
    try:
        assert await ws.connect() == (True, None)
        assert await ws.receive_json_from() == {
            "channel": "gateway",
            "error": {"code": "unauthorized", "message": "Log in, or present a bearer token, to connect."},
        }
        assert (await ws.receive_output())["code"] == 4401
    finally:
        await ws.disconnect()


async def test_accepted_origin_gets_the_normal_connect_frames(ann: Any) -> None:
    ws = communicator(ann, headers=[origin("http://testserver"), (b"host", b"testserver")])
    try:
        assert await ws.connect() == (True, None)
        assert await ws.receive_json_from() == frame(
            "gateway",
            {
                "user": {"id": ann.pk, "username": "ann"},
                "services": ["notifications", "clipboard"],
                "window": 1024 * 1024,
            },
        )
    finally:
        await ws.disconnect()
