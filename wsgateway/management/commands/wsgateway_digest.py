from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from wsgateway.notifications import digests


class Command(BaseCommand):
    help = (
        "Send the digest of unread notifications to every user whose daily or weekly digest is due. "
        "For cron: run it hourly or daily; a user gets at most one digest per period however often it runs."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        sent = digests.send_due()
        self.stdout.write(f"Sent {sent} digest(s).")
