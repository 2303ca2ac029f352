"""System checks of the site's wiring, not of wsgateway's settings: whether its ASGI application routes
WebSockets at all (E014, E015), and whether ``runserver`` can serve one (W008). Registered by
:func:`wsgateway.checks.register` with the others.

A site that gets this wrong sees no error of wsgateway's: every socket fails with a 404 or a 500,
and ``wsgateway.js`` retries it for ever. So these look at the site itself.
"""

from __future__ import annotations

from typing import Any

from channels.routing import ProtocolTypeRouter
from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning
from django.core.handlers.asgi import ASGIHandler
from django.core.management import get_commands
from django.utils.module_loading import import_string

#: Where ASGI middleware keep the application they wrap: Channels' ``BaseMiddleware`` (the auth and
#: session stacks) ``inner``, its ``OriginValidator`` ``application``, most others (Sentry's) ``app``.
_WRAPPED_APPLICATION = ("inner", "application", "app")


def _router(application: Any) -> Any:
    """The ``ProtocolTypeRouter`` or Django's ``ASGIHandler`` under any middleware, or what is found
    where the unwrapping stops (an application of another kind, which is left alone)."""
    for _ in range(20):  # bounded: a wrapper may refer to itself
        if isinstance(application, (ProtocolTypeRouter, ASGIHandler)):
            return application
        inner = next(
            (getattr(application, name) for name in _WRAPPED_APPLICATION if hasattr(application, name)), None
        )
        if inner is None or inner is application:
            return application
        application = inner
    return application


def check_asgi_routing(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """An ``ASGI_APPLICATION`` that routes no WebSocket: every socket fails, and its client retries.

    The application is imported, as Channels' ``get_default_application()`` does when daphne's
    ``runserver`` starts: an ``asgi.py`` must be importable once Django is set up anyway, since
    ``get_asgi_application()`` runs at its top. Only a router seen to lack a ``"websocket"`` entry
    (Django's own ``ASGIHandler``, the default ``asgi.py``, or a ``ProtocolTypeRouter`` without one) is
    reported; an application of a kind not known here is left alone rather than guessed at.
    """
    path = getattr(settings, "ASGI_APPLICATION", None)
    if not isinstance(path, str) or "." not in path:
        return []  # daphne's runserver says so itself; daphne and uvicorn are given the module
    try:
        application = import_string(path)
    except Exception as exc:  # ImportError, or whatever the module raises as it runs
        return [
            Error(
                f"ASGI_APPLICATION {path!r} cannot be imported: {type(exc).__name__}: {exc}",
                hint="Every ASGI server imports it to serve the site: fix the module, or the setting.",
                id="wsgateway.E015",
            )
        ]
    router = _router(application)
    if isinstance(router, ProtocolTypeRouter) and "websocket" in router.application_mapping:
        return []
    if not isinstance(router, (ProtocolTypeRouter, ASGIHandler)):
        return []
    what = (
        "is Django's ASGIHandler (get_asgi_application()), which serves HTTP only"
        if isinstance(router, ASGIHandler)
        else 'is a ProtocolTypeRouter without a "websocket" entry'
    )
    return [
        Error(
            f"ASGI_APPLICATION {path!r} {what}: every WebSocket handshake fails with an exception in "
            "the server's log, and wsgateway.js retries it for ever.",
            hint='Route WebSockets to wsgateway: ProtocolTypeRouter({"http": get_asgi_application(), '
            '"websocket": URLRouter([*websocket_urlpatterns, unrouted])}), with both names from '
            "wsgateway.routing (see the installation page).",
            id="wsgateway.E014",
        )
    ]


#: The apps whose ``runserver`` is Django's WSGI server.
WSGI_RUNSERVERS = ("django.core", "django.contrib.staticfiles")


def check_runserver(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """While ``DEBUG`` is on, a ``runserver`` that cannot serve a WebSocket (daphne not listed first)."""
    if not settings.DEBUG:
        return []  # runserver is for development; production runs an ASGI server of its own
    app = get_commands().get("runserver")  # the first app in INSTALLED_APPS with one wins
    if app not in WSGI_RUNSERVERS:
        return []
    return [
        Warning(
            f"`manage.py runserver` is Django's WSGI server (from {app!r}), which serves no WebSocket: "
            "every socket wsgateway.js opens under it gets HTTP 404, and is retried for ever.",
            hint='Install daphne (the "daphne" extra) and list "daphne" first in INSTALLED_APPS, before '
            "django.contrib.staticfiles: its runserver serves ASGI. If you serve the site with another "
            "ASGI server in development, silence wsgateway.W008.",
            id="wsgateway.W008",
        )
    ]
