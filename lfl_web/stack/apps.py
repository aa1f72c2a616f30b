from django.apps import AppConfig


class StackConfig(AppConfig):
    name = "lfl_web.stack"
    label = "stack"
    verbose_name = "Development stack"
