from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.staticfiles.urls import staticfiles_urlpatterns
from django.urls import include, path

from project.demo import views

urlpatterns = [
    path("", views.home, name="home"),
    path("notify-me/", views.notify_me, name="notify-me"),
    path("ask-tabs/", views.ask_tabs, name="ask-tabs"),
    path("message-me/", views.message_me, name="message-me"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/password_change/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path(
        "accounts/password_change/done/",
        auth_views.PasswordChangeDoneView.as_view(),
        name="password_change_done",
    ),
    path("wsgateway/", include("wsgateway.urls")),
    path("admin/", admin.site.urls),
]

if settings.SIMPLEJWT:
    from rest_framework_simplejwt.views import TokenObtainPairView

    urlpatterns.append(path("api/token/", TokenObtainPairView.as_view(), name="token_obtain_pair"))

# No ASGI server (daphne, uvicorn, hypercorn) serves static files itself; with DEBUG on, Django does (the
# demo's CSS and wsgateway.js). tests/test_servers.py fetches wsgateway.js through this.
urlpatterns += staticfiles_urlpatterns()
