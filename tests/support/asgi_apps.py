"""ASGI applications as sites write them, for the checks of ``ASGI_APPLICATION`` (tests/test_checks.py)."""

from __future__ import annotations

from typing import Any

from channels.auth import AuthMiddlewareStack
from channels.routing import ProtocolTypeRouter, URLRouter
from channels.security.websocket import OriginValidator
from django.core.asgi import get_asgi_application

from wsgateway.routing import GatewayURLRouter, unrouted, websocket_urlpatterns

#: What ``django-admin startproject`` writes in asgi.py: HTTP only.
django_only = get_asgi_application()

http_only = ProtocolTypeRouter({"http": django_only})

#: The README's routing.
routed = ProtocolTypeRouter(
    {"http": django_only, "websocket": GatewayURLRouter([*websocket_urlpatterns, unrouted])}
)

#: Routers under middleware, as a site wraps them: Channels' stacks and validator, and an ``app`` attribute.
validated_routed = OriginValidator(
    ProtocolTypeRouter(
        {"http": django_only, "websocket": AuthMiddlewareStack(URLRouter(websocket_urlpatterns))}
    ),
    ["*"],
)
validated_http_only = OriginValidator(http_only, ["*"])


class Wrapper:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


wrapped_django_only = Wrapper(Wrapper(django_only))


async def of_its_own(scope: Any, receive: Any, send: Any) -> None:
    """An application of a kind the check does not know: it is left alone."""


class Loop:
    """A wrapper that wraps itself: the unwrapping must stop."""

    def __init__(self) -> None:
        self.app = self


looping = Loop()
