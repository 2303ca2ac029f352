"""The states of a notification (seen, archived, deleted, snoozed, expiring) and the number of its
latest change (``version``), which a client's cursor follows.

Existing rows: each one's creation is its only change so far, so its ``version`` is its ``seq`` (both
of one sequence: no number is taken twice); one already read was seen (``seen_at`` its last change).
"""

from typing import Any

from django.conf import settings
from django.db import migrations, models
from django.db.models import F

#: Rows per UPDATE, by primary key range: a big table is never locked by one statement.
BATCH = 5000


def version_existing(apps: Any, schema_editor: Any) -> None:
    Notification = apps.get_model("wsgateway", "Notification")
    rows = Notification.objects.using(schema_editor.connection.alias)
    top = rows.aggregate(top=models.Max("id"))["top"] or 0
    for start in range(0, top + 1, BATCH):
        batch = rows.filter(id__gte=start, id__lt=start + BATCH)
        batch.update(version=F("seq"))
        batch.filter(is_read=True).update(seen_at=F("changed"))


class Migration(migrations.Migration):
    dependencies = [
        ("wsgateway", "0003_maintenance"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="notification",
            name="archived_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="notification",
            name="change",
            field=models.PositiveSmallIntegerField(
                choices=[
                    (0, "created"),
                    (1, "read"),
                    (2, "unread"),
                    (3, "seen"),
                    (4, "archived"),
                    (5, "unarchived"),
                    (6, "deleted"),
                    (7, "snoozed"),
                    (8, "unsnoozed"),
                ],
                default=0,
                editable=False,
            ),
        ),
        migrations.AddField(
            model_name="notification",
            name="deleted_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="notification",
            name="expires_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="notification",
            name="seen_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="notification",
            name="snoozed_until",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="notification",
            name="version",
            field=models.PositiveBigIntegerField(editable=False, null=True),
        ),
        migrations.AddField(
            model_name="notificationsequence",
            name="pruned",
            field=models.PositiveBigIntegerField(db_default=0, default=0),
        ),
        migrations.RunPython(version_existing, migrations.RunPython.noop, elidable=False),
        migrations.AlterField(
            model_name="notification",
            name="version",
            field=models.PositiveBigIntegerField(editable=False),
        ),
        migrations.AddIndex(
            model_name="notification",
            index=models.Index(
                condition=models.Q(("snoozed_until__isnull", False)),
                fields=["snoozed_until"],
                name="wsgw_notif_snoozed_idx",
            ),
        ),
        migrations.AddConstraint(
            model_name="notification",
            constraint=models.UniqueConstraint(
                fields=("recipient", "version"), name="wsgw_notif_recipient_version"
            ),
        ),
    ]
