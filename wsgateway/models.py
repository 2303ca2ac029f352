"""The two stored things: notifications and clipboard entries."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from itertools import islice
from typing import Any

from django.conf import settings
from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.contrib.messages import constants as message_levels
from django.contrib.messages.utils import get_level_tags
from django.db import connections, models, router, transaction
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

CATEGORY_CHOICES = [
    (message_levels.DEBUG, "debug"),
    (message_levels.INFO, "info"),
    (message_levels.SUCCESS, "success"),
    (message_levels.WARNING, "warning"),
    (message_levels.ERROR, "error"),
]


def category_tag(level: int) -> str:
    """The tag a message level is sent as; honours the MESSAGE_TAGS setting."""
    return get_level_tags().get(level, str(level))


def category_level(category: int | str) -> int:
    """Accept a level (``25``) or a tag (``"success"``) and return the level."""
    if isinstance(category, bool):
        raise ValueError(f"Unknown notification category: {category!r}")
    if isinstance(category, int):
        if category in get_level_tags():
            return category
    else:
        for level, tag in get_level_tags().items():
            if tag == category:
                return level
    raise ValueError(f"Unknown notification category: {category!r}")


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


class Change(models.IntegerChoices):
    """What a notification's latest change was (``Notification.change``), and its name on the wire.

    Each change takes the next number of the recipient's sequence (``Notification.version``), so a
    client that syncs from its cursor is told of it once, in order (see wsgateway.notifications.changes).
    """

    CREATED = 0, "created"
    READ = 1, "read"
    UNREAD = 2, "unread"
    SEEN = 3, "seen"
    ARCHIVED = 4, "archived"
    UNARCHIVED = 5, "unarchived"
    DELETED = 6, "deleted"
    SNOOZED = 7, "snoozed"
    UNSNOOZED = 8, "unsnoozed"
    #: Another notification of its group arrived while it was unread: its text, count and actors
    #: are the group's latest (wsgateway.notifications.grouping).
    GROUPED = 9, "grouped"


class NotificationQuerySet(models.QuerySet["Notification"]):
    def for_user(self, user: Any) -> NotificationQuerySet:
        return self.filter(recipient=user)

    def unread(self) -> NotificationQuerySet:
        return self.filter(is_read=False)

    def bulk_create(self, objs: Iterable[Notification], *args: Any, **kwargs: Any) -> list[Notification]:
        """Number the new rows (``seq``) in the same transaction as the insert."""
        objs = list(objs)
        with transaction.atomic(using=self.db, savepoint=False):
            number_notifications(objs, self.db)
            return super().bulk_create(objs, *args, **kwargs)


class Notification(models.Model):
    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="wsgateway_notifications"
    )
    category = models.PositiveSmallIntegerField(choices=CATEGORY_CHOICES, default=message_levels.INFO)
    message = models.TextField()
    data = models.JSONField(default=dict, blank=True)
    actions = models.JSONField(default=list, blank=True, help_text=_('A list of {"label", "url"} objects.'))
    is_read = models.BooleanField(default=False)
    created = models.DateTimeField(auto_now_add=True)
    changed = models.DateTimeField(auto_now=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    #: The recipient's number of this notification's creation (see :class:`NotificationSequence`):
    #: its place in the inbox's order. Set when the row is inserted, never changed.
    seq = models.PositiveBigIntegerField(editable=False)
    #: The recipient's number of this notification's latest change: ``seq`` until it changes, then a
    #: new number of the same sequence for each change (read, archived, ...). What a client's cursor
    #: follows: "every change after N" is one indexed range of this column.
    version = models.PositiveBigIntegerField(editable=False)
    #: What that latest change was.
    change = models.PositiveSmallIntegerField(choices=Change.choices, default=Change.CREATED, editable=False)
    #: When the recipient's inbox first showed it (the badge may count the unseen).
    seen_at = models.DateTimeField(null=True, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)
    #: Deleted by the recipient: a tombstone, kept (hidden) so that a tab offline at the time is told
    #: of the deletion, until pruning removes it (NOTIFICATIONS_KEEP_DELETED).
    deleted_at = models.DateTimeField(null=True, blank=True)
    #: Hidden until then; at that time it comes back as new (wsgateway.notifications.snoozing).
    snoozed_until = models.DateTimeField(null=True, blank=True)
    #: Hidden after then, and pruned.
    expires_at = models.DateTimeField(null=True, blank=True)
    #: What it is about: a name of ``WSGATEWAY["NOTIFICATION_KINDS"]``, or "" (no kind: in-app only).
    kind = models.CharField(max_length=50, blank=True, default="")
    #: While this row is unread, notify() with the same group updates it instead of adding a row.
    group = models.CharField(max_length=100, blank=True, default="")
    #: How many notifications of its group this row stands for.
    count = models.PositiveIntegerField(default=1)
    #: The group's latest senders' names, newest first (a few: the inbox shows "Alice and 4 others").
    actors = models.JSONField(default=list, blank=True)
    #: When its e-mail is due if it is still unread (wsgateway.notifications.fallback); None: no e-mail.
    email_due = models.DateTimeField(null=True, blank=True)
    #: When its e-mail was sent: at most once, whatever the workers and retries.
    emailed_at = models.DateTimeField(null=True, blank=True)

    objects = NotificationQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["recipient", "seq"], name="wsgw_notif_recipient_seq"),
            # Also the index of "everything after cursor N" (wsgateway.notifications.history).
            models.UniqueConstraint(fields=["recipient", "version"], name="wsgw_notif_recipient_version"),
        ]
        indexes = [
            # The snooze clock's one query: every row due now, of all users.
            models.Index(
                fields=["snoozed_until"],
                name="wsgw_notif_snoozed_idx",
                condition=Q(snoozed_until__isnull=False),
            ),
            models.Index(
                fields=["recipient", "-id"], name="wsgw_notif_unread_idx", condition=Q(is_read=False)
            ),
            models.Index(fields=["recipient", "-id"], name="wsgw_notif_recipient_idx"),
            # notify(group=...)'s one lookup: the user's unread row of that group.
            models.Index(
                fields=["recipient", "group"],
                name="wsgw_notif_group_idx",
                condition=Q(is_read=False) & ~Q(group=""),
            ),
        ]

    def __str__(self) -> str:
        return self.message[:80]

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding or self.seq is not None:
            super().save(*args, **kwargs)
            return
        using = kwargs.get("using") or router.db_for_write(Notification, instance=self)
        # One transaction for the number and the insert: the number's lock lasts until it commits.
        with transaction.atomic(using=using, savepoint=False):
            number_notifications([self], using)
            super().save(*args, **kwargs)

    @property
    def category_tag(self) -> str:
        return category_tag(self.category)

    def state_wire(self) -> dict[str, Any]:
        """The notification's states as the client sees them, in a full item and in a change alike."""
        return {
            "version": self.version,
            "change": Change(self.change).label,
            "seen": self.seen_at is not None or self.is_read,  # what was read was shown
            "archived": self.archived_at is not None,
            "deleted": self.deleted_at is not None,
            "snoozed_until": _iso(self.snoozed_until),
            "expires_at": _iso(self.expires_at),
        }

    def to_wire(self) -> dict[str, Any]:
        """The notification as the client sees it."""
        return {
            "id": self.pk,
            "seq": self.seq,
            "category": self.category_tag,
            "label": self.message,
            "is_read": self.is_read,
            **self.state_wire(),
            "kind": self.kind,
            "group": self.group,
            "count": self.count,
            "actors": self.actors,
            "data": self.data,
            "actions": self.actions,
            "metainfo": {
                "createdDatetime": _iso(self.created),
                "changedDatetime": _iso(self.changed),
                "createdUser": self.created_by.get_username() if self.created_by else None,
                "changedUser": self.changed_by.get_username() if self.changed_by else None,
            },
        }


# -- each user's numbering ---------------------------------------------------------------

#: Users per upsert statement.
SEQ_CHUNK = 500


class NotificationSequenceQuerySet(models.QuerySet["NotificationSequence"]):
    def reserve(self, counts: dict[Any, int]) -> dict[Any, int]:
        """Add ``counts[user_id]`` to each user's last number and return the new last numbers.

        Users are locked in ascending order, so two transactions that number overlapping sets of
        users never wait for each other in a circle.
        """
        user_ids = sorted(counts)
        connection = connections[self.db]
        if connection.vendor not in ("postgresql", "sqlite"):
            return self._reserve_with_orm(counts, user_ids)
        qn = connection.ops.quote_name
        meta = NotificationSequence._meta
        table, user, last = qn(meta.db_table), qn(meta.pk.attname), qn(meta.get_field("last").attname)
        result: dict[Any, int] = {}
        iterator = iter(user_ids)
        with connection.cursor() as cursor:
            while chunk := list(islice(iterator, SEQ_CHUNK)):
                cursor.execute(
                    f"INSERT INTO {table} ({user}, {last}) VALUES {', '.join(['(%s, %s)'] * len(chunk))} "
                    f"ON CONFLICT ({user}) DO UPDATE SET {last} = {table}.{last} + excluded.{last} "
                    f"RETURNING {user}, {last}",
                    [value for user_id in chunk for value in (user_id, counts[user_id])],
                )
                result.update(cursor.fetchall())
        return result

    def _reserve_with_orm(self, counts: dict[Any, int], user_ids: list[Any]) -> dict[Any, int]:
        # Any other database: three statements instead of one, the row lock by SELECT ... FOR UPDATE.
        self.bulk_create(
            [NotificationSequence(user_id=user_id) for user_id in user_ids], ignore_conflicts=True
        )
        rows = list(self.select_for_update().filter(user_id__in=user_ids).order_by("user_id"))
        for row in rows:
            row.last += counts[row.user_id]
        self.bulk_update(rows, ["last"])
        return {row.user_id: row.last for row in rows}


class NotificationSequence(models.Model):
    """The last ``Notification.seq`` given to a user; its row is the user's numbering lock.

    Each user's notifications are numbered 1, 2, 3, ...: ``Notification.seq``, the client's cursor.
    Why not the primary key: ids drawn from one sequence by concurrent transactions can commit out of
    order (101 becomes visible after 102), so a client that has seen 102 and asks for "after 102"
    would never get 101. A per-user number taken under a per-user lock cannot: the number is taken
    by an upsert of the user's row here (:meth:`NotificationSequenceQuerySet.reserve`), which locks
    that row (PostgreSQL) or the database (SQLite) until the transaction ends, so the next number of
    the same user is taken, inserted and committed after this one. Numbers of a rolled-back
    transaction are given back with it. Rows of different users never wait for each other on
    PostgreSQL.

    The numbers are taken here, with the model, as rows are inserted (:func:`number_notifications`,
    from ``Notification.save`` and ``bulk_create``), so that every way a row is made gets one;
    :func:`wsgateway.notifications.sequence.latest` reads them.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, primary_key=True, on_delete=models.CASCADE, related_name="+"
    )
    last = models.PositiveBigIntegerField(default=0)
    #: The greatest ``Notification.version`` of the user's rows that pruning removed: a client whose
    #: cursor is below it may have missed a change that is gone, and is told to reload (``reset``).
    #: A default in the database too: reserve() inserts the row in SQL of its own, naming ``last`` only.
    pruned = models.PositiveBigIntegerField(default=0, db_default=0)

    objects = NotificationSequenceQuerySet.as_manager()

    def __str__(self) -> str:
        return f"{self.user_id}: {self.last}"


def number_notifications(notifications: Iterable[Notification], using: str) -> None:
    """Give each notification without a ``seq`` the next numbers of its recipient, in order.

    Must run inside the transaction that inserts them (it raises otherwise): the lock it takes is
    what keeps the numbers in commit order.
    """
    pending = [n for n in notifications if n.seq is None]
    if not pending:
        return
    if not transaction.get_connection(using).in_atomic_block:
        raise RuntimeError("wsgateway: notification numbers are taken inside the inserting transaction")
    counts = Counter(n.recipient_id for n in pending)
    last = NotificationSequence.objects.using(using).reserve(counts)
    first = {user_id: last[user_id] - count + 1 for user_id, count in counts.items()}
    for notification in pending:
        # Its creation is its first change: the number is both its place and its version.
        notification.seq = notification.version = first[notification.recipient_id]
        first[notification.recipient_id] += 1


class Digest(models.TextChoices):
    """How often a user is sent one e-mail of what stayed unread (wsgateway.notifications.digests)."""

    OFF = "off", _("never")
    DAILY = "daily", _("daily")
    WEEKLY = "weekly", _("weekly")


class NotificationPreferences(models.Model):
    """One user's choices of which kinds reach them on which channel, and their digest.

    Only what the user chose is stored (``choices``: kind name to channel to on/off); a kind or channel
    not in it follows the kind's default, so a kind a site adds or changes needs no migration of rows.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, primary_key=True, on_delete=models.CASCADE, related_name="+"
    )
    choices = models.JSONField(default=dict, blank=True)
    digest = models.CharField(max_length=10, choices=Digest.choices, default=Digest.OFF)
    #: The newest notification a digest told of was created before this (None: no digest yet).
    digest_sent_at = models.DateTimeField(null=True, blank=True)
    changed = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("notification preferences")
        verbose_name_plural = _("notification preferences")

    def __str__(self) -> str:
        return f"{self.user_id}"


class ClipboardEntry(models.Model):
    """Raw JSON data, or a reference to a model instance, on one user's clipboard."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="wsgateway_clipboard"
    )
    data = models.JSONField(null=True, blank=True)
    content_type = models.ForeignKey(ContentType, null=True, blank=True, on_delete=models.CASCADE)
    object_id = models.CharField(max_length=255, blank=True, default="")
    content_object = GenericForeignKey("content_type", "object_id")
    label = models.CharField(max_length=255, blank=True, default="")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "clipboard entries"
        constraints = [
            models.CheckConstraint(
                condition=Q(content_type__isnull=True) | ~Q(object_id=""),
                name="wsgw_clip_reference_has_pk",
            ),
        ]

    def __str__(self) -> str:
        return self.label or f"Clipboard entry {self.pk}"

    @property
    def is_reference(self) -> bool:
        return self.content_type_id is not None

    def to_wire(self) -> dict[str, Any]:
        """The entry as the client sees it."""
        entry: dict[str, Any] = {"id": self.pk}
        if self.content_type_id is not None:
            ct = ContentType.objects.get_for_id(self.content_type_id)
            entry.update(
                model=f"{ct.app_label}.{ct.model}",
                pk=wire_pk(self.object_id),
                label=self.label,
            )
        else:
            entry["data"] = self.data
        entry["created"] = _iso(self.created)
        return entry


def wire_pk(object_id: str) -> int | str:
    # Integer keys go back as integers, the way the client sent them.
    return int(object_id) if object_id.isdigit() else object_id


class Maintenance(models.Model):
    """The site's maintenance, while it is on: one row, or none (see wsgateway.maintenance).

    In the database so that every process and worker sees the same state, and a restart keeps it.
    """

    #: Always :data:`MAINTENANCE_ROW`: there is one maintenance at a time.
    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    reason = models.TextField(
        blank=True, help_text=_("What a refused client is told; empty: a default message.")
    )
    retry_after = models.PositiveIntegerField(
        help_text=_("Seconds a refused client waits before it reconnects.")
    )
    since = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("maintenance")

    def __str__(self) -> str:
        return self.reason[:80]


#: The primary key of the one :class:`Maintenance` row.
MAINTENANCE_ROW = 1


class OnlineUser(models.Model):
    """No table: the admin's page of who is online (wsgateway.admin_online), read from presence.

    A model so that the page has the admin's own place in the index, under the app, and permissions a
    site grants as any other: ``view_onlineuser`` to see the page, ``close_sockets`` to close a user's
    sockets from it.
    """

    class Meta:
        managed = False
        default_permissions = ("view",)
        permissions = [("close_sockets", _("Can close a user's sockets"))]
        verbose_name = _("online user")
        verbose_name_plural = _("online users")

    def __str__(self) -> str:  # never shown: there are no rows
        return str(self.pk)
