"""The digest: one e-mail per user, daily or weekly, of what stayed unread since the last one.

A user chooses it (``NotificationPreferences.digest``); ``manage.py wsgateway_digest`` (for cron) or the
task :data:`send_digests` (for a site that schedules tasks) sends every due one. A user is due when their
last digest is a period old, less :data:`SLACK`: a daily cron whose run took a few seconds longer
yesterday still finds its users due today. Run twice in a period, the second run finds nobody due:
each user is claimed by a conditional UPDATE of ``digest_sent_at`` (from the value read to now) in the
transaction that sends, so two runs at once send one digest, and a failed send rolls the claim back.

What a digest lists: the user's unread notifications created since the last digest (the first one: in
the last period), as the inbox's Unread tab would show them (not archived, deleted, expired or
snoozed), newest first, at most :data:`MAX_ITEMS` and "and K more". A user with nothing unread is sent
nothing, and is not due again until the next period.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from .. import metrics
from ..models import Digest, Notification, NotificationPreferences
from ..tasks import define
from . import emails

logger = logging.getLogger("wsgateway")

PERIODS = {Digest.DAILY: timedelta(days=1), Digest.WEEKLY: timedelta(days=7)}
#: How much earlier than a full period a user is due again (a cron's run drifts by seconds or minutes).
SLACK = timedelta(hours=1)
#: Most notifications one digest lists; the rest are counted.
MAX_ITEMS = 20
#: Users read per query.
USERS_PER_QUERY = 100


def _due(now: datetime) -> Q:
    due = Q()
    for choice, period in PERIODS.items():
        due |= Q(digest=choice) & (
            Q(digest_sent_at__isnull=True) | Q(digest_sent_at__lte=now - period + SLACK)
        )
    return due


def unread_since(user_id: Any, since: datetime, now: datetime) -> Any:
    """The user's notifications that a digest tells of: unread and in the inbox, created after ``since``."""
    return (
        Notification.objects.filter(
            recipient_id=user_id,
            is_read=False,
            archived_at__isnull=True,
            deleted_at__isnull=True,
            created__gt=since,
        )
        .exclude(expires_at__lte=now)
        .exclude(snoozed_until__gt=now)
        .order_by("-id")
    )


def send_one(prefs: NotificationPreferences, now: datetime) -> bool:
    """Claim and send ``prefs``' user's digest; False if another run claimed it, or nothing was unread."""
    since = prefs.digest_sent_at or now - PERIODS[Digest(prefs.digest)]
    user = get_user_model()._default_manager.filter(pk=prefs.user_id).first()
    try:
        with transaction.atomic():
            claimed = NotificationPreferences.objects.filter(
                pk=prefs.pk, digest=prefs.digest, digest_sent_at=prefs.digest_sent_at
            ).update(digest_sent_at=now)
            unread = unread_since(prefs.user_id, since, now)
            rows = list(unread[:MAX_ITEMS])
            if not claimed or not rows or user is None or not emails.address(user):
                return False
            total = len(rows) if len(rows) < MAX_ITEMS else unread.count()
            emails.digest_email(user, rows, total).send()
    except Exception as error:  # SMTP refused or unreachable: the next run tries again
        logger.error("wsgateway: the digest of user %s failed: %r", prefs.user_id, error)
        metrics.increment(metrics.DIGESTS_FAILED)
        return False
    logger.info("wsgateway: digest of %d notification(s) sent to user %s", total, prefs.user_id)
    metrics.increment(metrics.DIGESTS_SENT)
    return True


def send_due(now: datetime | None = None) -> int:
    """Send every due user's digest; how many were sent."""
    now = now or timezone.now()
    sent = 0
    last: Any = None
    while True:
        # By primary key, a page at a time: a claimed user drops out of the query, so no offset.
        page = NotificationPreferences.objects.filter(_due(now)).order_by("pk")
        if last is not None:
            page = page.filter(pk__gt=last)
        chunk = list(page[:USERS_PER_QUERY])
        if not chunk:
            return sent
        sent += sum(send_one(prefs, now) for prefs in chunk)
        last = chunk[-1].pk


@define
def send_digests() -> int:
    """The task: :func:`send_due`."""
    return send_due()
