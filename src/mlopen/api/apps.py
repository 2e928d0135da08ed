from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "mlopen.api"
    label = "api"
