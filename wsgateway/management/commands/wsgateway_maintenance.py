from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _

from wsgateway import maintenance
from wsgateway.bounds import MAX_RETRY_AFTER
from wsgateway.conf import gateway_settings


class Command(BaseCommand):
    help = (
        "Switch wsgateway's maintenance mode on or off, or show it. While it is on, every process "
        "refuses new sockets (code 4503) with the reason and the seconds to wait before reconnecting; "
        "on and off take effect within WSGATEWAY['MAINTENANCE_CHECK_INTERVAL'] seconds."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        commands = parser.add_subparsers(dest="action", required=True, metavar="{on,off,status}")
        on = commands.add_parser("on", help="Refuse new sockets, telling them why and when to come back.")
        on.add_argument(
            "--reason", default="", help="What refused clients read (default: a generic message)."
        )
        on.add_argument(
            "--retry-after",
            type=int,
            default=None,
            metavar="SECONDS",
            help=f"Seconds a refused client waits before reconnecting, 1 to {MAX_RETRY_AFTER} "
            "(default: WSGATEWAY['MAINTENANCE_RETRY_AFTER']).",
        )
        on.add_argument(
            "--close-existing",
            action="store_true",
            help="Also close the sockets already open, on every process, with the same reason and wait.",
        )
        commands.add_parser("off", help="Accept new sockets again.")
        commands.add_parser("status", help="Show whether maintenance is on, and its reason.")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        if action == "on":
            self.handle_on(options["reason"], options["retry_after"], options["close_existing"])
        elif action == "off":
            was_on = maintenance.disable()
            self.stdout.write(_("Maintenance is off.") if was_on else _("Maintenance was off already."))
            self.stdout.write(self.within())
        else:
            self.show(maintenance.current())

    def handle_on(self, reason: str, retry_after: int | None, close_existing: bool) -> None:
        try:
            state = maintenance.enable(reason, retry_after, close_existing=close_existing)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.show(state)
        if close_existing:
            self.stdout.write(_("The sockets already open were told so, and closed, on every process."))
        self.stdout.write(self.within())

    def show(self, state: maintenance.State | None) -> None:
        if state is None:
            self.stdout.write(_("Maintenance is off: sockets are accepted."))
            return
        self.stdout.write(
            _(
                "Maintenance is on since %(since)s: new sockets are refused, told to retry after "
                "%(seconds)d s."
            )
            % {"since": state.since.isoformat(timespec="seconds"), "seconds": state.retry_after}
        )
        self.stdout.write(_("Reason: %(reason)s") % {"reason": state.reason or _("(the default message)")})

    def within(self) -> str:
        return _("Every process sees it within %(seconds)d s (MAINTENANCE_CHECK_INTERVAL).") % {
            "seconds": gateway_settings.MAINTENANCE_CHECK_INTERVAL
        }
