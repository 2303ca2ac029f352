from django.db import models


class Document(models.Model):
    """Something to put references to on the clipboard."""

    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)

    class Meta:
        ordering = ["title"]

    def __str__(self) -> str:
        return self.title
