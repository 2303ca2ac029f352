"""HTTP views: issuing bearer tokens to a logged-in user."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_POST

from .conf import gateway_settings
from .tokens import issue_token


@require_POST
@login_required
def token(request: HttpRequest) -> JsonResponse:
    """``POST`` (with CSRF, as a logged-in user): ``{"token": ..., "expires_in": seconds}``.

    The token is tied to the session: it ends when the session does (logging out, say).
    """
    token = issue_token(request.user, session_key=request.session.session_key)  # type: ignore[arg-type]
    return JsonResponse({"token": token, "expires_in": gateway_settings.TOKEN_MAX_AGE})
