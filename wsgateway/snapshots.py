"""The services' connect frames: read for every service of a socket in one trip to the database
thread, with the user at the connect (a trip per service made that thread the bottleneck of
connects), and again on a catch-up. The connects that wait for that thread together go in one trip
(wsgateway.connect_reads)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextvars import Context
from typing import Any, NamedTuple

from django.utils import translation

from . import revocation
from .auth import Identity
from .services.base import Service
from .sessions import read_once

logger = logging.getLogger("wsgateway")

#: channel -> (payload, None), or (None, the exception the service's snapshot raised)
Snapshots = dict[str, tuple[Any, Exception | None]]


#: What a connect's reads give it: the user, the snapshots, the credentials.
Outcome = tuple[Any, Snapshots, revocation.Credentials]


class Asked(NamedTuple):
    """A connect waiting for its reads."""

    identity: Identity
    services: dict[str, Service]
    #: The connect's own context variables, which the trip's (its first connect's) are not.
    context: Context
    #: Its socket's language: the context's translation is a thread's own (asgiref's Local) and
    #: would not cross to the database thread with the context alone. (Of asgiref's Locals, only this
    #: one is carried over: wsgateway sets no other for a socket, as Channels' own trips would carry
    #: one that a site's middleware set.)
    language: str | None


def connect_reads(asked: Sequence[Asked]) -> list[Outcome | Exception]:
    """In the database thread: each connect's user and credentials, then the snapshots of all, or what
    they raised. Each connect's own reads run in its own context and language, as if it had made the
    trip alone: a refusal is worded for its own socket, and a refusal or a failure costs no other
    connect its own. A service with a set-based form reads its sockets of the trip together
    (:meth:`Service.snapshots <wsgateway.services.base.Service.snapshots>`)."""
    for one in asked:
        one.context.run(_speak, one.language)
    read_users_together([one.identity for one in asked])
    logins: list[tuple[Any, revocation.Credentials] | Exception] = []
    for one in asked:
        try:
            logins.append(one.context.run(login_of, one.identity))
        except Exception as exc:
            logins.append(exc)
    sockets = [
        (one, login[0]) for one, login in zip(asked, logins, strict=True) if not isinstance(login, Exception)
    ]
    read = iter(read_sockets(sockets))
    return [login if isinstance(login, Exception) else (login[0], next(read), login[1]) for login in logins]


def read_users_together(identities: Sequence[Identity]) -> None:
    """Where the identities of a trip have ``load_user``s of a class that can read many users at once
    (a classmethod ``read_together``, as :class:`wsgateway.tokens.TokenUser`'s), more than one: read
    them at once. If that raises, it is logged, and each ``load_user`` reads its own."""
    of_class: dict[type, list[Any]] = {}
    for identity in identities:
        if identity.user is None and hasattr(type(identity.load_user), "read_together"):
            of_class.setdefault(type(identity.load_user), []).append(identity.load_user)
    for cls, loaders in of_class.items():
        if len(loaders) > 1:
            try:
                cls.read_together(loaders)  # type: ignore[attr-defined]
            except Exception:
                logger.exception("%s.read_together raised; each user is read alone", cls.__name__)


def login_of(identity: Identity) -> tuple[Any, revocation.Credentials]:
    """At the connect: the token's user (if not read yet), and what the socket logged in with."""
    with read_once():  # a token of a session checks the session's expiry, and its credentials keep it
        user = identity.user
        if user is None:
            assert identity.load_user is not None
            user = identity.load_user()
        credentials = revocation.credentials_of(
            user, identity.session_key, identity.expires_at, identity.session_expires_at
        )
    return user, credentials


def read_sockets(sockets: Sequence[tuple[Asked, Any]]) -> list[Snapshots]:
    """The snapshots of the sockets of a trip (each asked, with its user), service by service: those
    of a service with a set-based form together when the trip has more than one of its sockets, the
    others each in its socket's context and language."""
    outcomes: list[Snapshots] = [{} for _ in sockets]
    of_class: dict[type[Service], list[int]] = {}
    for index, (one, _) in enumerate(sockets):
        for service in one.services.values():
            if service.has_snapshot():
                of_class.setdefault(type(service), []).append(index)
    for cls, indices in of_class.items():
        if len(indices) > 1 and cls.has_snapshots():
            pairs = [(sockets[i][0].services[cls.channel], sockets[i][1]) for i in indices]
            if (payloads := _set_based(cls, pairs)) is not None:
                for index, payload in zip(indices, payloads, strict=True):
                    outcomes[index][cls.channel] = (
                        (None, payload) if isinstance(payload, Exception) else (payload, None)
                    )
                continue
        for index in indices:
            one, user = sockets[index]
            outcomes[index][cls.channel] = one.context.run(_snapshot_of, one.services[cls.channel], user)
    return outcomes


def _set_based(cls: type[Service], pairs: list[tuple[Service, Any]]) -> list[Any] | None:
    """``cls.snapshots(pairs)``; None when it raised or answered for other sockets than asked (logged:
    a bug of the service), and then each socket's snapshot is read alone."""
    try:
        payloads = cls.snapshots(pairs)
        if len(payloads) != len(pairs):
            raise ValueError(f"{len(payloads)} snapshots for {len(pairs)} sockets")
    except Exception:
        logger.exception("%s.snapshots raised; each socket's snapshot is read alone", cls.__name__)
        return None
    return payloads


def _speak(language: str | None) -> None:
    """In a connect's context, in this thread: its socket's language, which the context alone does not
    carry here (the translation is a thread's own: asgiref's Local). Activated, not overridden: the
    context is the connect's copy for this trip, and goes with it."""
    if language is not None and language != translation.get_language():
        translation.activate(language)


def _snapshot_of(service: Service, user: Any) -> tuple[Any, Exception | None]:
    try:
        return service.snapshot(user), None
    except Exception as exc:
        return None, exc


def read(services: dict[str, Service], user: Any) -> Snapshots:
    """Each service's snapshot, or what it raised: one that raises must not cost the others theirs."""
    return {
        service.channel: _snapshot_of(service, user)
        for service in services.values()
        if service.has_snapshot()
    }


async def settled(value: Any, error: Exception | None) -> Any:
    """A snapshot's outcome as an awaitable, as a service's ``on_connect`` is."""
    if error is not None:
        raise error
    return value
