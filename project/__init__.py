# Loaded with Django, so that @shared_task (project/demo/tasks.py) binds to this app in every
# process, the producers (views, manage.py) as well as the worker.
from .celery import app as celery_app

__all__ = ["celery_app"]
