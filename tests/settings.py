"""Settings for the in-process tests: the example project, on in-memory SQLite and the in-process layer."""

from importlib.util import find_spec

from project.settings import *  # noqa: F403

DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
CHANNEL_LAYERS = {"default": {"BACKEND": "wsgateway.layers.InProcessChannelLayer"}}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
WSGATEWAY = {}
# wsgateway's defaults serve no messages channel (W013 with the demo's middleware): tests/test_messages.py
# lists the middleware where it tests it.
MIDDLEWARE = [name for name in MIDDLEWARE if name != "wsgateway.messages.LiveMessagesMiddleware"]  # noqa: F405
# Tasks are kept, not run: a test runs one by calling it (tests/test_fallback.py).
_TASKS_PACKAGE = "django.tasks" if find_spec("django.tasks") else "django_tasks"
TASKS = {"default": {"BACKEND": f"{_TASKS_PACKAGE}.backends.dummy.DummyBackend"}}
