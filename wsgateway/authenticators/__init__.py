"""Authenticators for credentials another package issues; each module needs that package installed.

They are apart from :mod:`wsgateway.auth` so that importing one without its package fails at once, and
is reported by the system check of ``AUTHENTICATORS`` (``wsgateway.E004``), not at the first connect.
"""
