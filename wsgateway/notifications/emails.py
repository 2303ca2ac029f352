"""The e-mails themselves: written from templates, with the one-click unsubscribe headers (RFC 8058).

Text and HTML from ``wsgateway/email/*.txt|html`` (a site overrides them as any app's templates), sent
through Django's mail (``EmailMultiAlternatives``, ``DEFAULT_FROM_EMAIL``). Each e-mail names the link
that turns off what it was about (``List-Unsubscribe``, with ``List-Unsubscribe-Post:
List-Unsubscribe=One-Click`` so that the mail provider's button POSTs it); the links start with
``EMAIL_SITE_URL``, as a worker has no request to read a host from.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urljoin

from django.core import mail
from django.core.mail import EmailMultiAlternatives
from django.core.mail.backends.base import BaseEmailBackend
from django.template.loader import render_to_string

from .. import unsubscribe
from ..conf import gateway_settings
from ..models import Notification
from .kinds import Kind

#: Longest subject, in characters: what mail programs show of it, and no header folded over many lines.
MAX_SUBJECT = 120


def connection() -> BaseEmailBackend:
    """A connection to the site's mail server, for several e-mails: Django 6.1's default mailer
    (``MAILERS``; ``get_connection()`` is deprecated there), else ``get_connection()``."""
    mailers = getattr(mail, "mailers", None)
    if mailers is not None:
        default: BaseEmailBackend = mailers.default
        return default
    return mail.get_connection()


def address(user: Any) -> str:
    """The user's e-mail address ("" when it has none), by the user model's own field."""
    field = getattr(type(user), "EMAIL_FIELD", "email")
    return str(getattr(user, field, "") or "")


def subject(template: str, context: dict[str, Any]) -> str:
    # A header is one line: a message's newlines would be refused by Django as a header injection.
    text = " ".join(render_to_string(template, context).split())
    return text if len(text) <= MAX_SUBJECT else text[: MAX_SUBJECT - 1] + "…"


def site_link(url: str = "") -> str:
    """``url`` (an action's: http(s), or relative to the site) as an absolute link; "" the site itself."""
    return urljoin(gateway_settings.EMAIL_SITE_URL.rstrip("/") + "/", url)


def _email(user: Any, name: str, context: dict[str, Any], unsubscribe_url: str) -> EmailMultiAlternatives:
    context = {**context, "user": user, "unsubscribe_url": unsubscribe_url}
    mail = EmailMultiAlternatives(
        subject=subject(f"wsgateway/email/{name}_subject.txt", context),
        body=render_to_string(f"wsgateway/email/{name}.txt", context),
        to=[address(user)],
        headers={
            "List-Unsubscribe": f"<{unsubscribe_url}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    )
    mail.attach_alternative(render_to_string(f"wsgateway/email/{name}.html", context), "text/html")
    return mail


def notification_email(
    user: Any, kind: Kind, message: str, row: Notification | None = None
) -> EmailMultiAlternatives:
    """The e-mail of one notification (``row``; None for a user whose in-app channel is off)."""
    actions = row.actions if row is not None else []
    context = {
        "message": message,
        "label": kind.label,
        "kind": kind.name,
        "notification": row,
        "link": site_link(actions[0]["url"] if actions else ""),
    }
    return _email(user, "notification", context, unsubscribe.url(user.pk, kind.name))


def digest_email(user: Any, rows: Sequence[Notification], total: int) -> EmailMultiAlternatives:
    """The digest: ``rows`` listed, and how many more of ``total`` there are."""
    context = {"rows": rows, "total": total, "more": total - len(rows), "link": site_link()}
    return _email(user, "digest", context, unsubscribe.url(user.pk, unsubscribe.DIGEST))
