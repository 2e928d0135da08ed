from django.apps import AppConfig
from django.conf import settings

from mlopen_runner import sandbox


class RunsConfig(AppConfig):
    name = "mlopen.runs"
    label = "runs"

    def ready(self) -> None:
        from mlopen.runs import signals  # noqa: F401, PLC0415 - ready(): connects the worker hooks once models load

        # Every Django process that may start pipeline code (a worker, the web server reading a
        # control file's forms at upload, a management command) runs it under MLOPEN_SANDBOX.
        sandbox.configure(settings.MLOPEN_SANDBOX)
