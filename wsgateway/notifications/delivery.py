"""When stored notifications are pushed: once their transaction commits, never before.

Two ways in. Any save() of a Notification reaches :func:`notification_saved`
(connected to post_save in ``WsGatewayConfig.ready``), which collects the ids
saved in the transaction and pushes them together at commit. notify() inserts
in bulk and hands its rows to :func:`after_bulk_insert`, which sends the
post_save a save() would have sent and pushes the rows from memory at commit.
"""

from __future__ import annotations

import threading
from functools import partial
from typing import Any

from django.db import transaction
from django.db.models.signals import post_save

from ..models import Notification
from .pushing import push_created_notifications, push_saved_notifications

#: Set on a row while after_bulk_insert() sends its post_save: its push is arranged already.
#: Private to this module, which alone sets it and reads it.
_PUSH_ARRANGED = "_wsgateway_push_arranged"


class _PendingPushes(threading.local):
    """Ids saved in this thread's current transaction, per database alias."""

    def __init__(self) -> None:
        self.ids: dict[str, list[int]] = {}


_pending = _PendingPushes()


def notification_saved(sender: type[Notification], instance: Notification, **kwargs: Any) -> None:
    """The post_save receiver: push the saved row once its transaction commits."""
    # After commit: a socket must never be told of a row a rollback takes back.
    # The saves of one transaction are pushed together, as one batch.
    if kwargs.get("raw") or instance.pk is None or getattr(instance, _PUSH_ARRANGED, False):
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


def after_bulk_insert(batch: list[Notification], using: str) -> None:
    """Do for rows bulk_create() inserted what save() does: post_save now, the push at commit.

    The push is bound to the caller's atomic block: if it (or a savepoint
    around it) rolls back, so does the push.
    """
    for notification in batch:
        if notification.pk is None:  # a database that returns no ids from a bulk insert
            notification.save(using=using)
        else:
            _send_post_save(notification, using)
    inserted = [notification for notification in batch if notification.pk is not None]
    if inserted:
        transaction.on_commit(partial(push_created_notifications, inserted), using=using)


def _send_post_save(notification: Notification, using: str) -> None:
    # bulk_create sends no signals, and the site's receivers expect post_save. Our own receiver
    # leaves these to the hook after_bulk_insert() arranges, which has them in hand: no re-read.
    setattr(notification, _PUSH_ARRANGED, True)
    try:
        post_save.send(
            sender=Notification,
            instance=notification,
            created=True,
            update_fields=None,
            raw=False,
            using=using,
        )
    finally:
        delattr(notification, _PUSH_ARRANGED)
