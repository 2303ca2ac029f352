"""Number each user's notifications 1, 2, 3, ... (Notification.seq), oldest first."""

from typing import Any

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

BATCH = 1000


def number_existing(apps: Any, schema_editor: Any) -> None:
    Notification = apps.get_model("wsgateway", "Notification")
    NotificationSequence = apps.get_model("wsgateway", "NotificationSequence")
    db = schema_editor.connection.alias
    last: dict[Any, int] = {}
    batch: list[Any] = []
    rows = Notification.objects.using(db).order_by("recipient_id", "id").only("id", "recipient_id")
    for row in rows.iterator(chunk_size=BATCH):
        row.seq = last[row.recipient_id] = last.get(row.recipient_id, 0) + 1
        batch.append(row)
        if len(batch) >= BATCH:
            Notification.objects.using(db).bulk_update(batch, ["seq"])
            batch = []
    Notification.objects.using(db).bulk_update(batch, ["seq"])
    NotificationSequence.objects.using(db).bulk_create(
        [NotificationSequence(user_id=user_id, last=value) for user_id, value in last.items()],
        batch_size=BATCH,
    )


class Migration(migrations.Migration):
    dependencies = [
        ("wsgateway", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="NotificationSequence",
            fields=[
                (
                    "user",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="+",
                        serialize=False,
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                ("last", models.PositiveBigIntegerField(default=0)),
            ],
        ),
        migrations.AddField(
            model_name="notification",
            name="seq",
            field=models.PositiveBigIntegerField(editable=False, null=True),
        ),
        migrations.RunPython(number_existing, migrations.RunPython.noop, elidable=False),
        migrations.AlterField(
            model_name="notification",
            name="seq",
            field=models.PositiveBigIntegerField(editable=False),
        ),
        migrations.AddConstraint(
            model_name="notification",
            constraint=models.UniqueConstraint(fields=("recipient", "seq"), name="wsgw_notif_recipient_seq"),
        ),
    ]
