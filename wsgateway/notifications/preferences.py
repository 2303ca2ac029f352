"""Each user's choice of which kinds reach them on which channel (the foundation: defaults only).

To be built (issue 22): stored choices, required kinds, the API and page, the push to the user's tabs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .kinds import EMAIL, Kind


@dataclass(slots=True)
class Choice:
    """Whom one notify() chunk reaches: the users to store a row for, and the ids of those whom
    an e-mail may reach."""

    inapp: list[Any]
    email: set[Any] = field(default_factory=set)


def choose(kind: Kind, users: list[Any], using: str) -> Choice:
    """Split ``users`` by their choices for ``kind``."""
    email = {getattr(user, "pk", user) for user in users} if kind.default_for(EMAIL) else set()
    return Choice(inapp=list(users), email=email)
