"""The new-experiment form: presets, the engine's errors at the right fields, uploads, enqueueing."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from django import forms as django_forms
from django.test import Client
from django.urls import reverse

from lfl_web.experiments.models import Experiment
from lfl_web.experiments.submit import experiment_form, form_layout
from lfl_web.experiments.submit.experiment_form import ExperimentForm
from lfl_web.experiments.submit.form_layout import FIELD_PATHS, get_dotted, initial_values, preset_config

pytestmark = pytest.mark.django_db

NEW = reverse("experiment_new")
ROOT = Path(__file__).resolve().parents[4]


@pytest.fixture
def signed_in(client, user):
    client.force_login(user)
    return client


def form_data(**changes) -> dict:
    """POST data of the quick preset (tiny sizes), as a browser sends it: no key for an unchecked box."""
    values = {**initial_values("quick"), "name": "digits run", "description": "", "population_size": 4,
              "generations": 2, "training_steps": 20, "local_search_mode": "off", "device": "cpu", **changes}
    data = {}
    for name, value in values.items():
        if value is True:
            data[name] = "on"
        elif isinstance(value, list):  # step numbers, typed into one text field
            data[name] = ", ".join(map(str, value))
        elif value is not False and value is not None:
            data[name] = value
    return data


@pytest.fixture
def preset_folder(monkeypatch, tmp_path):
    """An empty folder the form reads its presets from instead of configs/."""
    folder = tmp_path / "presets"
    folder.mkdir()
    monkeypatch.setattr(form_layout, "PRESET_FOLDER", str(folder))  # absolute: BASE_DIR / it is it
    return folder


def write_preset(folder, key: str, config: dict):
    (folder / f"{key}.json").write_text(json.dumps(config))


def uploaded_files(upload_dir) -> list:
    return sorted(upload_dir.iterdir()) if upload_dir.exists() else []


def field_block(page: str, field: str) -> str:
    """The HTML of one field's block (label, input, errors, help) on the rendered form."""
    start = page.index(f'id="field-{field}"')
    return page[start:page.index("</div>", start)]


# ----------------------------------------------------------------------------- presets


def test_the_form_starts_from_the_engine_defaults(signed_in):
    form = signed_in.get(NEW).context["form"]
    assert form["crossover_rate"].value() == 0.7 and form["population_size"].value() == 25
    assert form["seed_known_losses"].value() is True and form["local_search_mode"].value() == "all"


def test_the_meta_test_at_each_losss_best_rate_starts_ticked_and_can_be_unticked(signed_in, sent):
    page = signed_in.get(NEW).content.decode()
    box = field_block(page, "meta_test_tune_lr")
    assert 'type="checkbox"' in box and "checked" in box and "the paper&#x27;s protocol" in box
    assert signed_in.post(NEW, form_data()).status_code == 302  # as a browser sends the ticked box
    unticked = form_data(name="paper")
    del unticked["meta_test_tune_lr"]  # a browser sends no key for an unticked box
    assert signed_in.post(NEW, unticked).status_code == 302
    tuned = {e.name: e.config["meta_test"]["tune_lr"] for e in Experiment.objects.all()}
    assert tuned == {"digits run": True, "paper": False}


def test_a_preset_fills_the_form(signed_in, preset_folder):
    write_preset(preset_folder, "lenet", {
        "task": {"dataset": "mnist", "model": "lenet5", "data_root": "data", "val_fraction": 0.1},
        "search": {"generations": 30}, "training": {"lr": 0.05, "momentum": 0.9, "nesterov": True,
                                                     "weight_decay": 0.0005},
        "local_search": {"meta_steps": 50, "meta_lr": 0.01},
        "meta_test": {"steps": 100000, "lr_milestones": [60000, 90000]},
    })
    response = signed_in.get(NEW, {"preset": "lenet"})
    form = response.context["form"]
    expected = {"name": "lenet: EvoMAL on mnist / lenet5", "method": "evomal", "dataset": "mnist", "model": "lenet5",
                "data_root": "data", "val_fraction": 0.1, "generations": 30, "lr": 0.05, "momentum": 0.9,
                "nesterov": True, "weight_decay": 0.0005, "meta_steps": 50, "meta_lr": 0.01, "meta_test_steps": 100000,
                "meta_test_lr_milestones": "60000, 90000"}
    assert {name: form[name].value() for name in expected} == expected
    page = response.content.decode()
    assert 'value="30"' in field_block(page, "generations")
    assert 'value="60000, 90000"' in field_block(page, "meta_test_lr_milestones")
    assert 'href="?preset=lenet"' in page and "EvoMAL on mnist / lenet5" in page


def test_every_file_in_the_preset_folder_is_offered_and_an_invalid_one_is_not(signed_in, preset_folder, caplog):
    write_preset(preset_folder, "b_network", {"method": "ml3", "ml3": {"meta_steps": 40}})
    write_preset(preset_folder, "a_polynomial", {"method": "taylorglo"})
    write_preset(preset_folder, "c_search", {"search": {"generations": 3}})
    write_preset(preset_folder, "broken", {"search": {"generations": "many"}})
    offered = signed_in.get(NEW).context["presets"]
    assert list(offered) == ["c_search", "b_network", "a_polynomial"]  # by the catalogue's order of methods
    assert [p.summary for p in offered.values()] == ["EvoMAL on digits / mlp", "ML3 on digits / mlp",
                                                     "TaylorGLO on digits / mlp"]
    assert "broken.json is not offered" in caplog.text and "search.generations" in caplog.text
    form = signed_in.get(NEW, {"preset": "b_network"}).context["form"]
    assert (form["method"].value(), form["ml3_meta_steps"].value()) == ("ml3", 40)


@pytest.mark.parametrize("preset", [None, *sorted(path.stem for path in (ROOT / "configs").glob("*.json"))])
def test_every_configuration_field_of_a_preset_is_prefilled(signed_in, preset):
    form = signed_in.get(NEW, {"preset": preset} if preset else {}).context["form"]
    config = preset_config(preset)
    shown = {name: form[name].value() for name in FIELD_PATHS if name != "data_file"}
    assert shown == {name: form.fields[name].prepare_value(get_dotted(config, path))
                     for name, path in FIELD_PATHS.items() if name != "data_file"}


def test_a_preset_prefills_the_tree_rejection_evaluation_and_split_fields(signed_in, preset_folder):
    write_preset(preset_folder, "custom", {
        "task": {"test_fraction": 0.3},
        "search": {"init_min_height": 1, "init_max_height": 3, "max_height": 7, "mutation_min_height": 1,
                   "mutation_max_height": 3},
        "rejection": {"enabled": False, "steps": 40, "samples": 60},
        "local_search": {"batch_size": 64},
        "evaluation": {"strategy": "sequential", "max_population_chunk": 5},
    })
    response = signed_in.get(NEW, {"preset": "custom"})
    form = response.context["form"]
    expected = {"test_fraction": 0.3, "init_min_height": 1, "init_max_height": 3, "max_height": 7,
                "mutation_min_height": 1, "mutation_max_height": 3, "rejection_enabled": False,
                "rejection_steps": 40, "rejection_samples": 60, "meta_batch_size": 64,
                "evaluation_strategy": "sequential", "max_population_chunk": 5}
    assert {name: form[name].value() for name in expected} == expected
    page = response.content.decode()
    assert 'value="40"' in field_block(page, "rejection_steps")
    assert '<option value="sequential" selected>' in field_block(page, "evaluation_strategy")
    assert "checked" not in field_block(page, "rejection_enabled")
    assert "with “sequential” between single candidates" in field_block(page, "evaluation_strategy")  # cancelling


def test_an_unknown_preset_is_reported_and_the_defaults_shown(signed_in):
    response = signed_in.get(NEW, {"preset": "nope"})
    assert response.status_code == 200
    assert "Unknown preset &#x27;nope&#x27;" in response.content.decode()
    assert response.context["form"]["generations"].value() == 50


# ----------------------------------------------------------------------------- success


def test_a_valid_submit_creates_one_experiment_and_enqueues_it(signed_in, user, sent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = signed_in.post(NEW, form_data(private="on", crossover_rate=0.6, mutation_rate=0.3))
    experiment = Experiment.objects.get()
    assert response.status_code == 302 and response["Location"] == experiment.get_absolute_url()
    assert sent == [experiment.pk]
    assert experiment.owner == user and experiment.private and experiment.name == "digits run"
    search = experiment.config["search"]
    assert (search["population_size"], search["crossover_rate"], search["mutation_rate"]) == (4, 0.6, 0.3)
    assert experiment.config["local_search"]["mode"] == "off" and experiment.config["device"] == "cpu"
    assert experiment.total_generations == 2


def test_the_tree_rejection_evaluation_and_split_fields_go_into_the_configuration(signed_in, sent):
    response = signed_in.post(NEW, form_data(
        test_fraction=0.25, init_min_height=1, init_max_height=3, max_height=8, mutation_min_height=1,
        mutation_max_height=3, rejection_enabled=False, rejection_steps=15, rejection_samples=30,
        meta_batch_size=64, evaluation_strategy="sequential", max_population_chunk=2, evaluation_threads=3,
    ))
    assert response.status_code == 302
    config = Experiment.objects.get().config
    assert config["task"]["test_fraction"] == 0.25
    search = config["search"]
    heights = ("init_min_height", "init_max_height", "max_height", "mutation_min_height", "mutation_max_height")
    assert [search[name] for name in heights] == [1, 3, 8, 1, 3]
    assert config["rejection"] == {"enabled": False, "steps": 15, "samples": 30}
    assert config["local_search"]["batch_size"] == 64
    assert config["evaluation"] == {"strategy": "sequential", "max_population_chunk": 2, "threads": 3}


def test_a_checked_screen_box_keeps_the_rejection_screen_on(signed_in, sent):
    signed_in.post(NEW, form_data(rejection_enabled=True))
    assert Experiment.objects.get().config["rejection"]["enabled"] is True


def test_the_queued_notice_is_marked_for_the_dashboard_to_dismiss(signed_in, sent):
    page = signed_in.post(NEW, form_data(name="flash run"), follow=True).content.decode()
    assert '<li class="message queued-notice success">“flash run” is queued; this page follows it live.</li>' in page


def test_a_blank_number_keeps_the_engine_default(signed_in, sent):
    data = form_data()
    data["tournament_size"] = ""
    signed_in.post(NEW, data)
    assert Experiment.objects.get().config["search"]["tournament_size"] == 4


# ----------------------------------------------------------------------------- errors at their fields


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"crossover_rate": 1.5}, "crossover_rate", "must be in [0, 1], got 1.5"),
        ({"elitism_rate": -0.1}, "elitism_rate", "must be in [0, 1], got -0.1"),
        ({"crossover_rate": 0.8, "mutation_rate": 0.5}, "mutation_rate", "crossover_rate + mutation_rate must be at most 1"),
        ({"population_size": 1}, "population_size", "must be at least 2, got 1"),
        ({"model": "lenet5"}, "model", "lenet5 needs image input of at least 12x12"),
        ({"momentum": 0.0, "nesterov": True}, "nesterov", "Nesterov needs momentum &gt; 0"),
        ({"top_k": 0}, "top_k", "must be at least 1, got 0"),
        ({"max_height": 30}, "max_height", "must be at most 17, got 30"),
        ({"max_height": 3}, "max_height", "must be at least init_max_height (4), got 3"),
        ({"init_min_height": 0}, "init_min_height", "must be at least 1, got 0"),
        ({"init_min_height": 4, "init_max_height": 3}, "init_max_height", "must be at least init_min_height (4), got 3"),
        ({"mutation_min_height": -1}, "mutation_min_height", "must be at least 0, got -1"),
        ({"mutation_min_height": 3, "mutation_max_height": 1}, "mutation_max_height",
         "must be at least mutation_min_height (3), got 1"),
        ({"test_fraction": 1.2}, "test_fraction", "must be strictly between 0 and 1, got 1.2"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "test_fraction", "val_fraction + test_fraction must be &lt; 1"),
        ({"rejection_steps": 0}, "rejection_steps", "must be at least 1, got 0"),
        ({"rejection_samples": 1}, "rejection_samples", "must be at least 2, got 1"),
        ({"meta_batch_size": 0}, "meta_batch_size", "must be at least 1, got 0"),
        ({"max_population_chunk": 0}, "max_population_chunk", "must be at least 1, got 0"),
        ({"max_population_chunk": "many"}, "max_population_chunk", "Enter a whole number."),
        ({"evaluation_strategy": "parallel"}, "evaluation_strategy", "Select a valid choice."),
        ({"device": "tpu"}, "device", "must be &#x27;auto&#x27;, &#x27;cpu&#x27;, &#x27;cuda&#x27; or &#x27;cuda:N&#x27;"),
        ({"lr": "fast"}, "lr", "Enter a number."),
        ({"lr": "abc"}, "lr", "Enter a number."),
        ({"momentum": "0.9x"}, "momentum", "Enter a number."),
        ({"population_size": "abc"}, "population_size", "Enter a whole number."),
        ({"lr": "1e309"}, "lr", "Enter a number."),  # infinite
        ({"lr": 1e308}, "lr", "must be positive and at most 100, got 1e+308"),
        ({"meta_lr": 1e308}, "meta_lr", "must be positive and at most 10, got 1e+308"),
        ({"weight_decay": 2}, "weight_decay", "must be in [0, 1], got 2.0"),
        ({"meta_test_lr_gamma": 0}, "meta_test_lr_gamma", "must be positive and at most 1, got 0.0"),
        ({"dataset": "imagenet"}, "dataset", "Select a valid choice."),
        ({"name": ""}, "name", "This field is required."),
        ({"dataset": "mnist", "model": "lenet5", "data_root": "/nowhere/at/all"}, "data_root", "/nowhere/at/all"),
    ],
)
def test_bad_input_is_reported_at_its_field_and_nothing_is_stored(signed_in, sent, changes, field, message):
    response = signed_in.post(NEW, form_data(**changes))
    assert response.status_code == 200
    assert field in response.context["form"].errors
    page = response.content.decode()
    assert message in field_block(page, field)
    assert "nothing was stored" in page
    assert not Experiment.objects.exists() and sent == []


def test_every_number_field_is_a_text_input_so_what_was_typed_reaches_the_server(signed_in):
    # A browser submits unreadable text in an <input type="number"> as "", which would read as "blank:
    # use the default"; as text it arrives, and the field says it is not a number.
    page = signed_in.get(NEW).content.decode()
    numbers = [name for name, field in experiment_form.ExperimentForm().fields.items()
               if isinstance(field, (django_forms.IntegerField, django_forms.FloatField))]
    assert {"lr", "momentum", "taylorglo_sigma", "population_size"} <= set(numbers)
    for name in numbers:
        block = field_block(page, name)
        assert 'type="text"' in block and 'type="number"' not in block, name


def test_text_typed_into_a_number_field_is_never_taken_for_the_default(signed_in, sent):
    response = signed_in.post(NEW, form_data(training_steps="abc", lr="abc"))
    form = response.context["form"]
    assert form.errors["training_steps"] == ["Enter a whole number."] and form.errors["lr"] == ["Enter a number."]
    assert 'value="abc"' in field_block(response.content.decode(), "lr")  # kept as typed, to be corrected
    assert not Experiment.objects.exists() and sent == []


def test_service_errors_land_on_their_fields_and_the_rest_on_the_form():
    form = experiment_form.ExperimentForm(form_data())
    assert form.is_valid()
    form.add_experiment_errors({"search.crossover_rate": "must be in [0, 1], got 1.5", "name": "too long",
                                "owner": "unknown user"})
    assert form.errors["crossover_rate"] == ["must be in [0, 1], got 1.5"] and form.errors["name"] == ["too long"]
    assert form.non_field_errors() == ["owner: unknown user"]  # no field to put it on: it names its own


def test_the_form_keeps_what_was_typed_after_an_error(signed_in, sent):
    response = signed_in.post(NEW, form_data(crossover_rate=1.5, generations=7))
    assert 'value="7"' in field_block(response.content.decode(), "generations")


def test_a_post_without_the_csrf_token_is_refused(user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.post(NEW, form_data()).status_code == 403
    assert not Experiment.objects.exists()


# ----------------------------------------------------------------------------- uploads

def test_the_form_offers_the_engines_choices_in_the_engines_words():
    from search_engine.config import EVALUATION_STRATEGIES as ENGINE_STRATEGIES
    from search_engine.config import LOCAL_SEARCH_MODES as ENGINE_MODES
    from search_engine.config import config_field

    fields = ExperimentForm.base_fields
    assert [value for value, _ in fields["evaluation_strategy"].choices] == list(ENGINE_STRATEGIES)
    assert [value for value, _ in fields["local_search_mode"].choices] == list(ENGINE_MODES)
    assert dict(fields["local_search_mode"].choices)["all"] == "all (EvoMAL)"  # the engine's label for it
    assert [value for value, _ in fields["kind"].choices] == ["", "classification", "regression"]  # optional
    words, _, _ = config_field("search.crossover_rate")  # label and help are the engine's, beside the field
    assert (fields["crossover_rate"].label, fields["mutation_rate"].help_text) == (
        words.label, config_field("search.mutation_rate")[0].help)


def test_every_configuration_field_has_a_form_field():
    from search_engine.config import ExperimentConfig

    def leaves(data: dict, prefix: str = ""):
        for key, value in data.items():
            yield from leaves(value, f"{prefix}{key}.") if isinstance(value, dict) else [prefix + key]

    assert set(leaves(ExperimentConfig().to_dict())) == set(FIELD_PATHS.values())


def test_every_form_field_is_shown_in_a_section():
    shown = [name for _, names in form_layout.SECTIONS for name in names]
    assert sorted(shown) == sorted(experiment_form.ExperimentForm.base_fields) and len(shown) == len(set(shown))


def test_every_form_field_names_a_configuration_field():
    from search_engine.config import ExperimentConfig

    defaults = ExperimentConfig().to_dict()
    for path in FIELD_PATHS.values():
        section = defaults
        *parents, last = path.split(".")
        for key in parents:
            section = section[key]
        assert last in section, path


RENDER_WITHOUT_TORCH = """
import os, sys
folder = sys.argv[1]
os.environ.update(DJANGO_SETTINGS_MODULE="lfl_web.settings", LFL_VAR_DIR=folder,
                  DATABASE_URL=f"sqlite:///{folder}/db.sqlite3")
import django
django.setup()
from django.core.management import call_command
from django.test import Client
from django.test.utils import setup_test_environment
from django.urls import reverse
from django.contrib.auth import get_user_model
from lfl_web.experiments.models import Experiment, LearnedLoss
call_command("migrate", verbosity=0)
setup_test_environment()
user = get_user_model().objects.create_user("ada")
done = Experiment.objects.create(owner=user, name="done", config={"task": {"dataset": "digits", "model": "mlp"}},
                                 status="succeeded", baseline_loss="cross_entropy", baseline_fitness=0.2)
# stored as a worker stores it (replace_for computes the loss shape with torch, in the worker)
LearnedLoss.objects.create(experiment=done, rank=1, expression="sub(f, y)", validation_fitness=0.1,
                           baseline_fitness=0.2, dataset="digits", model="mlp", metric="error_rate")
client = Client()
client.force_login(user)
pages = [client.get(reverse("experiment_new"), {"preset": "quick"}), client.get(reverse("leaderboard"))]
print([page.status_code for page in pages], "sub(f, y)" in pages[1].content.decode(), "torch" in sys.modules)
"""


def test_the_new_experiment_form_and_the_leaderboard_render_without_torch(tmp_path):
    out = subprocess.run([sys.executable, "-c", RENDER_WITHOUT_TORCH, str(tmp_path)], capture_output=True, text=True,
                         timeout=180)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[200, 200] True False"
