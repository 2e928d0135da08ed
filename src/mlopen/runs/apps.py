from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "mlopen.runs"
    label = "runs"

    def ready(self) -> None:
        from django.conf import settings

        from mlopen.runs import signals  # noqa: F401  (connects the worker life-cycle hooks)
        from mlopen_runner import sandbox

        # Every Django process that may start pipeline code (a worker, the web server reading a
        # control file's forms at upload, a management command) runs it under MLOPEN_SANDBOX.
        sandbox.configure(settings.MLOPEN_SANDBOX)
