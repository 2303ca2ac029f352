"""HTTP views of each user's notification preferences: the JSON API and the page.

Both read and change through :mod:`wsgateway.notifications.preferences`, which checks a change whole
before storing any of it and pushes the result to the user's tabs; these views only translate HTTP.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse, QueryDict
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext, pgettext_lazy
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_http_methods

from . import frames
from .codes import ErrorCode
from .models import Digest
from .notifications import preferences
from .notifications.kinds import EMAIL, INAPP
from .views import csrf_failure, error

#: Largest body the API reads. A change of every box of the page (``MAX_KINDS`` kinds, the longest
#: names, each character written as a ``\u`` escape) is 32 KB (tests/test_preferences.py).
MAX_BODY = 64 * 1024

#: What the page calls each channel.
CHANNEL_LABELS = {
    INAPP: pgettext_lazy("preferences", "In the app"),
    EMAIL: pgettext_lazy("preferences", "By e-mail"),
}


# CSRF is checked in the view, after the login, as the token view does (wsgateway.views): an anonymous
# script gets the JSON 401 below rather than the middleware's HTML 403 page.
@csrf_exempt
@require_http_methods(["GET", "POST"])
def preferences_api(request: HttpRequest) -> HttpResponse:
    """``GET``: the user's preferences (:func:`wsgateway.notifications.preferences.state`).
    ``POST`` (JSON, with the session's CSRF token): a change, ``{"choices": {kind: {channel: bool}},
    "digest": ...}``, made whole or not at all; answers the preferences after it.

    Anonymous: 401 ``unauthorized``; no CSRF token: 403 ``csrf_failed``; a body over ``MAX_BODY``: 413
    ``too_large``; not JSON: 400 ``invalid_json``; a change refused: 400 with its code.
    """
    if not request.user.is_authenticated:
        return error(401, ErrorCode.UNAUTHORIZED, gettext("Log in to see your preferences."))
    if request.method == "GET":
        return JsonResponse(preferences.state(request.user))
    if csrf_failure(request) is not None:
        return error(403, ErrorCode.CSRF_FAILED, gettext("The CSRF token is missing or incorrect."))
    # Content-Length first, so that an oversized body is refused without being read.
    if _content_length(request) > MAX_BODY or len(request.body) > MAX_BODY:
        return error(
            413, ErrorCode.TOO_LARGE, gettext("A change is at most %(max)d bytes.") % {"max": MAX_BODY}
        )
    try:
        # The frames' reader: no NaN or Infinity, and no nesting deep enough for a RecursionError.
        data = frames.parse_json(request.body.decode())
    except (UnicodeDecodeError, frames.FrameError):
        return error(
            400,
            ErrorCode.INVALID_JSON,
            gettext("The body is not JSON nested at most %(depth)d deep.") % {"depth": frames.MAX_NESTING},
        )
    try:
        changes = preferences.parse(data)
    except preferences.Refused as refused:
        return error(400, refused.code, refused.message)
    return JsonResponse(preferences.apply(request.user, changes))


def _content_length(request: HttpRequest) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


@login_required
@csrf_protect
@require_http_methods(["GET", "POST"])
def preferences_page(request: HttpRequest) -> HttpResponse:
    """The page: a table of kinds by channel and the digest, a form that works without a script
    (POST, then a redirect back), which ``preferences.js`` saves box by box and keeps in step with
    the user's other tabs. Template ``wsgateway/preferences.html``, for a site to extend or override.
    """
    state = preferences.state(request.user)
    refused: preferences.Refused | None = None
    if request.method == "POST":
        try:
            preferences.apply(request.user, preferences.parse(form_change(request.POST, state)))
        except preferences.Refused as exc:
            refused = exc
        else:
            return HttpResponseRedirect(f"{request.path}?saved=1", status=303)
    context = {
        "preferences": state,
        "channels": [{"name": name, "label": CHANNEL_LABELS.get(name, name)} for name in state["channels"]],
        "rows": _rows(state),
        "digests": Digest.choices,
        "saved": refused is None and "saved" in request.GET,
        "error": refused,
        "api_url": reverse("wsgateway:preferences"),
        "nonce": getattr(request, "csp_nonce", None),
    }
    return render(request, "wsgateway/preferences.html", context, status=400 if refused else 200)


def form_change(form: QueryDict, state: dict[str, Any]) -> dict[str, Any]:
    """The change a submitted page asks for, in the API's shape: the boxes of the kinds the page
    showed (its ``kinds`` fields) that differ from ``state``, and the digest.

    An unchecked box is not sent, so each kind the page showed says which of its boxes were; only what
    differs is stored, so that the rest keeps following the kind's default. A required kind's boxes are
    disabled and never sent: it is left out, not turned off.
    """
    shown = {kind["name"]: kind for kind in state["kinds"]}
    choices: dict[str, dict[str, bool]] = {}
    for name in form.getlist("kinds"):
        kind = shown.get(name)
        if kind is None:  # gone from the settings since the page was drawn: refused by parse()
            choices[name] = {}
            continue
        if kind["required"]:
            continue
        wanted = {channel: f"{name}.{channel}" in form for channel in kind["channels"]}
        if changed := {channel: on for channel, on in wanted.items() if on != kind["channels"][channel]}:
            choices[name] = changed
    change: dict[str, Any] = {"choices": choices}
    if "digest" in form:
        change["digest"] = form["digest"]
    return change


def _rows(state: dict[str, Any]) -> list[dict[str, Any]]:
    """The page's table: for each kind, a cell per channel, None where the kind does not use it."""
    rows = []
    for kind in state["kinds"]:
        cells = [
            None
            if channel not in kind["channels"]
            else {
                "name": f"{kind['name']}.{channel}",
                "channel": channel,
                "label": CHANNEL_LABELS.get(channel, channel),
                "on": kind["channels"][channel],
            }
            for channel in state["channels"]
        ]
        rows.append({**kind, "cells": cells})
    return rows
