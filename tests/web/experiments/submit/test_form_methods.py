"""The new-experiment form's methods: the choice with the catalogue's words, each method's fields
(and only those) in its configuration, errors at the method's fields, the collapsed advanced part,
and the work estimate of the chosen method."""

import re

import pytest
from django.urls import reverse
from django.utils.html import escape

from lfl_web.experiments.models import Experiment
from lfl_web.experiments.submit.form_layout import FIELD_PATHS, MAIN_SECTIONS, field_methods
from search_engine import catalog
from search_engine.config import ExperimentConfig

from .test_forms import field_block, form_data

pytestmark = pytest.mark.django_db

NEW, ESTIMATE = reverse("experiment_new"), reverse("experiment_estimate")
DEFAULTS = ExperimentConfig().to_dict()
ML3_FIELDS = {"ml3_meta_steps": 3, "ml3_inner_steps": 2, "ml3_meta_lr": 0.01, "ml3_hidden_units": 8,
              "ml3_hidden_layers": 1, "ml3_batch_size": 32, "ml3_report_every": 2}
# Values no method's default has: stored only if the chosen method reads the field.
OTHER_METHODS_FIELDS = {"population_size": 7, "generations": 3, "crossover_rate": 0.5, "top_k": 2,
                        "rejection_steps": 9, "taylorglo_generations": 9, "taylorglo_sigma": 0.5,
                        "ml3_meta_steps": 4, "ml3_hidden_units": 9, "evaluation_strategy": "sequential"}


@pytest.fixture
def signed_in(client, user):
    client.force_login(user)
    return client


def stored(signed_in, **changes) -> dict:
    response = signed_in.post(NEW, form_data(**changes))
    assert response.status_code == 302, response.context["form"].errors
    return Experiment.objects.get().config


def test_the_method_choice_offers_every_catalogue_method_with_its_description(signed_in):
    response = signed_in.get(NEW)
    block = field_block(response.content.decode(), "method")
    for method in catalog.METHODS.values():
        assert f'value="{method.name}"' in block and method.label in block
        assert escape(method.description) in block
    assert re.search(r'<input type="radio" name="method" value="evomal"[^>]* checked', block)
    assert response.context["form"].chosen_method() == "evomal"


def test_choosing_ml3_stores_its_section_from_the_form(signed_in, sent):
    config = stored(signed_in, method="ml3", **ML3_FIELDS)
    assert config["method"] == "ml3"
    assert config["ml3"] == {path.split(".")[1]: ML3_FIELDS[name] for name, path in FIELD_PATHS.items()
                             if name in ML3_FIELDS}
    assert config["training"]["steps"] == 20 and config["meta_test"]["seeds"] == form_data()["meta_test_seeds"]


@pytest.mark.parametrize("method", list(catalog.METHODS))
def test_the_fields_of_other_methods_are_not_stored(signed_in, sent, method):
    config = stored(signed_in, method=method, **OTHER_METHODS_FIELDS)
    for name, value in OTHER_METHODS_FIELDS.items():
        section, key = FIELD_PATHS[name].split(".")
        expected = value if method in field_methods(name) else DEFAULTS[section][key]
        assert config[section][key] == expected, name
    assert config["method"] == method and config["task"]["model"] == form_data()["model"]  # shared: always


def test_gplfl_stores_its_local_search_off_and_ignores_the_local_search_fields(signed_in, sent):
    config = stored(signed_in, method="gplfl", local_search_mode="all", meta_steps=9)
    assert config["local_search"] == {**DEFAULTS["local_search"], "mode": "off"}
    assert config["search"]["population_size"] == 4  # the search is GP-LFL's own


def test_an_unparsable_field_of_another_method_is_no_error(signed_in, sent):
    config = stored(signed_in, method="evomal", ml3_meta_lr="fast", taylorglo_population_size="many")
    assert config["ml3"] == DEFAULTS["ml3"] and config["taylorglo"] == DEFAULTS["taylorglo"]


@pytest.mark.parametrize(("method", "changes", "field", "message"), [
    ("ml3", {"ml3_meta_lr": 0}, "ml3_meta_lr", "must be positive and at most 10, got 0.0"),
    ("ml3", {"ml3_report_every": 0}, "ml3_report_every", "must be at least 1, got 0"),
    ("ml3", {"ml3_meta_steps": "lots"}, "ml3_meta_steps", "Enter a whole number."),
    ("ml3", {"ml3_meta_steps": 10**6}, "ml3_meta_steps", "must be at most 100000, got 1000000"),
    ("taylorglo", {"taylorglo_population_size": 2}, "taylorglo_population_size", "must be at least 4"),
    ("evomal", {"meta_test_lr_milestones": "10, ten"}, "meta_test_lr_milestones", "Enter whole step numbers"),
    ("evomal", {"meta_test_lr_milestones": "30, 10"}, "meta_test_lr_milestones", "must be increasing"),
    ("sgd", {}, "method", "unknown method sgd; choose one of: evomal, gplfl, ml3, taylorglo"),
])
def test_a_bad_field_of_the_chosen_method_is_reported_at_it_and_nothing_is_stored(signed_in, sent, method, changes,
                                                                                 field, message):
    response = signed_in.post(NEW, form_data(method=method, **changes))
    page = response.content.decode()
    assert response.status_code == 200 and field in response.context["form"].errors
    assert message in field_block(page, field) and "nothing was stored" in page
    assert not Experiment.objects.exists() and sent == []


def advanced_part(page: str) -> tuple[str, str]:
    """(the page before the advanced part, the advanced part's opening tag and contents)."""
    start = page.index('<details class="advanced"')
    return page[:start], page[start:page.index("</details>", start)]


def test_the_advanced_part_is_collapsed_and_holds_all_but_method_task_and_budget(signed_in):
    up_front, advanced = advanced_part(signed_in.get(NEW).content.decode())
    assert advanced.startswith('<details class="advanced" id="advanced-settings">')  # not open
    main = {name for _, names in MAIN_SECTIONS for name in names}
    assert {"method", "dataset", "model", "data_file", "population_size", "generations", "ml3_meta_steps",
            "taylorglo_population_size", "taylorglo_generations", "training_steps"} <= main
    for name in FIELD_PATHS:
        assert (f'id="field-{name}"' in up_front, f'id="field-{name}"' in advanced) == (name in main, name not in main)


def test_an_error_in_the_advanced_part_opens_it(signed_in, sent):
    _, advanced = advanced_part(signed_in.post(NEW, form_data(method="ml3", ml3_hidden_units=0)).content.decode())
    assert advanced.startswith('<details class="advanced" id="advanced-settings" open>')
    _, advanced = advanced_part(signed_in.post(NEW, form_data(generations=0)).content.decode())  # up front
    assert advanced.startswith('<details class="advanced" id="advanced-settings">')


def test_every_section_and_field_says_which_methods_read_it(signed_in):
    page = signed_in.get(NEW).content.decode()
    assert 'id="field-ml3_inner_steps" data-methods="ml3"' in page
    assert 'id="field-top_k" data-methods="evomal random"' in page
    assert 'id="field-taylorglo_generations" data-methods="taylorglo"' in page
    assert 'id="field-population_size" data-methods="evomal gplfl random"' in page
    assert 'id="field-hall_of_fame_size" data-methods="evomal gplfl taylorglo random"' in page
    assert 'id="field-crossover_rate" data-methods="evomal gplfl"' in page  # random search does not evolve
    assert 'id="section-genetic-programming" data-methods="evomal gplfl random"' in page  # it seeds known losses
    assert 'id="section-loss-network-ml3" data-methods="ml3"' in page
    assert '<fieldset id="section-budget">' in page and 'id="field-training_steps">' in page  # every method's
    assert "ML3 only" in page and "EvoMAL, GP-LFL only" in page  # without the script, the sections say it
    assert "js/form_methods.js" in page


def test_the_chosen_method_and_its_values_are_kept_after_an_error(signed_in, sent):
    response = signed_in.post(NEW, form_data(method="ml3", ml3_meta_lr=-1, ml3_hidden_units=6))
    form = response.context["form"]
    assert form.chosen_method() == "ml3" and form["ml3_hidden_units"].value() == "6"
    assert 'data-method="ml3"' in response.content.decode()


# ----------------------------------------------------------------------------- the estimate per method


def estimate(signed_in, **changes) -> str:
    return signed_in.post(ESTIMATE, form_data(**changes)).content.decode()


def test_the_estimate_follows_the_chosen_method(signed_in):
    # ML3: 3 meta steps x 2 inner; ceil(3 / 2) = 2 reports (+ 1 baseline) x 20 steps; seeds x 2 x 1500
    # meta-test, and each at its best rate: 2 x (11 rates x 2 tuning seeds + seeds) x 1500 (a network loss:
    # no final choice)
    seeds, steps = form_data()["meta_test_seeds"], form_data()["meta_test_steps"]
    ml3 = estimate(signed_in, method="ml3", **ML3_FIELDS, population_size=10**9)  # the search's fields: ignored
    meta_test = seeds * 2 * steps + 2 * (2 * 11 + seeds) * steps
    total = 6 + 3 * 20 + meta_test
    assert f"ML3: at most <strong>{total:,}</strong> training steps" in ml3
    assert f"(60 fitness, 6 meta-training, {meta_test:,} meta-test)" in ml3
    assert "2 scored snapshots of the loss network" in ml3
    # TaylorGLO: 5 x 2 polynomials (+ 1 baseline, + up to 9 baseline runs choosing the search's rate) x 20
    # steps; seeds x 2 meta-test runs, the final choice's 4 x 11 x 2 x 1500 (the meta-test reuses its tuning)
    # and seeds x 2 again at the tuned rates
    taylorglo = estimate(signed_in, method="taylorglo", taylorglo_population_size=5, taylorglo_generations=2)
    total = (11 + 9) * 20 + seeds * 2 * steps + 2 * seeds * steps + 4 * 2 * 11 * steps
    assert f"<strong>{total:,}</strong>" in taylorglo and "10 candidate polynomials" in taylorglo
    # GP-LFL: the form's 4 x 2 search, no local search even with mode "all" typed in
    gplfl = estimate(signed_in, method="gplfl", local_search_mode="all")
    assert "GP-LFL: at most" in gplfl and "0 local search" in gplfl and "8 candidates" in gplfl
