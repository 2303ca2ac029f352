"""WebSocket URL patterns for a site's ASGI routing, the route that ends it, and a router for them.

::

    GatewayURLRouter([*websocket_urlpatterns, ..., unrouted])

:data:`unrouted` last: a handshake to a path no route before it serves (``/ws``, ``/WS/``,
``/ws/x/``) is refused with HTTP 403, counted, and not logged as an error. Without it Channels'
``URLRouter`` raises "No route found", which the server answers with HTTP 500 and a traceback.
Channels' ``URLRouter`` serves the same routes; :class:`GatewayURLRouter` does it with less kept
per socket.
"""

from __future__ import annotations

from typing import Any

from channels.routing import URLRouter
from django.urls import path, re_path
from django.urls.exceptions import Resolver404

from .consumers import ClipboardConsumer, GatewayConsumer, NotifierConsumer
from .refusals import Handshake, UnroutedConsumer

__all__ = ["GatewayURLRouter", "unrouted", "websocket_urlpatterns"]

websocket_urlpatterns = [
    path("ws/", GatewayConsumer.as_asgi(), name="wsgateway"),
    path("ws/notifications/", NotifierConsumer.as_asgi(), name="wsgateway-notifications"),
    path("ws/clipboard/", ClipboardConsumer.as_asgi(), name="wsgateway-clipboard"),
]

#: Matches every path (an empty regular expression is found in any): the last route of a router.
unrouted = re_path(r"", UnroutedConsumer.as_asgi(), name="wsgateway-unrouted")

#: The consumers that read nothing of what Channels' router adds to the scope (``url_route``,
#: ``path_remaining``): wsgateway's own, and their subclasses, unless a subclass says it does.
LEAN_CONSUMERS: tuple[type, ...] = (Handshake, UnroutedConsumer)


class GatewayURLRouter(URLRouter):  # type: ignore[misc]
    """Channels' ``URLRouter``, the same routes matched in the same order, but a path that one of
    wsgateway's consumers serves without arguments (``ws/``, ``unrouted``) is handed the server's
    scope itself, and the consumer is started without ``as_asgi``'s coroutine between them.

    Why: Channels' router copies the scope for every socket, to add ``url_route`` (an empty ``args``
    and ``kwargs`` on these routes) and ``path_remaining``, and the copy lives as long as the socket,
    beside the server's own: 1.5 KB and five tracked objects a socket under uvicorn (bench/README.md).
    The scope is the server's own, then: wsgateway's consumers read it and never write to it. A subclass
    that reads ``url_route`` or writes into its scope sets ``copy_scope = True`` and is routed as Channels
    does; so is every other route, a nested router, and a route with arguments or defaults.
    """

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if (consumer := self.lean_consumer(scope)) is not None:
            return await consumer(scope, receive, send)
        return await super().__call__(scope, receive, send)

    def lean_consumer(self, scope: dict[str, Any]) -> Any:
        """The consumer instance for the scope's path, if its route is one to hand the scope as it is."""
        if "path_remaining" in scope or "url_route" in scope:  # nested: the outer router copied it already
            return None
        route_path = scope.get("path")
        root_path = scope.get("root_path", "")
        if not isinstance(route_path, str) or not route_path.startswith(root_path):
            return None  # Channels' router says why
        route_path = route_path[len(root_path) :].lstrip("/")
        for route in self.routes:
            try:
                match = route.pattern.match(route_path)
            except Resolver404:
                return None  # as Channels' router handles it
            if not match:
                continue
            _, args, kwargs = match
            consumer_class = getattr(route.callback, "consumer_class", None)
            if (
                args
                or kwargs
                or route.default_args
                or not isinstance(consumer_class, type)
                or not issubclass(consumer_class, LEAN_CONSUMERS)
                or getattr(consumer_class, "copy_scope", False)
            ):
                return None
            return consumer_class(**route.callback.consumer_initkwargs)
        return None
