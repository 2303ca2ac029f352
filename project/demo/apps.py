from django.apps import AppConfig


class DemoConfig(AppConfig):
    name = "project.demo"
    label = "demo"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Connects the receivers (@receiver runs as the module is imported). Here, not in models.py: a
        # receiver that imports other apps' code could otherwise run before their models are loaded.
        from . import receivers  # noqa: F401
