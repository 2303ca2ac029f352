"""WebSocket URL patterns to include in a site's ASGI ``URLRouter``."""

from __future__ import annotations

from django.urls import path

from .consumers import ClipboardConsumer, GatewayConsumer, NotifierConsumer

websocket_urlpatterns = [
    path("ws/", GatewayConsumer.as_asgi(), name="wsgateway"),
    path("ws/notifications/", NotifierConsumer.as_asgi(), name="wsgateway-notifications"),
    path("ws/clipboard/", ClipboardConsumer.as_asgi(), name="wsgateway-clipboard"),
]
