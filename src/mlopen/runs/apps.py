from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "mlopen.runs"
    label = "runs"

    def ready(self) -> None:
        from mlopen.runs import signals  # noqa: F401  (connects the worker life-cycle hooks)
