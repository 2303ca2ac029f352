"""The services' connect frames: read for every service of a socket in one trip to the database
thread, with the user at the connect (a trip per service made that thread the bottleneck of
connects), and again on a catch-up."""

from __future__ import annotations

from typing import Any

from . import revocation
from .auth import Identity
from .services.base import Service
from .sessions import read_once

#: channel -> (payload, None), or (None, the exception the service's snapshot raised)
Snapshots = dict[str, tuple[Any, Exception | None]]


def connect_reads(
    identity: Identity, services: dict[str, Service]
) -> tuple[Any, Snapshots, revocation.Credentials]:
    """In the database thread, at the connect: the token's user (if not read yet), the snapshots,
    and what the socket logged in with."""
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
