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

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured

from .conf import gateway_settings

#: Why a site without the framework cannot schedule (wsgateway.E018 shows it).
MISSING = (
    "Django's Tasks framework is not installed: Django 6.0 has it (django.tasks); on 5.2 install the "
    "backport, pip install 'wsgateway[tasks]'"
)


class UnavailableTask:
    """A task of a site without the framework: importable (notify() imports it), an error when enqueued."""

    def __init__(self, func: Callable[..., Any]) -> None:
        self.func = func

    def using(self, **kwargs: Any) -> UnavailableTask:
        raise ImproperlyConfigured(MISSING)

    def enqueue(self, *args: Any, **kwargs: Any) -> Any:
        raise ImproperlyConfigured(MISSING)

    def call(self, *args: Any, **kwargs: Any) -> Any:
        return self.func(*args, **kwargs)


if TYPE_CHECKING:
    from django_tasks import task, task_backends
    from django_tasks.backends.base import BaseTaskBackend
else:
    try:  # Django 6.0+: the framework itself, not the backport
        from django.tasks import task, task_backends
        from django.tasks.backends.base import BaseTaskBackend
    except ImportError:
        try:
            from django_tasks import task, task_backends
            from django_tasks.backends.base import BaseTaskBackend
        except ImportError:  # neither: wsgateway works, and e-mails nothing (E018 if a kind would)
            task_backends = BaseTaskBackend = None

            def task(**kwargs: Any) -> Callable[[Callable[..., Any]], UnavailableTask]:
                return UnavailableTask


__all__ = ["BaseTaskBackend", "backend", "task"]


def backend() -> BaseTaskBackend:
    """The Tasks backend wsgateway enqueues on (``EMAIL_TASK_BACKEND``); ImproperlyConfigured without the
    framework, InvalidTaskBackendError if ``TASKS`` has no such alias (both: check wsgateway.E018)."""
    if task_backends is None:
        raise ImproperlyConfigured(MISSING)
    return task_backends[gateway_settings.EMAIL_TASK_BACKEND]
