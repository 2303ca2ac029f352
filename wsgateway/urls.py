from __future__ import annotations

from django.urls import path

from . import unsubscribe, views

app_name = "wsgateway"

urlpatterns = [
    path("token/", views.token, name="token"),
    # The one-click unsubscribe of an e-mail (RFC 8058): a signed value, no login.
    path("unsubscribe/<str:value>/", unsubscribe.view, name="unsubscribe"),
]
