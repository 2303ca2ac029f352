from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management.base import BaseCommand

from project.demo.models import Document

DEMO_USERS = [("alice", "alice-password"), ("bob", "bob-password")]
DOCUMENTS = ["Quarterly report", "Roadmap 2027", "Onboarding checklist", "Incident review"]


class Command(BaseCommand):
    help = "Create (or reset) the demo users and a few documents."

    def handle(self, *args: Any, **options: Any) -> None:
        view = Permission.objects.get(codename="view_document", content_type__app_label="demo")
        for username, password in DEMO_USERS:
            user, _ = get_user_model().objects.get_or_create(username=username)
            user.set_password(password)
            user.is_staff = user.is_superuser = username == "alice"
            user.save()
            user.user_permissions.add(view)
            self.stdout.write(f"demo user: {username} / {password}")
        for title in DOCUMENTS:
            Document.objects.get_or_create(title=title)
