"""ASGI entry point: Django for HTTP, wsgateway's consumers for WebSockets."""

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
django_asgi_app = get_asgi_application()  # before importing anything that touches models

from channels.routing import ProtocolTypeRouter  # noqa: E402
from django.urls import path  # noqa: E402

from wsgateway.consumers import RefusingConsumer  # noqa: E402
from wsgateway.routing import GatewayURLRouter, unrouted, websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # wsgateway checks the Origin (WSGATEWAY["ALLOWED_ORIGINS"]) and reads the token and the session
        # cookie itself: no OriginValidator, and no AuthMiddlewareStack (a trip to the database thread).
        "websocket": GatewayURLRouter(
            [
                *websocket_urlpatterns,
                # A retired endpoint: its clients are told where to go, and do not reconnect (4410).
                path("ws/v0/", RefusingConsumer.as_asgi(reason="This endpoint is retired: use /ws/.")),
                # Last, as it matches every path: any other is refused (HTTP 403), without a traceback.
                unrouted,
            ]
        ),
    }
)

# Everything loaded so far (Django, the apps, about 100,000 objects) lives as long as the process: take it
# out of the cyclic collector's sight, so that a full collection walks little more than the sockets' own
# objects. With 500 sockets per daphne, full collections took 36 to 81 ms with this line and 87 to 139 ms
# without it (see docs/deployment.md, "Freeze what start-up loaded").
gc.freeze()
