"""A learned loss keeps its loss shape (the dashboard's plot), computed when the worker stores it, so a
page never computes one (nor loads torch to do it). Losses stored before get theirs here, once: an
upgraded installation shows every old experiment's plot as before. The engine, and torch with it, is
imported only when such losses exist (a fresh database migrates without it)."""

from django.db import migrations, models

from lfl_web.experiments.results.loss_shapes import shape_data
from lfl_web.experiments.results.task_facts import stored_class_count, task_kind


def forwards(apps, schema_editor):
    LearnedLoss = apps.get_model("experiments", "LearnedLoss")
    for loss in LearnedLoss.objects.filter(loss_shape__isnull=True).select_related("experiment").iterator():
        experiment = loss.experiment
        config = experiment.config if isinstance(experiment.config, dict) else {}
        shape = shape_data(expression=loss.expression, weights=loss.weights, network=loss.network,
                           kind=task_kind(config, experiment.baseline_loss),
                           n_classes=stored_class_count(config, experiment.baseline_loss, experiment.n_classes))
        if shape is not None:
            LearnedLoss.objects.filter(pk=loss.pk).update(loss_shape=shape)


class Migration(migrations.Migration):

    dependencies = [
        ("experiments", "0010_stored_searches_keep_the_fixed_protocol"),
    ]

    operations = [
        migrations.AddField(
            model_name="learnedloss",
            name="loss_shape",
            field=models.JSONField(blank=True, help_text="Its value along simple slices, for the dashboard's plot "
                                   "(export.loss_shape); empty if it could not be computed.", null=True),
        ),
        migrations.RunPython(forwards, migrations.RunPython.noop),
    ]
