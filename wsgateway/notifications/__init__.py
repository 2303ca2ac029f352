"""Notifications, the domain: sending them, their states and changes, counting, pushing, pruning.

``states`` says what each state shows and what each change does; ``changes`` numbers, stores and
pushes changes; ``history`` replays from a cursor; ``snoozing`` brings snoozed ones back;
``pruning`` removes old rows (:func:`prune`, for a scheduled task).
``sending`` has notify() and anotify(); ``unread`` the unread counts; ``pushing`` the push of stored
notifications to their recipients' sockets; ``delivery`` when that push happens (after commit, one
batch per transaction), for notify() and for any save of a Notification.
"""

from __future__ import annotations

from .pruning import prune
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
    "prune",
    "push_created_notifications",
    "push_notifications",
    "push_saved_notifications",
    "push_unread_state",
    "unread_state",
    "unread_states",
]
