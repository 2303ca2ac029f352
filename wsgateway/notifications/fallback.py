"""The e-mail sent when a notification stays unread (the foundation: planned, not yet scheduled).

To be built (issue 22): the task on Django's Tasks framework, the re-check, the e-mail at most once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from ..models import Notification
from .kinds import Kind


class Unset:
    """The type of :data:`UNSET`: notify() was given no value, and the kind's own applies."""


UNSET: Final = Unset()


@dataclass(frozen=True, slots=True)
class EmailPlan:
    """When a notify() call's notifications are e-mailed if still unread."""

    after: int | None
    if_offline: bool


def plan(kind: Kind, after: int | Unset | None, if_offline: bool | Unset) -> EmailPlan | None:
    """The e-mail fallback of a notify() call: its own values over the kind's; None: no e-mail."""
    after = kind.email_after if isinstance(after, Unset) else after
    if_offline = kind.email_if_offline if isinstance(if_offline, Unset) else if_offline
    if after is None and not if_offline:
        return None
    return EmailPlan(after, bool(if_offline))


def schedule(
    email: EmailPlan | None, rows: list[Notification], chosen: Any, fields: dict[str, Any], using: str
) -> None:
    """Arrange the e-mail of ``rows`` (to be built)."""
