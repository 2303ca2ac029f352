"""``{% load wsgateway %}``: ``{% wsgateway_script %}``, the browser client told where its endpoint is, and
``{% wsgateway_inbox %}``, the bell, inbox and toasts built on it. Thin tags over plain functions."""

from __future__ import annotations

from django import template
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.templatetags.static import static
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import pgettext

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


#: What ``theme`` may be: ``auto`` follows the system's ``prefers-color-scheme``.
THEMES = ("auto", "light", "dark")


def inbox_strings() -> dict[str, str]:
    """The inbox's words in the active language, keyed as ``inbox.js``'s ``STRINGS`` (tests compare the keys).

    ``{count}``, ``{label}``, ``{message}``, ``{sender}``, ``{actor}`` and ``{others}`` are filled in
    by the browser.
    """
    return {
        "bell": pgettext("inbox", "Notifications"),
        "bellUnread": pgettext("inbox", "Notifications, {count} unread"),
        "title": pgettext("inbox", "Notifications"),
        "close": pgettext("inbox", "Close"),
        "tabs": pgettext("inbox", "Show"),
        "tabUnread": pgettext("inbox", "Unread"),
        "tabAll": pgettext("inbox", "All"),
        "tabArchived": pgettext("inbox", "Archived"),
        "markAllRead": pgettext("inbox", "Mark all read"),
        "markRead": pgettext("inbox", "Mark read"),
        "markUnread": pgettext("inbox", "Mark unread"),
        "archive": pgettext("inbox", "Archive"),
        "unarchive": pgettext("inbox", "Unarchive"),
        "delete": pgettext("inbox", "Delete"),
        "snooze": pgettext("inbox", "Snooze"),
        "snoozeHour": pgettext("inbox", "For an hour"),
        "snoozeTomorrow": pgettext("inbox", "Until tomorrow"),
        "from": pgettext("inbox", "from {sender}"),
        "groupOther": pgettext("inbox", "{actor} and 1 other"),
        "groupOthers": pgettext("inbox", "{actor} and {others} others"),
        "groupCount": pgettext("inbox", "{count} notifications"),
        "emptyUnread": pgettext("inbox", "You're all caught up"),
        "emptyAll": pgettext("inbox", "No notifications yet"),
        "emptyArchived": pgettext("inbox", "Nothing archived"),
        "loading": pgettext("inbox", "Loading…"),
        "showNewest": pgettext("inbox", "Back to the newest"),
        "newNotification": pgettext("inbox", "New notification: {label}"),
        "dismiss": pgettext("inbox", "Dismiss"),
        "failed": pgettext("inbox", "That did not work: {message}"),
    }


def inbox_html(
    client: SafeString | None,
    nonce: str | None = None,
    theme: str = "auto",
    page_size: int | None = None,
    max_items: int | None = None,
    gateway: str | None = None,
) -> SafeString:
    """The inbox's markup: its stylesheet, the element with its words, ``client`` (the script tag of
    ``wsgateway.js``, or None when the page loads it itself), and ``inbox.js``. ``page_size`` (the
    ``list`` page, 1 to 100) and ``max_items`` (the most items the page keeps) default to the element's;
    ``gateway`` names the global holding the page's own ``WSGateway``, whose socket the inbox then shares."""
    if theme not in THEMES:
        raise ValueError(f"The inbox's theme is one of {', '.join(THEMES)}, not {theme!r}.")
    for name, value in (("page_size", page_size), ("max_items", max_items)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"The inbox's {name} is a positive integer, not {value!r}.")
    context = {
        "stylesheet": static("wsgateway/inbox.css"),
        "element": static("wsgateway/inbox.js"),
        "client": client,
        "nonce": nonce,
        "theme": theme,
        "page_size": page_size,
        "max_items": max_items,
        "gateway": gateway,
        "strings": inbox_strings(),
    }
    return SafeString(render_to_string("wsgateway/inbox.html", context))


@register.simple_tag(takes_context=True)
def wsgateway_inbox(
    context: template.Context,
    path: str = DEFAULT_PATH,
    theme: str = "auto",
    client: bool = True,
    page_size: int | None = None,
    max_items: int | None = None,
    gateway: str | None = None,
) -> SafeString:
    """The bell with its unread badge, the inbox it opens, and toasts for new notifications.

    ``{% wsgateway_inbox %}`` also loads ``wsgateway.js`` for ``path`` (as ``{% wsgateway_script %}``);
    ``client=False`` when the page has that tag already. ``theme``: ``"auto"``, ``"light"`` or ``"dark"``;
    ``page_size``, ``max_items`` and ``gateway``: see ``inbox_html``.
    Under a Content-Security-Policy with nonces, every tag carries the page's (see ``csp_nonce``).
    """
    nonce = csp_nonce(context)
    script = wsgateway_script(context, path) if client else None
    return inbox_html(script, nonce, theme, page_size, max_items, gateway)
