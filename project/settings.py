"""Settings of the example project.

Without environment variables it needs no service: SQLite and the in-process
channel layer. ``DATABASE_URL`` and ``REDIS_URL`` switch it to PostgreSQL and
channels-redis, the production shape.
"""

from __future__ import annotations

import json
import os
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import dj_database_url
import django

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "wsgateway-example-project-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "wsgateway",
    "project.demo",
]
# Django's Tasks framework: built in from Django 6.0, the django-tasks backport before. Its database
# backend (django-tasks-db) keeps the tasks in the site's database, and `manage.py db_worker` runs them:
# `make run` starts one beside daphne. The e-mails of unread notifications wait there until due.
if find_spec("django.tasks") is None:
    INSTALLED_APPS.append("django_tasks")
INSTALLED_APPS.append("django_tasks_db")
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}

# The demo's e-mails go to the console (`make run`'s terminal); DJANGO_EMAIL_PORT sends them over SMTP
# to 127.0.0.1 instead (tests/test_live_email.py's sink). Django 6.1 names the backend in MAILERS and
# deprecates the EMAIL_* settings (a warning, and an error where MAILERS is set too); 5.2 and 6.0 read those.
_mail_backend = "django.core.mail.backends.console.EmailBackend"
_mail_options: dict[str, Any] = {}
if os.environ.get("DJANGO_EMAIL_PORT"):
    _mail_backend = "django.core.mail.backends.smtp.EmailBackend"
    _mail_options = {"host": "127.0.0.1", "port": int(os.environ["DJANGO_EMAIL_PORT"]), "timeout": 10}
if django.VERSION >= (6, 1):
    MAILERS = {"default": {"BACKEND": _mail_backend, "OPTIONS": _mail_options}}
else:
    EMAIL_BACKEND = _mail_backend
    if _mail_options:
        EMAIL_HOST, EMAIL_PORT = _mail_options["host"], _mail_options["port"]
        EMAIL_TIMEOUT = _mail_options["timeout"]
DEFAULT_FROM_EMAIL = "wsgateway demo <noreply@localhost>"

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
# Django's default message storage (cookie, then session) unless DJANGO_MESSAGE_STORAGE names one:
# tests/test_live_messages.py runs the demo on each.
_MESSAGE_STORAGES = {"cookie": "cookie.CookieStorage", "session": "session.SessionStorage"}
if _storage := os.environ.get("DJANGO_MESSAGE_STORAGE"):
    MESSAGE_STORAGE = f"django.contrib.messages.storage.{_MESSAGE_STORAGES[_storage]}"

ROOT_URLCONF = "project.urls"
ASGI_APPLICATION = "project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "project" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}", conn_max_age=int(os.environ.get("CONN_MAX_AGE", "0"))
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several threads of one daphne write at once; wait for the lock instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20

REDIS_URL = os.environ.get("REDIS_URL")
if REDIS_URL:
    # WSGATEWAY_REDIS_LAYER picks the layer: "wsgateway" (default), "pubsub" or "core" (channels_redis);
    # see "Choosing the Redis layer" in docs/channel-layers.md for the measurements behind the default.
    REDIS_LAYER = os.environ.get("WSGATEWAY_REDIS_LAYER", "wsgateway")
    if REDIS_LAYER == "core":
        CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                "CONFIG": {
                    # An idle socket's receive blocks in BZPOPMIN for 5 s (RedisChannelLayer.brpop_timeout),
                    # and redis-py 8 gives up on any read after its default socket_timeout, also 5 s: the
                    # two raced, and idle receives failed with "Timeout reading from ...". Reads must be
                    # allowed longer than the blocking pop (tests/test_live_redis.py idles for 16 s).
                    "hosts": [{"address": REDIS_URL, "socket_timeout": 15}],
                    # The default capacity (100 per channel) silently drops a burst to one socket.
                    "capacity": 5000,
                },
            }
        }
    elif REDIS_LAYER == "pubsub":
        CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
                "CONFIG": {"hosts": [REDIS_URL]},
            }
        }
    else:
        CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "wsgateway.layers.redis.RedisChannelLayer",
                # Above the default 1000: a burst of pushes to one socket is then never cut short
                # (past capacity a socket catches up from the database; "Past capacity" in
                # docs/channel-layers.md).
                "CONFIG": {
                    # Several Redis nodes: their URLs joined with commas (docs/channel-layers.md).
                    "hosts": REDIS_URL.split(","),
                    # Tests shorten it, to overflow a stalled socket's queue with a few hundred pushes.
                    "capacity": int(os.environ.get("WSGATEWAY_LAYER_CAPACITY", "5000")),
                    # How long the places of a process that died stay taken (tests shorten it).
                    "connection_expiry": float(os.environ.get("WSGATEWAY_CONNECTION_EXPIRY", "60")),
                },
            }
        }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "wsgateway.layers.InProcessChannelLayer"}}

# Celery (project/celery.py reads the CELERY_ settings). The broker is its own Redis database: a
# queue of tasks, not the channel layer's traffic. No result backend: the tasks' results are not read.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/1")
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

WSGATEWAY: dict[str, object] = {
    # Where the e-mails' links lead: the demo as `make run` serves it.
    "EMAIL_SITE_URL": os.environ.get("WSGATEWAY_SITE_URL", "http://127.0.0.1:8000"),
    # What the demo's notifications are about; each user chooses on /wsgateway/preferences/page/
    # (docs/away.md).
    "NOTIFICATION_KINDS": {
        "comment": {
            "label": "Comments on your documents",
            "description": "Someone commented on a document of yours.",
            "email_after": 600,  # seconds: e-mailed if still unread after ten minutes
        },
        "mention": {
            "label": "Mentions",
            "description": "Someone mentioned you.",
            "default": {"email": False},
        },
        "security": {
            "label": "Security alerts",
            "description": "A new sign-in, a changed password.",
            "required": True,
            # E-mailed at once to a user with no open socket: only a layer that counts every process's
            # sockets (wsgateway's Redis layer) can tell a worker that; the in-process one cannot (W010).
            "email_if_offline": bool(os.environ.get("REDIS_URL"))
            and os.environ.get("WSGATEWAY_REDIS_LAYER", "wsgateway") == "wsgateway",
        },
    },
}
if os.environ.get("WSGATEWAY_MAINTENANCE_CHECK_INTERVAL"):
    WSGATEWAY["MAINTENANCE_CHECK_INTERVAL"] = int(os.environ["WSGATEWAY_MAINTENANCE_CHECK_INTERVAL"])
if os.environ.get("WSGATEWAY_MAX_CONNECTIONS_PER_USER"):
    WSGATEWAY["MAX_CONNECTIONS_PER_USER"] = int(os.environ["WSGATEWAY_MAX_CONNECTIONS_PER_USER"])
# The demo's services: wsgateway's defaults, and two opt-in ones. Each is in the hello, so a live test that
# counts its frames says which it serves.
_SERVICES = ["wsgateway.services.notifier.NotifierService", "wsgateway.services.clipboard.ClipboardService"]
# WSGATEWAY_PRESENCE_CHANNEL=1: the presence channel too (green dots, docs/connections.md), and the demo's
# users may all watch one another, as in a small team (wsgateway's default shows a user only themselves).
# Off by default: one more channel in the hello changes what every other live test reads.
if os.environ.get("WSGATEWAY_PRESENCE_CHANNEL") == "1":
    _SERVICES.append("wsgateway.services.presence.PresenceService")
    WSGATEWAY["PRESENCE_VISIBLE"] = "wsgateway.services.presence.all_users"
# Django's messages on the socket (docs/inbox.md): the middleware right after Django's, and the service that
# carries them. On for `make run`; WSGATEWAY_LIVE_MESSAGES=0 leaves them out, as the live tests and the
# benchmark written for wsgateway's default services do (tests/support/servers.py's project_env()).
LIVE_MESSAGES = os.environ.get("WSGATEWAY_LIVE_MESSAGES", "1") == "1"
if LIVE_MESSAGES:
    MIDDLEWARE.insert(
        MIDDLEWARE.index("django.contrib.messages.middleware.MessageMiddleware") + 1,
        "wsgateway.messages.LiveMessagesMiddleware",
    )
    _SERVICES.append("wsgateway.services.messages.MessagesService")
if len(_SERVICES) > 2:
    WSGATEWAY["SERVICES"] = _SERVICES
# WSGATEWAY_EXTRA: more keys, as a JSON object, for a live test that moves a limit.
if os.environ.get("WSGATEWAY_EXTRA"):
    WSGATEWAY.update(json.loads(os.environ["WSGATEWAY_EXTRA"]))
# WSGATEWAY_SIMPLEJWT=1: an app's way in (the simplejwt extra): POST /api/token/ (username, password) gives
# simplejwt's access and refresh tokens, and sockets accept the access token (tests/test_live_simplejwt.py).
SIMPLEJWT = os.environ.get("WSGATEWAY_SIMPLEJWT") == "1"
if SIMPLEJWT:
    WSGATEWAY["AUTHENTICATORS"] = [
        "wsgateway.authenticators.simplejwt.SimpleJWTAuthenticator",
        "wsgateway.auth.BearerTokenAuthenticator",
        "wsgateway.auth.SessionAuthenticator",
    ]

AUTH_PASSWORD_VALIDATORS: list[dict[str, str]] = []
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "project" / "static"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "wsgateway": {"handlers": ["console"], "level": os.environ.get("WSGATEWAY_LOG_LEVEL", "INFO")}
    },
}
