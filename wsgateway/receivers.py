"""wsgateway's receivers of Django's own signals, connected in ``WsGatewayConfig.ready``.

The post_save receiver of notifications lives with the rest of their delivery,
in :mod:`wsgateway.notifications.delivery`. The ones below close the sockets of a login
that ended (see :mod:`wsgateway.revocation`), on every process, once the change is
committed. A layer that is down costs the change nothing: the failure is logged, and the
sockets' periodic re-check (``REVALIDATE_INTERVAL``) closes them later.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from django.contrib.auth import SESSION_KEY
from django.db import router, transaction
from django.utils import timezone

from . import revocation

logger = logging.getLogger("wsgateway")

#: The user fields whose change can end a login; a save naming only others (``last_login``, on
#: every login) sends nothing.
LOGIN_FIELDS = frozenset({"password", "is_active"})


def user_logged_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    if user is not None and session_key:
        # At once, not on commit: a logout is no transaction's change, and its session is flushed next.
        verdict = revocation.LOGGED_OUT
        event = revocation.revoke_event(error=verdict.error, reason=verdict.message, session_key=session_key)
        revocation.send_revoke_event(user.pk, event)


def user_saved(sender: Any, instance: Any, created: bool, update_fields: Any = None, **kwargs: Any) -> None:
    """Made inactive: close every socket of the user. Saved with another password (``set_password``,
    the password change views): close the sockets opened with the old one, whatever their session."""
    if created or (update_fields is not None and not LOGIN_FIELDS & set(update_fields)):
        return
    if not getattr(instance, "is_active", True):
        verdict, keep = revocation.DEACTIVATED, None
    else:
        # Every socket compares the hash with its own: one event, whether the password changed or not.
        verdict, keep = revocation.PASSWORD_CHANGED, revocation.auth_hash_of(instance)
        if keep is None:
            return
    event = revocation.revoke_event(error=verdict.error, reason=verdict.message, keep_auth_hash=keep)
    _on_commit(instance, instance.pk, event)


def user_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    verdict = revocation.DELETED
    _on_commit(instance, instance.pk, revocation.revoke_event(error=verdict.error, reason=verdict.message))


def session_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    """A database session's row deleted (logout, ``cycle_key``, an admin, ``clearsessions``).

    An expired row is skipped: its sockets closed when it expired, and ``clearsessions`` deletes
    them by the thousand.
    """
    if instance.expire_date <= timezone.now():
        return
    try:
        user_id = instance.get_decoded().get(SESSION_KEY)
    except Exception:  # get_decoded() returns {} for bad data; a custom model may do worse
        logger.exception("wsgateway: could not read the deleted session %s...", instance.session_key[:4])
        return
    if user_id is None:
        return
    verdict = revocation.SESSION_ENDED
    event = revocation.revoke_event(
        error=verdict.error, reason=verdict.message, session_key=instance.session_key
    )
    _on_commit(instance, user_id, event)


def _on_commit(instance: Any, user_id: Any, event: dict[str, Any]) -> None:
    using = router.db_for_write(type(instance), instance=instance)
    transaction.on_commit(partial(_send, user_id, event), using=using)


def _send(user_id: Any, event: dict[str, Any]) -> None:
    try:
        revocation.send_revoke_event(user_id, event)
    except Exception as exc:
        logger.warning(
            "wsgateway: could not close the sockets of user %s (%s: %s); their re-check will",
            user_id,
            event["error"],
            exc,
        )
