"""``{% load wsgateway %}{% wsgateway_script %}``: the browser client, told where its endpoint is."""

from __future__ import annotations

from django import template
from django.http import HttpRequest
from django.templatetags.static import static
from django.utils.html import format_html
from django.utils.safestring import SafeString

register = template.Library()

#: Where ``wsgateway.routing.websocket_urlpatterns`` mounts the gateway endpoint.
DEFAULT_PATH = "/ws/"


def endpoint_url(request: HttpRequest | None, path: str = DEFAULT_PATH) -> str:
    """The endpoint as the page's browser must reach it: ``ws://`` or ``wss://``, host, path.

    ``path`` may also be a whole ``ws://`` or ``wss://`` URL, used as it is. Without a
    request the path is returned alone and the client resolves it against the page.
    """
    if path.startswith(("ws://", "wss://")):
        return path
    if not path.startswith("/"):
        path = "/" + path
    if request is None:
        return path
    scheme = "wss" if request.is_secure() else "ws"
    return f"{scheme}://{request.get_host()}{path}"


def csp_nonce(context: template.Context) -> str | None:
    """The page's Content-Security-Policy nonce, if it has one: the template's ``csp_nonce`` (the
    variable Django's ``csp`` context processor sets), else the request's ``csp_nonce`` (django-csp's
    middleware, which makes one only when something reads it)."""
    nonce = context.get("csp_nonce")
    if not nonce:
        nonce = getattr(context.get("request"), "csp_nonce", None)
    return str(nonce) if nonce else None


def script_tag(src: str, url: str, nonce: str | None = None) -> SafeString:
    """``<script src="..." data-wsgateway-url="...">``, with ``nonce="..."`` when given; all escaped."""
    if nonce:
        return format_html('<script src="{}" data-wsgateway-url="{}" nonce="{}"></script>', src, url, nonce)
    return format_html('<script src="{}" data-wsgateway-url="{}"></script>', src, url)


@register.simple_tag(takes_context=True)
def wsgateway_script(context: template.Context, path: str = DEFAULT_PATH) -> SafeString:
    """The ``<script>`` tag of ``wsgateway.js`` with the endpoint in ``data-wsgateway-url``.

    ``{% wsgateway_script %}`` uses ``/ws/`` on the request's host;
    ``{% wsgateway_script "/realtime/ws/" %}`` another path; a ``wss://`` URL is used as given.
    Under a Content-Security-Policy with nonces, the tag carries the page's (see ``csp_nonce``).
    """
    request = context.get("request")
    url = endpoint_url(request if isinstance(request, HttpRequest) else None, path)
    return script_tag(static("wsgateway/wsgateway.js"), url, csp_nonce(context))
