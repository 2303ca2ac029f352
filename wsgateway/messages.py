"""Django's messages on the socket: ``messages.success(request, ...)`` in a view reaches the user's open
tabs at once, and is not shown again on the next page load. Opt-in: :class:`LiveMessagesMiddleware`
after Django's ``MessageMiddleware``, and :class:`~wsgateway.services.messages.MessagesService` in
``SERVICES`` (checks ``wsgateway.E019`` and ``wsgateway.W013``).

The rule, for a request that added a message and whose user is logged in:

- a page load (``Sec-Fetch-Mode: navigate``, or a client that does not say: no browser of this decade)
  keeps Django's behaviour: the messages stay in the site's storage for the page the tab is going to,
  where the user is looking. Pushed as well, they would be shown twice, in the other tabs and on the
  new page; pushed instead, the tab that did the thing would not show them;
- any other request (``fetch``, ``XMLHttpRequest``, htmx: the tab stays where it is) whose response
  did not show its messages itself (iterate the storage, as a template does) pushes every message
  waiting in the storage, in one frame on the ``messages`` channel, to every socket of the
  user, the asking tab's included, and marks them used: the storage keeps none of them. A user with
  no open socket (:func:`wsgateway.sockets.user_sockets`: on every process on a layer that counts
  them, on this one otherwise) keeps them in the storage, as does a user with more than
  :data:`MAX_MESSAGES` waiting, or one over :data:`MAX_TEXT` characters, or a frame over
  ``MAX_SEND_SIZE``, or a layer that fails: whole, in their order, as Django would have kept them.

Only public API of Django's storages is used (iterating marks the messages used; ``used = False``
keeps them), so it works with the cookie, session and fallback storages, and a site's own built on
``BaseStorage``, as ``MESSAGE_STORAGE`` names it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.contrib.messages import get_messages
from django.contrib.messages.storage.base import BaseStorage
from django.core.checks import CheckMessage, Error, Warning
from django.db import transaction
from django.http import HttpRequest, HttpResponseBase

from . import frames
from .exceptions import FrameTooLarge
from .groups import push_event, send_to_groups, user_group
from .services.base import service_classes
from .sockets import user_sockets

logger = logging.getLogger("wsgateway")

__all__ = ["MAX_MESSAGES", "MAX_TEXT", "LiveMessagesMiddleware"]

#: Most messages one request pushes: more are more than a row of toasts shows, and stay for a page.
MAX_MESSAGES = 20
#: Longest message text pushed, in characters: a toast is a line or two; a longer one is a page's.
MAX_TEXT = 1000

MIDDLEWARE = "wsgateway.messages.LiveMessagesMiddleware"
DJANGO_MIDDLEWARE = "django.contrib.messages.middleware.MessageMiddleware"


class LiveMessagesMiddleware:
    """Pushes the messages a request added to its user's sockets (the module's rule). List it after
    ``MessageMiddleware``: its response runs first then, before Django's stores what is left."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        response = self.get_response(request)
        if may_push(request):
            deliver(request)
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        response: HttpResponseBase = await self.get_response(request)
        if may_push(request):
            # The user, the session storage's messages and the transaction are sync Django: one trip to
            # a thread, and only for a request that added a message.
            await sync_to_async(deliver)(request)
        return response


def may_push(request: HttpRequest) -> bool:
    """What costs nothing to ask: a message this request added, that its response did not show (an htmx
    fragment that renders ``messages`` iterated them), not a page load, and a service to show it."""
    storage = get_messages(request)
    return (
        isinstance(storage, BaseStorage)
        and storage.added_new
        and not storage.used
        and not navigating(request)
        and messages_served()
    )


def navigating(request: HttpRequest) -> bool:
    """True for a page load, and for a request that does not say (Fetch Metadata, in every current
    browser): keeping Django's behaviour loses nothing."""
    return request.headers.get("Sec-Fetch-Mode", "navigate") == "navigate"


def messages_served() -> bool:
    """Whether ``SERVICES`` has a service on the messages channel: without one no socket takes the push."""
    return any(getattr(cls, "channel", None) == frames.MESSAGES_CHANNEL for cls in service_classes())


def deliver(request: HttpRequest) -> None:
    """Push the storage's messages to the user's sockets, or leave them all where they are."""
    user, storage = getattr(request, "user", None), get_messages(request)
    if user is None or not user.is_authenticated or not isinstance(storage, BaseStorage):
        return  # an anonymous user has no socket
    try:
        if not user_sockets(user):
            return
    except Exception as exc:  # the layer is down: the page shows them, as without wsgateway
        logger.warning("wsgateway: messages of user %s kept for a page: sockets unknown (%s)", user.pk, exc)
        return
    event = messages_event(list(storage))  # iterating marks them used: the storage drops them
    if event is None or not send(user.pk, event):
        storage.used = False  # Django's documented way to keep what was iterated


def messages_event(messages: list[Any]) -> dict[str, Any] | None:
    """The layer event of one push of ``messages`` (Django's ``Message``), or None when they are not
    to be pushed: none, too many, one too long, or a frame over ``MAX_SEND_SIZE``."""
    texts = [str(message.message) for message in messages]
    if not messages or len(messages) > MAX_MESSAGES or any(len(text) > MAX_TEXT for text in texts):
        return None
    payload = frames.site_messages(
        [(message.level, message.tags, text) for message, text in zip(messages, texts, strict=True)]
    )
    try:
        return push_event(frames.MESSAGES_CHANNEL, payload)
    except FrameTooLarge:
        return None


def send(user_id: Any, event: dict[str, Any]) -> bool:
    """Send ``event`` to the user's group once the transaction commits; False when it failed now.

    Outside a transaction (every request but one a site wraps whole in ``atomic``) it is sent at
    once, and a failure keeps the messages. Inside one it waits for the commit, as notify() does (a
    tab that reloads on "Saved." reads what was saved); the messages are taken then, and a failure
    at the commit is logged: the storage was written with the response.
    """
    items = [(user_group(user_id), event)]
    if transaction.get_connection().in_atomic_block:
        transaction.on_commit(partial(_send_logged, user_id, items))
        return True
    return _send_logged(user_id, items)


def _send_logged(user_id: Any, items: list[tuple[str, dict[str, Any]]]) -> bool:
    try:
        send_to_groups(items)
    except Exception as exc:
        logger.warning("wsgateway: messages of user %s not pushed (%s)", user_id, exc)
        return False
    return True


# -- checks ---------------------------------------------------------------------------------


def check_live_messages(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E019: the middleware without Django's before it; W013: no service on the messages channel."""
    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    if MIDDLEWARE not in middleware:
        return []
    errors: list[CheckMessage] = []
    before = middleware[: middleware.index(MIDDLEWARE)]
    if DJANGO_MIDDLEWARE not in before:
        errors.append(
            Error(
                f"{MIDDLEWARE} is in MIDDLEWARE without {DJANGO_MIDDLEWARE} before it: it would find no "
                "messages, or find them after Django stored them.",
                hint=f"List {DJANGO_MIDDLEWARE} before it.",
                id="wsgateway.E019",
            )
        )
    try:
        served = messages_served()
    except Exception:  # a SERVICES entry that does not import: E004 says which
        served = True
    if not served:
        errors.append(
            Warning(
                f"{MIDDLEWARE} is in MIDDLEWARE, but no service in WSGATEWAY['SERVICES'] serves the "
                f"{frames.MESSAGES_CHANNEL!r} channel: no socket would show a message, so none is pushed.",
                hint="Add 'wsgateway.services.messages.MessagesService' to SERVICES.",
                id="wsgateway.W013",
            )
        )
    return errors
