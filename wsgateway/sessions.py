"""The Django session a socket or a token belongs to: its store, by key, and when it ends.

Read by the session authenticator (the cookie's session), by tokens (a token issued in a session is
refused once it has ended) and by revocation (a socket's re-check). It imports none of them, so each
reads the session here without reaching into another. The session connects of an event loop that
wait for the database thread go there together (:class:`SessionReads`, a wsgateway.trips part), and
with the ``db`` engine read their sessions, and then their users, in a statement each.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
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

from .reads import fetch, fetch_in, whole_table
from .trips import Trips

__all__ = [
    "read_once",
    "read_user_together",
    "session_expiry",
    "session_store",
    "session_user",
    "session_users",
]


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
    Sync: the database thread. A session connect reads through :func:`read_user_together`.

    For the ``db`` engine (or a subclass that loads as it does) the session's row is read once, its
    expiry with its data, as plain SQL (wsgateway.reads); and for a user of ``ModelBackend`` (or a
    subclass that gets users as it does) whose session's hash is the current one, the user too: what
    ``get_user`` would accept, without the two queries the ORM builds on every call (1.9 ms a
    connect, measured on SQLite, against 0.2). Anything else (another engine or backend, a missing
    user, a hash to check against ``SECRET_KEY_FALLBACKS``) is Django's own ``get_user``, which may
    flush or cycle the store as it would a request's; the expiry is then left to
    :func:`session_expiry` (None here) unless the row was read.
    """
    result = session_users([store])[0]
    if isinstance(result, Exception):
        raise result
    return result


def session_users(stores: Sequence[Any]) -> list[tuple[Any, float | None] | Exception]:
    """:func:`session_user` of each store, or the exception it raised: the sessions of the ``db``
    engine in one statement (a store's model's), and the users they name in one more, each then
    checked as :func:`session_user` checks its own; any other store read alone."""
    rows = _rows_of(stores)
    expiries: list[float | None] = [None] * len(stores)
    failed: dict[int, Exception] = {}
    candidates: dict[int, tuple[Any, Any]] = {}  # store's index -> (backend, pk), to read together
    for index, store in enumerate(stores):
        if id(store) not in rows:
            continue
        row = rows[id(store)]
        # What DatabaseStore.load does, keeping the row: the unexpired row or none, its data decoded.
        if row is not None and row.expire_date <= timezone.now():
            row = None
        try:
            store._session_cache = store.decode(row.session_data) if row is not None else {}
        except Exception as exc:  # decode drops what it cannot read: anything else is this one's own
            failed[index] = exc
            continue
        expiries[index] = row.expire_date.timestamp() if row is not None else None
        if row is not None and (candidate := _candidate(store._session_cache)) is not None:
            candidates[index] = candidate
    users = _users_of(candidates)
    results: list[tuple[Any, float | None] | Exception] = []
    for index, store in enumerate(stores):
        try:
            if index in failed:
                raise failed[index]
            results.append(_user_of(store, candidates.get(index), users, expiries[index]))
        except Exception as exc:  # this connect's own failure, not the trip's
            results.append(exc)
    return results


def _loads_as_db(store: Any) -> bool:
    """Whether ``store`` is one whose row this module may read for it: it loads as the ``db`` engine
    does (not a lazy wrapper; a subclass that overrides ``load`` loads itself), and is not loaded."""
    loads_as_db = getattr(type(store), "load", None) is DatabaseStore.load
    return bool(loads_as_db and store.session_key and not hasattr(store, "_session_cache"))


def _rows_of(stores: Sequence[Any]) -> dict[int, Any]:
    """The session row of each store that :func:`_loads_as_db` (None: no row), by the store's id: one
    statement for each model the stores read (one, with the ``db`` engine)."""
    keys: dict[Any, set[str]] = {}
    for store in stores:
        if _loads_as_db(store):
            keys.setdefault(store.model, set()).add(store.session_key)
    rows: dict[tuple[Any, str], Any] = {}
    for model, named in keys.items():
        rows.update(((model, row.session_key), row) for row in fetch_in(model, "session_key", sorted(named)))
    return {id(store): rows.get((store.model, store.session_key)) for store in stores if _loads_as_db(store)}


def _users_of(candidates: dict[int, tuple[Any, Any]]) -> dict[Any, Any]:
    """The users the candidates name, by primary key, in one statement; a user named by two sessions
    is left out (each reads its own then: each socket its own user object)."""
    named = Counter(pk for _, pk in candidates.values())
    once = sorted((pk for pk, count in named.items() if count == 1), key=str)
    if not once:
        return {}
    user_model = get_user_model()
    return {user.pk: user for user in fetch_in(user_model, user_model._meta.pk.name, once)}


def _user_of(
    store: Any, candidate: tuple[Any, Any] | None, users: dict[Any, Any], expires_at: float | None
) -> tuple[Any, float | None]:
    """One store's :func:`session_user`, from what :func:`session_users` read for it."""
    if candidate is not None:
        backend, pk = candidate
        user = users[pk] if pk in users else _read_user(pk)
        if user is not None and _accepted(backend, user, store._session_cache):
            return user, expires_at
    return get_user(SimpleNamespace(session=store)), expires_at  # type: ignore[arg-type]


def _candidate(data: dict[str, Any]) -> tuple[Any, Any] | None:
    """The backend and the user's primary key a session's ``data`` names, if its user may be read
    here: its backend is configured and gets users as ``ModelBackend`` does (by primary key), the
    session has a hash, and the user table is read whole. Else None (Django's ``get_user`` decides)."""
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
        return backend, user_model._meta.pk.to_python(data[SESSION_KEY])
    except (KeyError, ValidationError):
        return None


def _read_user(pk: Any) -> Any:
    user_model = get_user_model()
    users = fetch(user_model, user_model._meta.pk.name, pk)
    return users[0] if users else None


def _accepted(backend: ModelBackend, user: Any, data: dict[str, Any]) -> bool:
    """Whether ``get_user`` would take ``user`` for the session at once: it can authenticate, and the
    session's hash is its current one (one of ``SECRET_KEY_FALLBACKS``': ``get_user`` decides)."""
    session_hash = data.get(HASH_SESSION_KEY)
    return bool(
        backend.user_can_authenticate(user)
        and session_hash
        and constant_time_compare(session_hash, user.get_session_auth_hash())
    )


#: Most session connects read in one trip (as wsgateway.connect_reads's connects, and for its reason).
MAX_PER_TRIP = 100


class SessionReads(Trips[Any, tuple[Any, float | None]]):
    """The session connects of one event loop waiting for the database thread for their sessions
    and users (wsgateway.trips): the ``db`` engine's in two statements a trip."""

    __slots__ = ()

    def most_per_trip(self) -> int:
        return MAX_PER_TRIP  # read at each trip: a test may set it

    def work(self) -> Callable[[Sequence[Any]], list[tuple[Any, float | None] | Exception]]:
        return session_users


async def read_user_together(store: Any) -> tuple[Any, float | None]:
    """:func:`session_user` of ``store``, read with the other session connects waiting now."""
    return await SessionReads.for_loop().ask(store)
