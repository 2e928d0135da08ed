from django.apps import AppConfig


class DatasetsConfig(AppConfig):
    name = "mlopen.datasets"
    label = "datasets"
