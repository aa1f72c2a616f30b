"""Experiments stored before the tuned protocol keep running as they began (the fixed rate)."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("experiments", "0009_experiment_data_name_classes_error_detail")]
AFTER = [("experiments", "0010_stored_searches_keep_the_fixed_protocol")]


@pytest.mark.django_db(transaction=True)
def test_stored_configurations_and_search_states_say_they_ran_with_the_fixed_protocol(back_to_latest):
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    User = old.get_model("auth", "User")
    Experiment = old.get_model("experiments", "Experiment")
    StoredSearch = old.get_model("experiments", "StoredSearch")
    owner = User.objects.create(username="before")
    legacy = {"task": {"dataset": "digits"}, "training": {"steps": 10, "lr": 0.05}}
    running = Experiment.objects.create(owner=owner, name="old", config=legacy)
    empty = Experiment.objects.create(owner=owner, name="empty", config={})
    current = Experiment.objects.create(owner=owner, name="new",
                                        config={"training": {"lr": 0.05, "lr_protocol": "tuned"}})
    StoredSearch.objects.create(experiment=running, state={"config": legacy, "population": []}, generation=0)

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(AFTER)
    new = executor.loader.project_state(AFTER).apps
    Experiment = new.get_model("experiments", "Experiment")
    StoredSearch = new.get_model("experiments", "StoredSearch")
    assert Experiment.objects.get(pk=running.pk).config["training"] == {"steps": 10, "lr": 0.05, "lr_protocol": "fixed"}
    assert Experiment.objects.get(pk=empty.pk).config == {"training": {"lr_protocol": "fixed"}}
    assert Experiment.objects.get(pk=current.pk).config["training"]["lr_protocol"] == "tuned"
    state = StoredSearch.objects.get(experiment_id=running.pk).state
    assert state["config"]["training"]["lr_protocol"] == "fixed" and state["population"] == []
