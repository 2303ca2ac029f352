"""The one-click unsubscribe of an e-mail (RFC 8058): a signed link per user and kind, and its view.

The link works without a login: it is signed (``django.core.signing``, a salt of its own, so no other
signed value of the site passes for one) and names the user and the kind, or the digest. It does not
expire: an e-mail is read months later, and the link turns off only what its own e-mail was about.

A GET shows a page with a button and changes nothing: mail scanners and link previews follow GETs.
The POST turns off that kind's e-mail for that user only. It is CSRF-exempt, as RFC 8058 requires: the
one-click POST (``List-Unsubscribe=One-Click``) comes from the mail provider, with no cookie; what it
can do is what the signed link already allows its holder.
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth import get_user_model
from django.core import signing
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from .conf import gateway_settings
from .models import Digest, NotificationPreferences
from .notifications import kinds, preferences
from .notifications.kinds import EMAIL

logger = logging.getLogger("wsgateway")

SALT = "wsgateway.unsubscribe"
#: What a digest's link names instead of a kind (not a kind name: those are non-empty strings).
DIGEST: None = None


def token(user_id: Any, kind: str | None) -> str:
    """The signed value of a link that turns off ``kind``'s e-mail (None: the digest) for the user."""
    return signing.dumps({"u": str(user_id), "k": kind}, salt=SALT, compress=True)


def url(user_id: Any, kind: str | None) -> str:
    """The absolute link (``EMAIL_SITE_URL`` and the view's path) an e-mail's List-Unsubscribe names."""
    path = reverse("wsgateway:unsubscribe", args=[token(user_id, kind)])
    return gateway_settings.EMAIL_SITE_URL.rstrip("/") + path


def read(value: str) -> tuple[str, str | None] | None:
    """The user id and kind a token names; None if it is not one of ours, or was tampered with."""
    try:
        data = signing.loads(value, salt=SALT)
    except signing.BadSignature:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("u"), str):
        return None
    kind = data.get("k")
    return (data["u"], kind) if kind is None or isinstance(kind, str) else None


def _page(request: HttpRequest, status: int, state: str, **context: Any) -> HttpResponse:
    return render(request, "wsgateway/email/unsubscribe.html", {"state": state, **context}, status=status)


def _unsubscribe(user: Any, kind_name: str | None) -> None:
    """Turn the e-mail off; ValueError when the kind cannot be (required, not declared, no e-mail)."""
    if kind_name is DIGEST:
        NotificationPreferences.objects.update_or_create(user_id=user.pk, defaults={"digest": Digest.OFF})
    else:
        preferences.set_choice(user, kind_name, EMAIL, False)


@csrf_exempt
@require_http_methods(["GET", "POST"])
def view(request: HttpRequest, value: str) -> HttpResponse:
    """GET: what the link turns off, and a button; POST: turn it off. 400 for a bad link."""
    found = read(value)
    user = None
    if found is not None:
        user = get_user_model()._default_manager.filter(pk=found[0]).first()
    if found is None or user is None:
        # Not logged with the value: it is whatever a stranger typed.
        logger.info("wsgateway: an unsubscribe link that is not valid (%s)", request.method)
        return _page(request, 400, "invalid")
    kind_name = found[1]
    try:
        kind = kinds.get(kind_name) if kind_name is not DIGEST else None
    except ValueError:  # the site no longer declares it
        return _page(request, 400, "invalid")
    label = kind.label if kind is not None else ""
    if kind is not None and (kind.required or not kind.allows(EMAIL)):
        state = "required" if kind.allows(EMAIL) else "not_emailed"
        return _page(request, 200 if request.method == "GET" else 409, state, label=label)
    if request.method == "GET":
        return _page(request, 200, "confirm", label=label, digest=kind is None)
    try:
        _unsubscribe(user, kind_name)
    except ValueError:
        return _page(request, 409, "required", label=label)
    logger.info("wsgateway: user %s unsubscribed from the e-mails of %s", user.pk, kind_name or "digests")
    return _page(request, 200, "done", label=label, digest=kind is None)
