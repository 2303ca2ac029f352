"""The Django session a socket or a token belongs to: its store, by key, and when it ends.

Read by the session authenticator (the cookie's session), by tokens (a token issued in a session is
refused once it has ended) and by revocation (a socket's re-check). It imports none of them, so each
reads the session here without reaching into another.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from django.conf import settings
from django.contrib.auth import SESSION_KEY, get_user
from django.contrib.sessions.backends.db import SessionStore as DatabaseStore
from django.utils.module_loading import import_string

__all__ = ["session_expiry", "session_store", "session_user"]


def _store_class() -> Any:
    return import_string(settings.SESSION_ENGINE + ".SessionStore")


def session_store(session_key: str) -> Any:
    """The ``SESSION_ENGINE``'s store of ``session_key``, not loaded yet."""
    return _store_class()(session_key)


def session_expiry(session_key: str) -> float | None:
    """When the session ends (Unix time), or ``None`` when it is gone; reads the session store.

    A database-backed engine (``db``, ``cached_db``) answers from its row, whose expiry is the
    one ``clearsessions`` and the session middleware honour. Another engine answers with what its
    store reports (``get_expiry_date()``: for a session without its own expiry, that is
    ``SESSION_COOKIE_AGE`` from now, so only the periodic re-check ends such a socket).
    """
    store_class = _store_class()
    if hasattr(store_class, "get_model_class"):
        expire_date = (
            store_class.get_model_class()
            .objects.filter(session_key=session_key)
            .values_list("expire_date", flat=True)
            .first()
        )
        return expire_date.timestamp() if expire_date is not None else None
    store = store_class(session_key)
    if SESSION_KEY not in store:  # loads it; an unknown or expired key loads as empty
        return None
    return float(store.get_expiry_date().timestamp())


def session_user(store: Any) -> tuple[Any, float | None]:
    """The user of the session in ``store`` (a store not loaded yet), as Django's ``get_user`` finds it
    for a request (``AnonymousUser`` when none), and when the session ends, if that was read with it.

    For the ``db`` engine (or a subclass that loads as it does) the session's row is read once, its
    expiry with its data: a connect then reads no row twice (reading the expiry apart cost the
    connect a query). Any other engine loads as it always does, and the expiry is left to
    :func:`session_expiry` (None here). Sync: the database thread.
    """
    expires_at = None
    if type(store).load is DatabaseStore.load and store.session_key and not hasattr(store, "_session_cache"):
        # What DatabaseStore.load does, keeping the row: the unexpired row or none, its data decoded.
        row = store._get_session_from_db()
        store._session_cache = store.decode(row.session_data) if row is not None else {}
        expires_at = row.expire_date.timestamp() if row is not None else None
    # get_user reads only ``request.session``; it may flush or cycle the store, as it would a request's.
    return get_user(SimpleNamespace(session=store)), expires_at  # type: ignore[arg-type]
