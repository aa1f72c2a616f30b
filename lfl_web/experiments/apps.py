from django.apps import AppConfig


class ExperimentsConfig(AppConfig):
    name = "lfl_web.experiments"
    label = "experiments"
    verbose_name = "Experiments"
