"""Django's Tasks framework, as wsgateway uses it: which framework, and which backend.

``django.tasks`` on Django 6.0 and later, the ``django-tasks`` backport (the ``tasks`` extra) on 5.2:
whichever this Django has, so a site runs wsgateway's tasks on any Tasks backend (the database
backend's worker, Celery through its Tasks backend, ...). The backend is the alias
``WSGATEWAY["EMAIL_TASK_BACKEND"]`` names.

The tasks themselves are defined beside their work (:mod:`wsgateway.notifications.mailing`,
:mod:`wsgateway.notifications.digests`): a worker imports a task by its dotted path, and a task module
that imported its body from elsewhere would make that import run through ``notify()``'s own.
"""

from __future__ import annotations

from importlib.util import find_spec
from typing import TYPE_CHECKING

from .conf import gateway_settings

if TYPE_CHECKING:
    from django_tasks import task, task_backends
    from django_tasks.backends.base import BaseTaskBackend
elif find_spec("django.tasks"):  # Django 6.0+: the framework itself, not the backport
    from django.tasks import task, task_backends
    from django.tasks.backends.base import BaseTaskBackend
else:
    from django_tasks import task, task_backends
    from django_tasks.backends.base import BaseTaskBackend

__all__ = ["BaseTaskBackend", "backend", "task"]


def backend() -> BaseTaskBackend:
    """The Tasks backend wsgateway enqueues on (``EMAIL_TASK_BACKEND``); InvalidTaskBackendError if the
    site's ``TASKS`` has no such alias (check wsgateway.E018)."""
    return task_backends[gateway_settings.EMAIL_TASK_BACKEND]
