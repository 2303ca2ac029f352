from __future__ import annotations

from django.urls import path

from . import views

app_name = "wsgateway"

urlpatterns = [
    path("token/", views.token, name="token"),
]
