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


class _Batch:
    """The ids saved in one transaction, and its commit hook: pushes them all at once."""

    __slots__ = ("ids",)

    def __init__(self) -> None:
        self.ids: list[int] = []

    def __call__(self) -> None:
        push_saved_notifications(self.ids)


class _OpenBatches(threading.local):
    """This thread's batch per database alias: the batch of the transaction it is in, if still open."""

    def __init__(self) -> None:
        self.by_alias: dict[str, _Batch] = {}


_batches = _OpenBatches()


def notification_saved(sender: type[Notification], instance: Notification, **kwargs: Any) -> None:
    """The post_save receiver: push the saved row once its transaction commits."""
    # After commit: a socket must never be told of a row a rollback takes back.
    # The saves of one transaction are pushed together, as one batch.
    if kwargs.get("raw") or instance.pk is None or getattr(instance, _PUSH_ARRANGED, False):
        return
    using = kwargs.get("using") or "default"
    connection = transaction.get_connection(using)
    if not connection.in_atomic_block:  # autocommit: the row is committed already
        push_saved_notifications([instance.pk])
        return
    batch = _batches.by_alias.get(using)
    if batch is None or not _awaits_commit(connection, batch):
        batch = _batches.by_alias[using] = _Batch()
        transaction.on_commit(batch, using=using)
    batch.ids.append(instance.pk)


def _awaits_commit(connection: Any, batch: _Batch) -> bool:
    """Whether ``batch``'s hook is still among the connection's commit hooks.

    Django drops a transaction's hooks when it rolls back (and a savepoint's when the savepoint
    does), so a batch whose hook is gone belongs to a transaction that ended: its ids must
    never ride along with the next one, where SQLite may have given a new row the same id.
    """
    return any(hook is batch for _savepoints, hook, _robust in connection.run_on_commit)


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
