"""wsgateway.routing.GatewayURLRouter: the routes Channels' ``URLRouter`` serves, in its order, with the
server's own scope handed to wsgateway's consumers (no copy kept per socket: tests/test_socket_cost.py)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.routing import URLRouter
from django.urls import path

from tests.support.communicators import communicator, connected
from wsgateway import metrics
from wsgateway.consumers import ClipboardConsumer, GatewayConsumer, NotifierConsumer, RefusingConsumer
from wsgateway.refusals import UnroutedConsumer
from wsgateway.routing import GatewayURLRouter, unrouted, websocket_urlpatterns

pytestmark = pytest.mark.django_db(transaction=True)


class RouteEcho(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    """A site's consumer that reads what Channels' router adds to the scope."""

    async def connect(self) -> None:
        await self.accept()
        route = self.scope["url_route"]
        await self.send_json({"args": list(route["args"]), "kwargs": route["kwargs"]})


class ReadingGateway(GatewayConsumer):
    copy_scope = True  # it reads url_route, or writes into its scope


def router() -> GatewayURLRouter:
    return GatewayURLRouter(
        [
            *websocket_urlpatterns,
            path("ws/v0/", RefusingConsumer.as_asgi(reason="retired")),
            path("ws/rooms/<int:room>/", GatewayConsumer.as_asgi()),
            path("ws/echo/<str:name>/", RouteEcho.as_asgi()),
            path("ws/echo/", RouteEcho.as_asgi()),
            path("ws/reading/", ReadingGateway.as_asgi()),
            unrouted,
        ]
    )


@pytest.mark.parametrize(
    ("scope", "consumer"),
    [
        ({"path": "/ws/"}, GatewayConsumer),
        ({"path": "/ws/notifications/"}, NotifierConsumer),
        ({"path": "/ws/clipboard/"}, ClipboardConsumer),
        ({"path": "/ws/v0/"}, RefusingConsumer),
        ({"path": "/WS/"}, UnroutedConsumer),
        ({"path": "/ws/x/"}, UnroutedConsumer),
        ({"path": "/site/ws/", "root_path": "/site"}, GatewayConsumer),
    ],
)
def test_wsgateways_routes_start_their_consumer_on_the_scope_as_it_is(
    scope: dict[str, Any], consumer: type
) -> None:
    started = router().lean_consumer(scope)
    assert type(started) is consumer
    if consumer is RefusingConsumer:
        assert started.reason == "retired"  # as_asgi's arguments, given to the consumer


@pytest.mark.parametrize(
    "scope",
    [
        {"path": "/ws/rooms/3/"},  # arguments: url_route carries them
        {"path": "/ws/echo/"},  # a consumer not wsgateway's
        {"path": "/ws/reading/"},  # wsgateway's, but it says it reads url_route
        {"path": "/ws/", "path_remaining": "ws/", "url_route": {"args": (), "kwargs": {}}},  # nested
        {"path": "/elsewhere/ws/", "root_path": "/site"},  # outside the root: Channels' error
        {},
    ],
)
def test_every_other_route_is_left_to_channels_router(scope: dict[str, Any]) -> None:
    assert router().lean_consumer(scope) is None


async def test_a_consumer_that_reads_url_route_still_gets_it() -> None:
    for where, expected in (("/ws/echo/x/", {"name": "x"}), ("/ws/echo/", {})):
        socket = communicator(path=where, application=router())
        assert (await socket.connect(timeout=2))[0]
        assert await socket.receive_json_from(timeout=2) == {"args": [], "kwargs": expected}
        await socket.disconnect()


async def test_a_socket_keeps_the_servers_scope_not_a_copy(
    alice: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    consumers: list[GatewayConsumer] = []
    original = GatewayConsumer.__init__

    def keep(self: GatewayConsumer, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        consumers.append(self)

    monkeypatch.setattr(GatewayConsumer, "__init__", keep)
    for application in (router(), URLRouter([*websocket_urlpatterns, unrouted])):
        async with connected(alice, application=application) as socket:
            scope = socket.communicator.scope
            as_given = copy.deepcopy(scope)
            await socket.assert_open()  # a ping and its answer, on top of the connect
            assert scope == as_given  # the server's scope, read and never written
            consumer = consumers.pop()
            if isinstance(application, GatewayURLRouter):
                assert consumer.scope is scope and "url_route" not in consumer.scope
            else:  # Channels' router, for comparison: a copy of its own, kept for the socket's life
                assert consumer.scope is not scope and consumer.scope["url_route"] == {
                    "args": (),
                    "kwargs": {},
                }


@pytest.mark.parametrize("where", ["/ws/notifications/", "/ws/clipboard/"])
async def test_the_one_service_endpoints_route(alice: Any, where: str) -> None:
    socket = communicator(alice, path=where, application=router())
    assert (await socket.connect(timeout=2))[0]
    hello = await socket.receive_json_from(timeout=2)
    assert hello["payload"]["services"] == [where.split("/")[2]]
    await socket.disconnect()


async def test_an_unrouted_path_is_still_refused_and_counted() -> None:
    before = metrics.value(metrics.CONNECTIONS_UNROUTED)
    socket = communicator(path="/ws/nothing/", application=router())
    assert await socket.connect(timeout=2) == (False, 1000)  # closed before accept: HTTP 403
    assert metrics.value(metrics.CONNECTIONS_UNROUTED) - before == 1
    await socket.disconnect()
