from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management.base import BaseCommand, CommandParser

from project.demo.models import Document

DEMO_USERS = [("alice", "alice-password"), ("bob", "bob-password")]
DOCUMENTS = ["Quarterly report", "Roadmap 2027", "Onboarding checklist", "Incident review"]


class Command(BaseCommand):
    help = "Create the demo users (alice, bob) and a few documents; existing users keep their passwords."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--reset-passwords",
            action="store_true",
            help="Set the demo users' passwords back to the demo's, which signs out their sessions.",
        )

    def handle(self, *args: Any, reset_passwords: bool = False, **options: Any) -> None:
        view = Permission.objects.get(codename="view_document", content_type__app_label="demo")
        for username, password in DEMO_USERS:
            user, created = get_user_model().objects.get_or_create(username=username)
            # `make run` calls this on every start. Setting the password again would change its hash
            # (a new salt), and with it the session auth hash every open tab's session holds: each
            # restart would sign every tab out and close its socket with 4401.
            if created or reset_passwords:
                user.set_password(password)
            user.is_staff = user.is_superuser = username == "alice"
            user.save()
            user.user_permissions.add(view)
            kept = "" if created or reset_passwords else " (an existing user: password left as it is)"
            self.stdout.write(f"demo user: {username} / {password}{kept}")
        for title in DOCUMENTS:
            Document.objects.get_or_create(title=title)
