"""The language a socket speaks: chosen once, from its handshake, as Django's LocaleMiddleware
chooses a request's.

LocaleMiddleware is HTTP middleware: it never runs for a WebSocket. :func:`language_of` asks
Django's own :func:`~django.utils.translation.get_language_from_request` about the handshake (the
``LANGUAGE_COOKIE_NAME`` cookie, then ``Accept-Language``, then ``LANGUAGE_CODE``), so a socket
and a page of the same browser agree. The consumer activates that language once, for the socket's
whole life: Django keeps the active language in a context variable, which every task the socket
starts copies (and the database thread's calls), so a service's ``gettext()`` answers in the
socket's language, as a view's does under LocaleMiddleware, and no frame pays for it. A push costs
nothing either: it is forwarded as the text ``notify()`` encoded, once for every socket.

Only the ``message`` of an error frame, a close's reason and the token view's JSON errors are
translated: the ``code`` next to them is the contract (wsgateway.codes), and does not change.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest
from django.utils import translation

from .scope import Scope, cookies, header


def language_of(scope: Scope) -> str:
    """The language of ``settings.LANGUAGES`` the handshake asks for, or ``LANGUAGE_CODE``."""
    if not settings.USE_I18N:
        return str(settings.LANGUAGE_CODE)
    # A bare HttpRequest with the two things the negotiation reads; no path: a socket's URL names
    # no language (i18n_patterns is for pages).
    request = HttpRequest()
    request.COOKIES = cookies(scope)
    accept = header(scope, b"accept-language")
    if accept is not None:
        request.META["HTTP_ACCEPT_LANGUAGE"] = accept
    return translation.get_language_from_request(request, check_path=False)


def speaks_already(language: str) -> bool:
    """Whether the active language (the context's: ``LANGUAGE_CODE`` unless something activated
    another) is ``language`` as :func:`language_of` names it, the variant of ``LANGUAGES`` it resolves
    to: Django's default ``LANGUAGE_CODE``, ``"en-us"``, is ``"en"`` there, and the same catalogs and
    formats. An override for it would cost every socket asgiref's storage for the activation, kept
    for its life (7 tracked objects and 0.6 KiB a socket under uvicorn)."""
    active = translation.get_language()
    if language == active:
        return True
    try:
        return language == translation.get_supported_language_variant(active)
    except LookupError:  # one outside LANGUAGES, activated by the site's own code
        return False
