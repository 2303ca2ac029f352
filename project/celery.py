"""The example project's Celery app: ``celery -A project worker``.

Celery's Django integration, as its documentation gives it: settings prefixed ``CELERY_`` configure
the app, and each installed app's ``tasks`` module is found by ``autodiscover_tasks``.
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

app = Celery("project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
