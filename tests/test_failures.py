"""Failures refuse cleanly, through the communicator: the layer down or too slow at connect is refused
``unavailable`` with 4503 (not raised: a raise is HTTP 500 and a traceback under daphne), logged once
per outage; a path nothing routes is refused before accept through ``wsgateway.routing.unrouted``.
The same against real daphne and Redis processes: tests/test_live_failures.py."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from django.test import override_settings

from tests.support.communicators import AnyText, communicator, connected, refused
from wsgateway import connections, metrics, refusals
from wsgateway.codes import CloseCode
from wsgateway.refusals import LayerOutage
from wsgateway.routing import unrouted, websocket_urlpatterns

pytestmark = pytest.mark.django_db(transaction=True)

UNAVAILABLE = {"channel": "gateway", "error": {"code": "unavailable", "message": AnyText(), "retry_after": 5}}


@pytest.fixture
def outage(monkeypatch: pytest.MonkeyPatch) -> LayerOutage:
    """A process that saw no outage yet: each test counts its own log lines."""
    fresh = LayerOutage()
    monkeypatch.setattr(refusals, "layer_outage", fresh)
    return fresh


async def assert_unavailable(user: Any) -> None:
    async with refused(user) as socket:
        assert await socket.receive() == UNAVAILABLE
        assert await socket.close_code() == CloseCode.SERVICE_UNAVAILABLE == 4503


async def test_a_layer_down_at_connect_is_refused_unavailable_logged_once_and_counted(
    alice: Any, outage: LayerOutage, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def refused_by_redis(*args: Any, **kwargs: Any) -> bool:
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    before = metrics.value(metrics.CONNECTIONS_UNAVAILABLE)
    with caplog.at_level(logging.INFO, logger="wsgateway"):
        with monkeypatch.context() as down:  # not monkeypatch.undo(): that would undo `outage` too
            down.setattr(connections, "register", refused_by_redis)
            for _ in range(3):
                await assert_unavailable(alice)
        async with connected(alice) as socket:  # the layer is back: so are connects
            await socket.assert_open()
    assert metrics.value(metrics.CONNECTIONS_UNAVAILABLE) - before == 3
    said = [record.getMessage() for record in caplog.records if "channel layer" in record.getMessage()]
    assert len(said) == 2, said  # the outage, once for three connects; its end
    assert "Connection refused" in said[0] and "3 refused" in said[1]
    assert not [record for record in caplog.records if record.exc_info or record.levelno >= logging.ERROR]


@override_settings(WSGATEWAY={"LAYER_CONNECT_TIMEOUT": 1, "MAX_CONNECTIONS_PER_USER": 1})
async def test_a_layer_that_does_not_answer_is_refused_within_layer_connect_timeout(
    alice: Any, outage: LayerOutage, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    layer = get_channel_layer()

    async def paused(group: str, channel: str) -> None:
        await asyncio.sleep(30)  # a Redis under SIGSTOP answers nothing and refuses nothing

    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="wsgateway"), monkeypatch.context() as slow:
        slow.setattr(layer, "group_add", paused)
        await assert_unavailable(alice)
    assert 1 <= time.monotonic() - started < 2
    assert any("no answer in LAYER_CONNECT_TIMEOUT" in record.getMessage() for record in caplog.records)
    # The place it took before the join timed out is given back: the cap of 1 lets the next one in.
    async with connected(alice) as socket:
        await socket.assert_open()


async def test_a_layer_failure_is_not_a_refusal_of_the_user(
    alice: Any, outage: LayerOutage, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An error of the layer's own client, not an OSError (redis-py's are not): refused the same way.
    class RedisError(Exception):
        pass

    async def failing(*args: Any, **kwargs: Any) -> bool:
        raise RedisError("MISCONF")

    monkeypatch.setattr(connections, "register", failing)
    await assert_unavailable(alice)


async def test_a_layer_that_gives_no_channel_is_refused_unavailable_too(
    alice: Any, outage: LayerOutage, monkeypatch: pytest.MonkeyPatch
) -> None:
    # wsgateway's Redis layer subscribes on a process's first socket: with Redis down, new_channel()
    # fails before the consumer has read the handshake.
    async def no_channel(prefix: str = "specific.") -> str:
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    before = metrics.value(metrics.CONNECTIONS_UNAVAILABLE)
    with monkeypatch.context() as down:
        down.setattr(get_channel_layer(), "new_channel", no_channel)
        await assert_unavailable(alice)
        # The origin is checked first, as on every handshake: a foreign page is refused before accept.
        foreign = communicator(alice, headers=[(b"origin", b"https://attacker.example")])
        assert not (await foreign.connect(timeout=2))[0]
        await foreign.disconnect()
    assert metrics.value(metrics.CONNECTIONS_UNAVAILABLE) - before == 2
    async with connected(alice) as socket:
        await socket.assert_open()


@override_settings(WSGATEWAY={"LAYER_CONNECT_TIMEOUT": 1})
async def test_a_layer_that_gives_no_channel_in_time_is_refused_within_layer_connect_timeout(
    alice: Any, outage: LayerOutage, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def paused(prefix: str = "specific.") -> str:
        await asyncio.sleep(30)
        raise AssertionError

    started = time.monotonic()
    with monkeypatch.context() as slow:
        slow.setattr(get_channel_layer(), "new_channel", paused)
        await assert_unavailable(alice)
    assert 1 <= time.monotonic() - started < 2
    async with connected(alice) as socket:  # a socket that got its channel is not cut at 1 s
        await asyncio.sleep(1.2)
        await socket.assert_open()


async def test_a_failure_after_the_channel_is_not_taken_for_the_layers(
    alice: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A bug of the site's, say, in a handler's connect: raised as ever, for the server to log.
    async def broken(scope: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("wsgateway.consumers.authenticate", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        await communicator(alice).connect(timeout=2)


# -- unrouted paths -------------------------------------------------------------------------

ROUTER = URLRouter([*websocket_urlpatterns, unrouted])


@pytest.mark.parametrize("path", ["/ws", "//ws/x", "/WS/", "/ws/x/", "/", "/ws/notifications"])
@pytest.mark.parametrize("origin", [b"http://testserver", b"https://attacker.example", None])
async def test_a_path_nothing_routes_is_refused_before_accept(path: str, origin: bytes | None) -> None:
    before = metrics.value(metrics.CONNECTIONS_UNROUTED)
    headers = [(b"origin", origin)] if origin is not None else []
    socket = communicator(path=path, headers=headers, application=ROUTER)
    accepted, code = await socket.connect(timeout=2)
    assert not accepted  # closed before accept: HTTP 403 under every server, not a 500
    assert code == 1000  # the communicator's stand-in for a close before accept
    assert metrics.value(metrics.CONNECTIONS_UNROUTED) - before == 1
    await socket.disconnect()


async def test_unrouted_logs_the_first_at_info_and_the_rest_at_debug(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(refusals.UnroutedConsumer, "logged", False)
    with caplog.at_level(logging.DEBUG, logger="wsgateway"):
        for path in ("/ws", "/WS/", "/ws/x/"):
            socket = communicator(path=path, application=ROUTER)
            assert not (await socket.connect(timeout=2))[0]
            await socket.disconnect()
    levels = [record.levelno for record in caplog.records if "no route serves it" in record.getMessage()]
    assert levels == [logging.INFO, logging.DEBUG, logging.DEBUG]


async def test_the_routes_before_unrouted_still_route(alice: Any) -> None:
    async with connected(alice, application=ROUTER) as socket:
        await socket.assert_open()
    async with refused(application=ROUTER) as anonymous:  # an anonymous socket on /ws/: 4401 as ever
        assert (await anonymous.receive())["error"]["code"] == "unauthorized"
        assert await anonymous.close_code() == CloseCode.UNAUTHORIZED
