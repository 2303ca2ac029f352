from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from .admin_online import OnlineUserAdmin
from .models import ClipboardEntry, Notification, OnlineUser


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["message", "recipient", "category", "is_read", "created"]
    search_fields = ["message", "recipient__username"]
    raw_id_fields = ["recipient"]
    list_filter = ["category", "kind", "is_read", "created"]
    readonly_fields = ["created", "changed", "created_by", "changed_by", "count", "actors", "emailed_at"]

    def save_model(self, request: HttpRequest, obj: Notification, form: Any, change: bool) -> None:
        if not change:
            obj.created_by = request.user  # type: ignore[assignment]
        obj.changed_by = request.user  # type: ignore[assignment]
        super().save_model(request, obj, form, change)


@admin.register(ClipboardEntry)
class ClipboardEntryAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["__str__", "user", "content_type", "object_id", "created"]
    list_filter = ["content_type"]
    raw_id_fields = ["user"]


admin.site.register(OnlineUser, OnlineUserAdmin)
