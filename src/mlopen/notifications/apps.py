from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "mlopen.notifications"
    label = "notifications"

    def ready(self) -> None:
        from mlopen.notifications import receivers  # noqa: F401, PLC0415 - ready(): connects to runs' signal once models load
