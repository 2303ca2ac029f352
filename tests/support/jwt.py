"""A site's own subclass of the simplejwt authenticator (apart from extensions.py: it imports simplejwt)."""

from __future__ import annotations

from wsgateway.authenticators.simplejwt import SimpleJWTAuthenticator


class SiteJWTAuthenticator(SimpleJWTAuthenticator):
    pass
