"""WebSocket URL patterns to include in a site's ASGI ``URLRouter``, and the route that ends it.

::

    URLRouter([*websocket_urlpatterns, ..., unrouted])

:data:`unrouted` last: a handshake to a path no route before it serves (``/ws``, ``/WS/``,
``/ws/x/``) is refused with HTTP 403, counted, and not logged as an error. Without it Channels'
``URLRouter`` raises "No route found", which the server answers with HTTP 500 and a traceback.
"""

from __future__ import annotations

from django.urls import path, re_path

from .consumers import ClipboardConsumer, GatewayConsumer, NotifierConsumer
from .refusals import UnroutedConsumer

__all__ = ["unrouted", "websocket_urlpatterns"]

websocket_urlpatterns = [
    path("ws/", GatewayConsumer.as_asgi(), name="wsgateway"),
    path("ws/notifications/", NotifierConsumer.as_asgi(), name="wsgateway-notifications"),
    path("ws/clipboard/", ClipboardConsumer.as_asgi(), name="wsgateway-clipboard"),
]

#: Matches every path (an empty regular expression is found in any): the last route of a router.
unrouted = re_path(r"", UnroutedConsumer.as_asgi(), name="wsgateway-unrouted")
