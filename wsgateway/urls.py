from __future__ import annotations

from django.urls import path

from . import metrics_view, preferences_views, unsubscribe, views

app_name = "wsgateway"

urlpatterns = [
    path("token/", views.token, name="token"),
    # The Prometheus scrape: staff, or WSGATEWAY["METRICS_TOKEN"] as a bearer token.
    path("metrics", metrics_view.view, name="metrics"),
    path("preferences/", preferences_views.preferences_api, name="preferences"),
    path("preferences/page/", preferences_views.preferences_page, name="preferences-page"),
    # The one-click unsubscribe of an e-mail (RFC 8058): a signed value, no login.
    path("unsubscribe/<str:value>/", unsubscribe.view, name="unsubscribe"),
]
