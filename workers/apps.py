from django.apps import AppConfig


class WorkersConfig(AppConfig):
    name = "workers"
    verbose_name = "Workers"

    def ready(self) -> None:
        # Binds every @shared_task of the lower apps to the project's Celery app.
        from workers import celery  # noqa: F401
