import logging

from django.apps import AppConfig

logger = logging.getLogger(__name__)


class ExperimentsConfig(AppConfig):
    name = "lfl_web.experiments"
    label = "experiments"
    verbose_name = "Experiments"

    def ready(self):
        """Read the installed plugins once per process, and log each that failed (it is not offered;
        `python -m search_engine plugins` lists them too)."""
        from search_engine.facade import catalog

        for error in catalog.plugin_errors():
            logger.error("plugin not loaded, its data set or model is not offered: %s", error)
