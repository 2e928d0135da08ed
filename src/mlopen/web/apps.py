from django.apps import AppConfig


class WebConfig(AppConfig):
    name = "mlopen.web"
    label = "web"
