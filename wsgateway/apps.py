from __future__ import annotations

from django.apps import AppConfig


class WsGatewayConfig(AppConfig):
    name = "wsgateway"
    verbose_name = "WebSocket gateway"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.apps import apps
        from django.contrib.auth import get_user_model
        from django.contrib.auth.signals import user_logged_out
        from django.core.signals import setting_changed
        from django.db.models.signals import post_delete, post_save

        from . import checks, receivers
        from .conf import reset_caches
        from .models import Notification
        from .notifications.delivery import notification_saved
        from .services import presence as presence_channel

        checks.register()
        presence_channel.connect_receivers()  # green dots, where the site serves them
        setting_changed.connect(reset_caches, dispatch_uid="wsgateway.conf.reset_caches")
        # After reset_caches: it reads the services' classes through the cache that one empties.
        setting_changed.connect(
            presence_channel.follow_settings, dispatch_uid="wsgateway.presence_channel.follow_settings"
        )
        post_save.connect(
            notification_saved, sender=Notification, dispatch_uid="wsgateway.notification_saved"
        )
        user_logged_out.connect(receivers.user_logged_out, dispatch_uid="wsgateway.user_logged_out")
        # A login that ends closes its sockets (wsgateway.revocation).
        user_model = get_user_model()
        post_save.connect(receivers.user_saved, sender=user_model, dispatch_uid="wsgateway.user_saved")
        post_delete.connect(receivers.user_deleted, sender=user_model, dispatch_uid="wsgateway.user_deleted")
        if apps.is_installed("django.contrib.sessions"):
            from django.contrib.sessions.models import Session

            post_delete.connect(
                receivers.session_deleted, sender=Session, dispatch_uid="wsgateway.session_deleted"
            )
