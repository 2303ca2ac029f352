"""Signal receivers, connected in ``WsGatewayConfig.ready``."""

from __future__ import annotations

import threading
from typing import Any

from django.db import transaction

from .bridge import run_async
from .groups import aclose_session_sockets
from .models import Notification
from .notifications import PUSHED_ON_COMMIT
from .services.notifier import push_saved_notifications


class _PendingPushes(threading.local):
    """Ids saved in this thread's current transaction, per database alias."""

    def __init__(self) -> None:
        self.ids: dict[str, list[int]] = {}


_pending = _PendingPushes()


def notification_saved(sender: type[Notification], instance: Notification, **kwargs: Any) -> None:
    # After commit: a socket must never be told of a row a rollback takes back.
    # The saves of one transaction are pushed together, as one batch.
    if kwargs.get("raw") or instance.pk is None or getattr(instance, PUSHED_ON_COMMIT, False):
        return
    using = kwargs.get("using") or "default"
    _pending.ids.setdefault(using, []).append(instance.pk)
    transaction.on_commit(lambda: _flush(using), using=using)


def _flush(using: str) -> None:
    # The first commit hook of a transaction takes the whole batch; the others find it empty.
    # Ids left by a rolled-back transaction ride along and are dropped: they name no row.
    ids = _pending.ids.pop(using, None)
    if ids:
        push_saved_notifications(ids)


def user_logged_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    if user is not None and session_key:
        run_async(aclose_session_sockets, user.pk, session_key)
