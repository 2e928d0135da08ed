from django.apps import AppConfig


class PipelinesConfig(AppConfig):
    name = "mlopen.pipelines"
    label = "pipelines"
