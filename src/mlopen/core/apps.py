from django.apps import AppConfig
from django.urls import register_converter


class CoreConfig(AppConfig):
    name = "mlopen.core"
    label = "core"
    verbose_name = "mlopen core"

    def ready(self) -> None:
        # Make our Celery app the current one in every Django process, so tasks are sent to the
        # configured broker (and not to a default app's amqp://localhost).
        from mlopen.celery_app import app  # noqa: F401, PLC0415 - ready(): once the apps are loaded (celery_app imports core)
        from mlopen.core import checks  # noqa: F401, PLC0415 - ready(): registers the system checks
        from mlopen.core.numbers import IdConverter  # noqa: PLC0415 - ready(): before any URL conf is read

        register_converter(IdConverter, "id")
