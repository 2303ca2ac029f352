"""The system checks of kinds and their e-mail: the declaration (E016), and what the e-mail of an unread
notification needs (E017, E018, W009, W010, W011).

wsgateway.checks registers them; they live here, beside what they check, so that the checks of the
settings table stay one module and this one knows the kinds and the Tasks framework.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning

from .. import tasks
from ..conf import gateway_settings
from ..layers.extensions import CONNECTIONS, is_process_local, supports
from . import kinds


def kind_errors(value: Any) -> list[CheckMessage]:
    """The kinds' declarations, which notify(), the preferences and the e-mails read."""
    return [
        Error(
            f"WSGATEWAY['NOTIFICATION_KINDS'] {message}.",
            hint="See docs/away.md for what a kind declares.",
            id="wsgateway.E016",
        )
        for message in kinds.declaration_errors(value)
    ]


def _emailing_kinds() -> list[kinds.Kind]:
    """The declared kinds that fall back to e-mail; none when the declaration is wrong (E016)."""
    try:
        return [kind for kind in kinds.declared().values() if kind.emails]
    except ValueError:
        return []


def _names(found: list[kinds.Kind]) -> str:
    return ", ".join(repr(kind.name) for kind in found)


def email_fallback_errors(layer_backend: str | None, layer: type | None) -> list[CheckMessage]:
    """What the e-mails of unread notifications need: links to start with, a backend that can wait, and
    for "if offline", a layer that counts every process's sockets (``layer``: its class, when it imports)."""
    emailing = _emailing_kinds()
    if not emailing:
        return []
    errors: list[CheckMessage] = []
    site = gateway_settings.EMAIL_SITE_URL
    parts = urlsplit(site) if isinstance(site, str) else None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.netloc
        or parts.path not in ("", "/")
    ):
        errors.append(
            Error(
                f"WSGATEWAY['EMAIL_SITE_URL'] is {site!r}, not a site's origin, and kinds {_names(emailing)} "
                "send e-mails: their links (the site, the one-click unsubscribe) would have no host.",
                hint='Set it to the origin users reach the site at, like "https://example.com".',
                id="wsgateway.E017",
            )
        )
    elif parts.scheme == "http" and not settings.DEBUG:
        errors.append(
            Warning(
                f"WSGATEWAY['EMAIL_SITE_URL'] is {site!r}: RFC 8058 one-click unsubscribe needs an HTTPS "
                "link, and mail providers ignore List-Unsubscribe-Post on any other.",
                hint="Serve the site over HTTPS and give its https:// origin.",
                id="wsgateway.W011",
            )
        )
    try:
        backend = tasks.backend()
    except Exception as error:  # InvalidTaskBackendError: no such alias, or its BACKEND does not import
        return [
            *errors,
            Error(
                f"No Tasks backend {gateway_settings.EMAIL_TASK_BACKEND!r} ({error}): the e-mails of kinds "
                f"{_names(emailing)} cannot be scheduled.",
                hint="Add it to TASKS (django_tasks_db.DatabaseBackend runs on the site's database), or "
                "name one in WSGATEWAY['EMAIL_TASK_BACKEND'].",
                id="wsgateway.E018",
            ),
        ]
    waiting = [kind for kind in emailing if kind.email_after]
    if waiting and not backend.supports_defer:
        errors.append(
            Warning(
                f"The Tasks backend {backend.alias!r} ({type(backend).__name__}) cannot defer a task, so "
                f"the e-mails of kinds {_names(waiting)} (email_after) are not sent.",
                hint="Use a backend that supports run_after: django_tasks_db.DatabaseBackend and its "
                "`manage.py db_worker`, or Celery's.",
                id="wsgateway.W009",
            )
        )
    offline = [kind for kind in emailing if kind.email_if_offline]
    if offline and layer is not None and (is_process_local(layer) or not supports(layer, CONNECTIONS)):
        errors.append(
            Warning(
                f"Kinds {_names(offline)} e-mail a user who has no open socket, but the channel layer "
                f"{layer_backend!r} counts only its own process's sockets: a worker finds none, and "
                "e-mails users who are online.",
                hint="Use wsgateway.layers.redis.RedisChannelLayer, whose connections extension counts the "
                "sockets of every process.",
                id="wsgateway.W010",
            )
        )
    return errors
