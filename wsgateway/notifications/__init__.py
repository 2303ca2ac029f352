"""Notifications, the domain: sending them, counting the unread, and pushing them once stored.

``sending`` has notify() and anotify(); ``unread`` the unread counts; ``pushing`` the push of stored
notifications to their recipients' sockets; ``delivery`` when that push happens (after commit, one
batch per transaction), for notify() and for any save of a Notification.
"""

from __future__ import annotations

from .pushing import (
    CHANNEL,
    push_created_notifications,
    push_notifications,
    push_saved_notifications,
    push_unread_state,
)
from .sending import anotify, notify
from .unread import unread_state, unread_states

__all__ = [
    "CHANNEL",
    "anotify",
    "notify",
    "push_created_notifications",
    "push_notifications",
    "push_saved_notifications",
    "push_unread_state",
    "unread_state",
    "unread_states",
]
