"""What the pages call things: methods and their words, uploaded data sets by their file, class
counts, failures as sentences (rows are small and synthetic; no search runs here)."""

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from lfl_web.experiments.models import Candidate, Experiment, LearnedLoss, Status
from tests.web.experiments import test_pages

from ..conftest import tiny_config

pytestmark = pytest.mark.django_db

finished, signed_in, staff_client = test_pages.finished, test_pages.signed_in, test_pages.staff_client  # fixtures
section, hall_entry, add_generation = test_pages.section, test_pages.hall_entry, test_pages.add_generation
names = test_pages.names

# ----------------------------------------------------------------------------- what the pages call things


def test_the_list_names_each_method_and_shows_the_newest_first(signed_in, make_experiment):
    for days, (name, method) in enumerate((("oldest", "evomal"), ("middle", "taylorglo"), ("newest", "ml3"))):
        experiment = make_experiment(name=name, config=tiny_config(method=method))
        Experiment.objects.filter(pk=experiment.pk).update(created_at=timezone.now() - timedelta(days=3 - days))
    response = signed_in.get(reverse("experiment_list"))
    assert [e.name for e in response.context["experiments"]] == ["newest", "middle", "oldest"]
    page = response.content.decode()
    for method, label in (("evomal", "EvoMAL"), ("taylorglo", "TaylorGLO"), ("ml3", "ML3")):
        assert f'<td class="method" data-method="{method}">{label}</td>' in page
    assert '0 / 2 <small class="muted">generations</small>' in page  # ML3 counts its scored snapshots:
    assert '<small class="muted">snapshots</small>' in page


THREE_CLASSES = "width,length,species\n" + "".join(f"{i % 7},{i % 5},{('setosa', 'virginica', 'versicolor')[i % 3]}\n"
                                                    for i in range(90))


def uploaded_experiment(client, file_name: str) -> Experiment:
    from tests.web.experiments.submit.test_form_uploads import csv_upload
    from tests.web.experiments.submit.test_forms import NEW, form_data

    response = client.post(NEW, form_data(name=file_name, dataset="csv", model="mlp", kind="classification",
                                          label="species", data_file=csv_upload(THREE_CLASSES, file_name)))
    assert response.status_code == 302, response.content.decode()[-2000:]
    return Experiment.objects.get(name=file_name)


def finish_with(experiment, entries) -> Experiment:
    LearnedLoss.objects.replace_for(experiment, entries)
    Experiment.objects.filter(pk=experiment.pk).update(status=Status.SUCCEEDED, finished_at=timezone.now())
    return Experiment.objects.get(pk=experiment.pk)


def test_an_uploaded_data_set_is_named_by_its_file_and_ranks_apart_from_other_files(signed_in, sent):
    iris, wine = uploaded_experiment(signed_in, "iris.csv"), uploaded_experiment(signed_in, "wine.csv")
    assert (iris.data_name, iris.n_classes, iris.dataset) == ("iris.csv", 3, "csv")
    listed = signed_in.get(reverse("experiment_list")).content.decode()
    assert "iris.csv / mlp" in listed and "wine.csv / mlp" in listed and "csv / mlp" not in listed.replace(".csv / mlp", "")
    iris, wine = finish_with(iris, [hall_entry(fitness=0.2)]), finish_with(wine, [hall_entry(fitness=0.1)])
    assert [loss.dataset for loss in LearnedLoss.objects.order_by("experiment_id")] == ["iris.csv", "wine.csv"]
    board = signed_in.get(reverse("leaderboard")).content.decode()
    assert '<option value="iris.csv">iris.csv</option>' in board and '<option value="csv">' not in board
    assert "iris.csv / mlp" in board and "wine.csv / mlp" in board
    assert names(signed_in.get(reverse("leaderboard"), {"dataset": "iris.csv"})) == ["iris.csv"]
    # the loss shape is drawn for the file's three classes, not the ten of the image sets
    response = signed_in.get(iris.get_absolute_url())
    assert response.context["dashboard"].loss_shape["n_classes"] == 3
    assert "one wrong class (3 classes)." in section(response.content.decode(), "loss-shape-panel")
    assert "iris.csv / mlp" in response.content.decode()


def test_a_data_file_already_on_the_server_is_named_by_its_file(user, tmp_path):
    data = tmp_path / "points.csv"
    data.write_text("a,b,label\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(40)))
    config = tiny_config(task={"dataset": "csv", "data_file": str(data), "kind": "classification", "max_train": None})
    experiment = Experiment.objects.create_validated(owner=user, name="server file", config=config)
    assert (experiment.dataset_name, experiment.n_classes) == ("points.csv", 2)
    digits = Experiment.objects.create_validated(owner=user, name="digits", config=tiny_config())
    assert (digits.dataset_name, digits.n_classes, digits.class_count) == ("digits", 10, 10)


def test_the_loss_shape_of_a_built_in_set_uses_its_catalogued_classes(signed_in, finished):
    experiment = finished()  # digits: ten classes, made without the data check
    assert experiment.n_classes is None and experiment.class_count == 10
    page = signed_in.get(experiment.get_absolute_url()).content.decode()
    assert "one wrong class (10 classes)." in section(page, "loss-shape-panel")


def error_box(page: str) -> str:
    return re.search(r'<p data-panel id="error" class="error-box">(.*?)</p>', page, re.S).group(1)


@pytest.mark.parametrize("staff", [False, True], ids=["owner", "staff"])
def test_a_failure_reads_as_a_sentence_and_only_staff_open_its_traceback(client, user, make_experiment, staff):
    from lfl_web.experiments import services

    experiment = make_experiment()
    experiment.claim_for_worker("t")
    services.mark_failed(experiment=experiment, error="RuntimeError: value cannot be converted to type float "
                         "without overflow", detail='Traceback (most recent call last):\n  File "/srv/lfl/loop.py"')
    user.is_staff = staff
    user.save()
    client.force_login(user)
    page = client.get(experiment.get_absolute_url()).content.decode()
    assert error_box(page) == "The search failed: value cannot be converted to type float without overflow."
    assert ('<details class="panel traceback" id="error-detail">' in page) is staff
    assert ("File &quot;/srv/lfl/loop.py&quot;" in page) is staff


@pytest.mark.parametrize(("error", "sentence"), [
    ("ConfigError: task.data_file: no such file", "The search failed: task.data_file: no such file."),
    ("MemoryError: ", "The search failed (MemoryError)."),
    ("the worker was lost three times.", "The search failed: the worker was lost three times."),
    ("", ""),
])
def test_the_failure_sentence_leaves_the_exceptions_name_to_the_traceback(error, sentence):
    assert Experiment(error=error).failure_sentence == sentence


def test_an_ml3_dashboard_speaks_of_snapshots_and_its_networks_weights(signed_in, make_experiment):
    experiment = make_experiment(config=tiny_config(method="ml3"))
    experiment.claim_for_worker("t")
    network = {**hall_entry(expression="relu network 2-50-50-1", size=2650), "network": {"layers": []}}
    add_generation(experiment, 0, 0.2, 0.2, hall=[network])
    Experiment.objects.filter(pk=experiment.pk).update(current_generation=1)
    Candidate.objects.create(experiment=experiment, generation=1, index=0, expression="relu network 2-50-50-1",
                             canonical_key="net", fitness=0.19)
    page = signed_in.get(experiment.get_absolute_url()).content.decode()
    assert "<dt>Snapshots done</dt>" in section(page, "progress-panel")
    assert "Fitness per snapshot" in page and 'data-x-label="snapshot"' in page
    candidates = section(page, "candidates-panel")
    assert "Candidates of snapshot" in candidates and "generation" not in candidates.replace('"candidates-generation"', "")
    assert "Network weights" in candidates and '<td class="num">2650</td>' in candidates  # 2x50 + 50x50 + 50x1
    assert section(page, "hall-of-fame-panel").count('<td class="num">2650</td>') == 2  # its size and its weights


def test_an_evolutionary_dashboard_speaks_of_generations_and_learned_weights(signed_in, make_experiment):
    experiment = make_experiment()
    experiment.claim_for_worker("t")
    page = signed_in.get(experiment.get_absolute_url()).content.decode()
    assert "<dt>Generations done</dt>" in page and "Fitness per generation" in page
    assert "Learned weights" in section(page, "candidates-panel") and "Network weights" not in page
