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
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

from django.core.exceptions import ImproperlyConfigured

from .conf import gateway_settings

#: Why a site without the framework cannot schedule (wsgateway.E018 shows it).
MISSING = (
    "Django's Tasks framework is not installed: Django 6.0 has it (django.tasks); on 5.2 install the "
    "backport, pip install 'wsgateway[tasks]'"
)


class UnavailableTask:
    """A task that could not be defined (no framework, no such backend): importable, since notify()
    imports it, and an error when enqueued, saying why."""

    def __init__(self, func: Callable[..., Any], reason: str = MISSING) -> None:
        self.func = func
        self.reason = reason

    def using(self, **kwargs: Any) -> UnavailableTask:
        raise ImproperlyConfigured(self.reason)

    def enqueue(self, *args: Any, **kwargs: Any) -> Any:
        raise ImproperlyConfigured(self.reason)

    def call(self, *args: Any, **kwargs: Any) -> Any:
        return self.func(*args, **kwargs)


if TYPE_CHECKING:
    from django_tasks import task, task_backends
    from django_tasks.backends.base import BaseTaskBackend
    from django_tasks.base import Task
else:
    try:  # Django 6.0+: the framework itself, not the backport
        from django.tasks import task, task_backends
        from django.tasks.backends.base import BaseTaskBackend
    except ImportError:
        try:
            from django_tasks import task, task_backends
            from django_tasks.backends.base import BaseTaskBackend
        except ImportError:  # neither: wsgateway works, and e-mails nothing (E018 if a kind would)
            task = task_backends = BaseTaskBackend = None

__all__ = ["BaseTaskBackend", "backend", "define"]

P = ParamSpec("P")
T = TypeVar("T")


def backend() -> BaseTaskBackend:
    """The Tasks backend wsgateway enqueues on (``EMAIL_TASK_BACKEND``); ImproperlyConfigured without the
    framework, InvalidTaskBackendError if ``TASKS`` has no such alias (both: check wsgateway.E018)."""
    if task_backends is None:
        raise ImproperlyConfigured(MISSING)
    return task_backends[gateway_settings.EMAIL_TASK_BACKEND]


def define(func: Callable[P, T]) -> Task[P, T]:
    """``func`` as a task of the ``EMAIL_TASK_BACKEND`` backend, defined when its module is imported (a
    worker imports it by its dotted path). A site whose ``TASKS`` cannot build that backend (no such alias,
    a backend that does not import) gets a stand-in instead: its import, and with it notify(), must not
    fail, and check wsgateway.E018 reports the cause."""
    if task_backends is None:
        return cast("Task[P, T]", UnavailableTask(func))
    try:
        return task(backend=gateway_settings.EMAIL_TASK_BACKEND)(func)
    except Exception as error:  # InvalidTaskBackendError, ImportError, ImproperlyConfigured
        return cast("Task[P, T]", UnavailableTask(func, f"wsgateway's tasks were not defined: {error}"))
