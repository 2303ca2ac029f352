"""ASGI entry point of the benchmark's daphne processes: project/asgi.py, plus the ceiling's consumer."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
django_asgi_app = get_asgi_application()  # before importing anything that touches models

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.urls import path  # noqa: E402

from wsgateway.routing import websocket_urlpatterns  # noqa: E402

if getattr(settings, "BENCH_LAYER", None) == "ceiling":
    from bench.ceiling import CeilingConsumer

    websocket_urlpatterns = [path("ws/", CeilingConsumer.as_asgi(), name="wsgateway")]

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AuthMiddlewareStack(URLRouter(websocket_urlpatterns)),
    }
)
