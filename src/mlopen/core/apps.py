from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "mlopen.core"
    label = "core"
    verbose_name = "mlopen core"

    def ready(self) -> None:
        from mlopen.core import checks  # noqa: F401  (registers system checks)
