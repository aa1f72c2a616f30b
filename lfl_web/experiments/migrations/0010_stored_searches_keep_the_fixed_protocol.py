"""Experiments stored before `training.lr_protocol` existed ran with the fixed learning rate; their
configurations (and search states) say so, so that a resumed search continues as it began."""

from django.db import migrations

from search_engine.facade import as_stored


def _with_protocol(config):
    """The stored configuration with the fields it predates as it ran (a non-dict is left alone)."""
    if not isinstance(config, dict):
        return config
    return as_stored({**config, "training": dict(config.get("training") or {})})


def forwards(apps, schema_editor):
    Experiment = apps.get_model("experiments", "Experiment")
    StoredSearch = apps.get_model("experiments", "StoredSearch")
    for experiment in Experiment.objects.all().only("pk", "config"):
        updated = _with_protocol(experiment.config)
        if updated != experiment.config:
            Experiment.objects.filter(pk=experiment.pk).update(config=updated)
    for stored in StoredSearch.objects.all().only("pk", "state"):
        state = stored.state
        if isinstance(state, dict) and isinstance(state.get("config"), dict):
            updated = _with_protocol(state["config"])
            if updated != state["config"]:
                StoredSearch.objects.filter(pk=stored.pk).update(state={**state, "config": updated})


class Migration(migrations.Migration):

    dependencies = [
        ("experiments", "0009_experiment_data_name_classes_error_detail"),
    ]

    operations = [
        migrations.RunPython(forwards, migrations.RunPython.noop),
    ]
