from collections.abc import Collection
from typing import Any, Self

from django.db import models


class Document(models.Model):
    """Something to put references to on the clipboard."""

    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)

    class Meta:
        ordering = ["title"]

    #: The title as it was read from the database, to tell a rename from any other save (receivers.py).
    loaded_title: str | None = None

    def __str__(self) -> str:
        return self.title

    @classmethod
    def from_db(
        cls, db: str | None, field_names: Collection[str], values: Collection[Any], **kwargs: Any
    ) -> Self:
        document = super().from_db(db, field_names, values, **kwargs)  # Django 6.1 adds fetch_mode
        document.loaded_title = document.title if "title" in field_names else None
        return document
