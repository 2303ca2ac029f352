from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from wsgateway.bounds import MAX_PRUNE_BATCH
from wsgateway.notifications.pruning import REASONS, prune


class Command(BaseCommand):
    help = (
        "Remove expired notifications, and read, archived and deleted ones past their age "
        "(WSGATEWAY['NOTIFICATIONS_KEEP_READ'], ['NOTIFICATIONS_KEEP_ARCHIVED'], "
        "['NOTIFICATIONS_KEEP_DELETED']), in short transactions over ranges of ids; bring back "
        "snoozed ones that are due. Says how many of each it removed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--batch",
            type=int,
            default=None,
            metavar="IDS",
            help=f"Ids per statement, 1 to {MAX_PRUNE_BATCH} "
            "(default: WSGATEWAY['NOTIFICATIONS_PRUNE_BATCH']).",
        )

    def handle(self, *args: Any, batch: int | None = None, **options: Any) -> None:
        if batch is not None and not 1 <= batch <= MAX_PRUNE_BATCH:
            raise CommandError(f"--batch must be from 1 to {MAX_PRUNE_BATCH}, not {batch}.")
        started = time.monotonic()
        pruned = prune(batch=batch)
        details = ", ".join(f"{pruned.counts[reason]} {reason}" for reason in REASONS)
        self.stdout.write(
            f"Removed {pruned.total} notification(s): {details}; "
            f"{pruned.ranges} range(s) of ids in {time.monotonic() - started:.1f} s."
        )
