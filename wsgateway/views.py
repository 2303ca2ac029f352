"""HTTP views: issuing bearer tokens to a logged-in user."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.utils.functional import Promise
from django.utils.translation import gettext
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from .codes import ErrorCode
from .conf import gateway_settings
from .tokens import issue_token


def error(status: int, code: ErrorCode, message: str | Promise) -> JsonResponse:
    """An error as a socket's error frame carries it: ``{"error": {"code", "message"}}``; the message in
    the request's language (LocaleMiddleware's, where the site has it)."""
    return JsonResponse({"error": {"code": str(code), "message": message}}, status=status)


def csrf_failure(request: HttpRequest) -> HttpResponse | None:
    """What Django's CSRF middleware would answer this request, or None if it passes.

    Its own checks (the token, the ``Origin``, and the ``Referer`` over HTTPS), with the site's
    ``CSRF_*`` settings, as Django REST framework's ``SessionAuthentication`` runs them.
    """
    check = CsrfViewMiddleware(lambda request: HttpResponse())
    check.process_request(request)  # reads the CSRF cookie
    return check.process_view(request, None, (), {})  # type: ignore[arg-type]


# CSRF is checked in the view, not by the middleware before it: the middleware answers an anonymous POST
# (an app with no session, hence no CSRF cookie) with its HTML 403 page, where an API client needs the
# JSON 401 below. A request that the session authenticates is checked all the same, before a token is
# issued: the session cookie goes with any page's request, and a token issued to another site's form
# would be handed to that site (by a redirect, or a response its script may read under a lax CORS
# policy). The view is POST only for the same reason: a GET is not CSRF-checked by Django.
@csrf_exempt
@require_POST
def token(request: HttpRequest) -> HttpResponse:
    """``POST`` (with CSRF, as a logged-in user): ``{"token": ..., "expires_in": seconds}``.

    The token is tied to the session: it ends when the session does (logging out, say). Anonymous:
    401 ``{"error": {"code": "unauthorized", ...}}``; no CSRF token: 403 ``csrf_failed``.
    """
    if not request.user.is_authenticated:
        return error(401, ErrorCode.UNAUTHORIZED, gettext("Log in to get a token."))
    if csrf_failure(request) is not None:
        return error(403, ErrorCode.CSRF_FAILED, gettext("The CSRF token is missing or incorrect."))
    token = issue_token(request.user, session_key=request.session.session_key)
    return JsonResponse({"token": token, "expires_in": gateway_settings.TOKEN_MAX_AGE})
