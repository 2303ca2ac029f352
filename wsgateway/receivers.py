"""Signal receivers, connected in ``WsGatewayConfig.ready``."""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from django.db import transaction

from .groups import aclose_session_sockets
from .models import Notification
from .services.notifier import push_saved_notification


def notification_saved(sender: type[Notification], instance: Notification, **kwargs: Any) -> None:
    # After commit: a socket must never be told of a row a rollback takes back.
    if not kwargs.get("raw"):
        transaction.on_commit(lambda: push_saved_notification(instance))


def user_logged_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    if user is not None and session_key:
        async_to_sync(aclose_session_sockets)(user.pk, session_key)
