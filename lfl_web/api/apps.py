from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "lfl_web.api"
    label = "api"
    verbose_name = "JSON API"
