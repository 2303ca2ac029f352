"""The Django session a socket or a token belongs to: its store, by key, and when it ends.

Read by the session authenticator (the cookie's session), by tokens (a token issued in a session is
refused once it has ended) and by revocation (a socket's re-check). It imports none of them, so each
reads the session here without reaching into another.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from types import SimpleNamespace
from typing import Any

from django.conf import settings
from django.contrib.auth import (
    BACKEND_SESSION_KEY,
    HASH_SESSION_KEY,
    SESSION_KEY,
    get_user,
    get_user_model,
    load_backend,
)
from django.contrib.auth.backends import ModelBackend
from django.contrib.sessions.backends.db import SessionStore as DatabaseStore
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.utils.module_loading import import_string

from .reads import fetch, whole_table

__all__ = ["read_once", "session_expiry", "session_store", "session_user"]


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
    known = _expiries.get()
    if known is not None and session_key in known:
        return known[session_key]
    store_class = _store_class()
    if hasattr(store_class, "get_model_class"):
        # Plain SQL (wsgateway.reads): a token connect in a session asks this twice, and a re-check
        # every REVALIDATE_INTERVAL for every socket; the ORM built the query each time.
        rows = fetch(store_class.get_model_class(), "session_key", session_key)
        expires_at = rows[0].expire_date.timestamp() if rows else None
    else:
        store = store_class(session_key)
        # Loading it answers: an unknown or expired key loads as empty.
        expires_at = float(store.get_expiry_date().timestamp()) if SESSION_KEY in store else None
    if known is not None:
        known[session_key] = expires_at
    return expires_at


#: The expiries read within :func:`read_once`, by session key; None outside.
_expiries: ContextVar[dict[str, float | None] | None] = ContextVar("wsgateway_session_expiries", default=None)


@contextmanager
def read_once() -> Iterator[None]:
    """Within it, :func:`session_expiry` reads each session once: a connect's token check and its
    credentials ask about the same session, in the same trip to the database thread."""
    token = _expiries.set({})
    try:
        yield
    finally:
        _expiries.reset(token)


def session_user(store: Any) -> tuple[Any, float | None]:
    """The user of the session in ``store`` (a store not loaded yet), as Django's ``get_user`` finds it
    for a request (``AnonymousUser`` when none), and when the session ends, if that was read with it.
    Sync: the database thread, on every session connect.

    For the ``db`` engine (or a subclass that loads as it does) the session's row is read once, its
    expiry with its data, as plain SQL (wsgateway.reads); and for a user of ``ModelBackend`` (or a
    subclass that gets users as it does) whose session's hash is the current one, the user too: what
    ``get_user`` would accept, without the two queries the ORM builds on every call (1.9 ms a
    connect, measured on SQLite, against 0.2). Anything else (another engine or backend, a missing
    user, a hash to check against ``SECRET_KEY_FALLBACKS``) is Django's own ``get_user``, which may
    flush or cycle the store as it would a request's; the expiry is then left to
    :func:`session_expiry` (None here) unless the row was read.
    """
    expires_at = None
    loads_as_db = getattr(type(store), "load", None) is DatabaseStore.load  # not a lazy wrapper
    if loads_as_db and store.session_key and not hasattr(store, "_session_cache"):
        # What DatabaseStore.load does, keeping the row: the unexpired row or none, its data decoded.
        rows = fetch(store.model, "session_key", store.session_key)
        row = rows[0] if rows and rows[0].expire_date > timezone.now() else None
        store._session_cache = store.decode(row.session_data) if row is not None else {}
        expires_at = row.expire_date.timestamp() if row is not None else None
        if row is not None and (user := _current_user(store._session_cache)) is not None:
            return user, expires_at
    return get_user(SimpleNamespace(session=store)), expires_at  # type: ignore[arg-type]


def _current_user(data: dict[str, Any]) -> Any:
    """The user a session's ``data`` names, if ``get_user`` would accept it at once: its backend is
    configured and gets users as ``ModelBackend`` does (by primary key, if they can authenticate),
    and the session's hash is the user's current one. Else None (Django's ``get_user`` decides)."""
    backend_path, session_hash = data.get(BACKEND_SESSION_KEY), data.get(HASH_SESSION_KEY)
    if not session_hash or backend_path not in settings.AUTHENTICATION_BACKENDS:
        return None
    backend = load_backend(str(backend_path))
    if not isinstance(backend, ModelBackend) or type(backend).get_user is not ModelBackend.get_user:
        return None
    user_model = get_user_model()
    if not whole_table(user_model):
        return None  # its manager hides rows: get_user reads through it
    try:
        users = fetch(user_model, user_model._meta.pk.name, user_model._meta.pk.to_python(data[SESSION_KEY]))
    except (KeyError, ValidationError):
        return None
    if not users or not backend.user_can_authenticate(users[0]):
        return None
    return users[0] if constant_time_compare(session_hash, users[0].get_session_auth_hash()) else None
