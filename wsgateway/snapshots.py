"""The services' connect frames: read for every service of a socket in one trip to the database
thread, with the user at the connect (a trip per service made that thread the bottleneck of
connects), and again on a catch-up. The connects that wait for that thread together go in one trip
(wsgateway.connect_reads)."""

from __future__ import annotations

from collections.abc import Sequence
from contextvars import Context
from typing import Any, NamedTuple

from django.utils import translation

from . import revocation
from .auth import Identity
from .services.base import Service
from .sessions import read_once

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
    #: would not cross to the database thread with the context alone.
    language: str | None


def connect_reads(asked: Sequence[Asked]) -> list[Outcome | Exception]:
    """In the database thread: each connect's reads (:func:`connect_read`), or what they raised, in
    its own context and language, as if it had made the trip alone: a refusal is worded for its own
    socket, and a refusal or a failure costs no other connect its own."""
    outcomes: list[Outcome | Exception] = []
    for one in asked:
        try:
            outcomes.append(one.context.run(_read_speaking, one))
        except Exception as exc:
            outcomes.append(exc)
    return outcomes


def _read_speaking(asked: Asked) -> Outcome:
    if asked.language is None or asked.language == translation.get_language():
        return connect_read(asked.identity, asked.services)  # the site's language: most sockets'
    with translation.override(asked.language):
        return connect_read(asked.identity, asked.services)


def connect_read(identity: Identity, services: dict[str, Service]) -> Outcome:
    """At the connect: the token's user (if not read yet), the snapshots, and what the socket logged
    in with."""
    with read_once():  # a token of a session checks the session's expiry, and its credentials keep it
        user = identity.user
        if user is None:
            assert identity.load_user is not None
            user = identity.load_user()
        credentials = revocation.credentials_of(
            user, identity.session_key, identity.expires_at, identity.session_expires_at
        )
    return user, read(services, user), credentials


def read(services: dict[str, Service], user: Any) -> Snapshots:
    """Each service's snapshot, or what it raised: one that raises must not cost the others theirs."""
    outcomes: Snapshots = {}
    for service in services.values():
        if not service.has_snapshot():
            continue
        try:
            outcomes[service.channel] = (service.snapshot(user), None)
        except Exception as exc:
            outcomes[service.channel] = (None, exc)
    return outcomes


async def settled(value: Any, error: Exception | None) -> Any:
    """A snapshot's outcome as an awaitable, as a service's ``on_connect`` is."""
    if error is not None:
        raise error
    return value
