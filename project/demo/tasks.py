"""Celery tasks of the example project (tests/test_celery.py runs them in a real worker)."""

from __future__ import annotations

from celery import shared_task
from django.contrib.auth import get_user_model

from wsgateway import notify


@shared_task
def notify_user(user_id: int, message: str) -> int:
    """Store a notification for the user and push it to their sockets; returns its id.

    A plain call: notify() is sync code, and it reaches the channel layer without async_to_sync
    (see "From a Celery worker" in docs/notifications.md).
    """
    user = get_user_model().objects.get(pk=user_id)
    return int(notify(user, message)[0].pk)
