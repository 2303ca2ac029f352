from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.messages.utils import get_level_tags
from django.core.management.base import BaseCommand, CommandError, CommandParser

from wsgateway.groups import layer_is_reachable, layer_reaches_other_processes
from wsgateway.notifications import notify

#: The layer the hint names: wsgateway's own Redis layer, which the docs recommend over channels_redis'
#: (docs/channel-layers.md, "Choosing the Redis layer").
REDIS_LAYER = "wsgateway.layers.redis.RedisChannelLayer"


class Command(BaseCommand):
    help = "Send a notification to one or more users, by username."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("usernames", nargs="+", metavar="username")
        parser.add_argument("message")
        # The tags in force (MESSAGE_TAGS may rename them), not the built-in names.
        parser.add_argument("--category", default="info", choices=sorted(set(get_level_tags().values())))
        parser.add_argument(
            "--kind", default="", help="One of WSGATEWAY['NOTIFICATION_KINDS'] (docs/away.md)."
        )
        parser.add_argument(
            "--group", default="", help="Update the users' unread notification of this group."
        )

    def handle(
        self,
        *args: Any,
        usernames: list[str],
        message: str,
        category: str,
        kind: str,
        group: str,
        **options: Any,
    ) -> None:
        user_model = get_user_model()
        field = user_model.USERNAME_FIELD
        users = {
            getattr(u, field): u for u in user_model._default_manager.filter(**{f"{field}__in": usernames})
        }
        if missing := [name for name in usernames if name not in users]:
            raise CommandError(f"No such user: {', '.join(missing)}. Nothing was sent.")
        try:
            sent = notify(
                [users[name] for name in dict.fromkeys(usernames)],
                message,
                category=category,
                kind=kind,
                group=group,
            )
        except ValueError as exc:  # an unknown kind, a group too long: nothing was stored
            raise CommandError(f"{exc} Nothing was sent.") from None
        self.stdout.write(f"Stored {len(sent)} notification(s).")
        if layer_reaches_other_processes() and layer_is_reachable():
            self.stdout.write(self.style.SUCCESS("Pushed live through the channel layer."))
        elif layer_reaches_other_processes():
            self.stdout.write(
                self.style.WARNING(
                    "Not delivered live: the channel layer is unreachable. Connected sockets are "
                    "resynced when it returns, and others see it when they next connect."
                )
            )
        else:
            self.stdout.write(
                self.style.WARNING(
                    "Not delivered live: the in-process channel layer cannot reach sockets served by "
                    "another process. Connected users will see it when they next connect. For live "
                    f"delivery, set CHANNEL_LAYERS to {REDIS_LAYER} (the redis extra)."
                )
            )
