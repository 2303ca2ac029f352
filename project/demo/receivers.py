"""Notify from a model's signal: the staff hear when a document is renamed (docs/install.md shows this)."""

from typing import Any

from django.contrib.auth import get_user_model
from django.db.models.signals import post_save
from django.dispatch import receiver

from wsgateway import notify

from .models import Document


@receiver(post_save, sender=Document, dispatch_uid="demo.document_renamed")
def document_renamed(sender: type[Document], instance: Document, created: bool, **kwargs: Any) -> None:
    # Only on a change worth telling: every save sends post_save, also one that changed nothing, and a
    # fixture's loaddata (raw) writes rows as they are. For "a new document", test `created` instead.
    # No loaded title (the row was read without it, or built in memory): no rename can be told.
    if created or kwargs["raw"] or instance.loaded_title in (None, instance.title):
        return
    staff = get_user_model().objects.filter(is_staff=True, is_active=True)
    # Pushed once the save's transaction commits; nothing is sent if it rolls back.
    notify(staff, f"Renamed: {instance.loaded_title} → {instance.title}", data={"document": instance.pk})
    instance.loaded_title = instance.title
