"""Broken plugins: each is named with its entry point, package and problem, and the rest stays usable.

The plugins here are real distributions: a dist-info folder with entry_points.txt and the modules it
names, in a temporary folder put on sys.path, read by importlib.metadata like any installed package.
"""

import contextlib
import importlib
import sys
import textwrap

import pytest

from search_engine import catalog, plugins
from search_engine.cli import main
from search_engine.config import ConfigError, load_config
from search_engine.expr.tree import CROSS_ENTROPY
from search_engine.scoring.plan import _vmap_problem, make_evaluator, plan_record, rule_plan
from search_engine.tasks import datasets
from search_engine.tasks.dataspec import DatasetSpec
from search_engine.tasks.task import load_task

BROKEN = "broken-plugins 1.0"

#: The modules of the package "broken-plugins": facts of every kind of fault, and two sound plugins.
BROKEN_FACTS = '''
import numpy as np
from torch import nn
from search_engine.plugins import DatasetPlugin, ModelPlugin

def facts(name, **changes):
    values = dict(name=name, label=f"{name} (test)", kind="classification", input_shape=(4,), n_outputs=2,
                  class_counts=(30, 30), loader="broken_facts:blobs")
    return DatasetPlugin(**{**values, **changes})

NAMELESS = facts("")
BAD_KIND = facts("bad_kind", kind="ranking")
BAD_SHAPE = facts("bad_shape", input_shape=(4, 0))
BAD_COUNTS = facts("bad_counts", class_counts=(30, 30, 30))
DIGITS = facts("digits")
BLOBS = facts("blobs")
LIAR = facts("liar", class_counts=(20, 40))
NOT_FACTS = {"name": "not_facts"}
WRONG_OUTPUTS = ModelPlugin(name="wrong_outputs", label="wrong outputs", builder="broken_facts:build_wrong")
CLASSIFIER = ModelPlugin(name="classifier", label="classifier", builder="broken_facts:build_line",
                         kinds=("classification",))

def blobs():
    y = np.repeat([0, 1], 30)
    return np.random.default_rng(0).normal(size=(60, 4)) + 2.0 * y[:, None], y

def build_wrong(info, seed):
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(info.n_outputs + 1))

def build_line(info, seed):
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(info.n_outputs))
'''

BROKEN_POINTS = {
    "lfl.datasets": {"missing": "no_such_module_of_lfl:FACTS", "nameless": "broken_facts:NAMELESS",
                     "bad_kind": "broken_facts:BAD_KIND", "bad_shape": "broken_facts:BAD_SHAPE",
                     "bad_counts": "broken_facts:BAD_COUNTS", "digits": "broken_facts:DIGITS",
                     "renamed": "broken_facts:BLOBS", "blobs": "broken_facts:BLOBS", "liar": "broken_facts:LIAR"},
    "lfl.models": {"wrong_outputs": "broken_facts:WRONG_OUTPUTS", "not_facts": "broken_facts:NOT_FACTS",
                   "classifier": "broken_facts:CLASSIFIER"},
}


@contextlib.contextmanager
def plugin_site(folder):
    """install(package, version, entry_points, modules): a distribution in `folder`, on sys.path while the
    context lasts, and the plugins read again (on entering a package and on leaving)."""
    folder.mkdir()
    modules: list[str] = []

    def install_package(package: str, version: str, entry_points: dict, sources: dict[str, str]):
        for module, source in sources.items():
            (folder / f"{module}.py").write_text(textwrap.dedent(source))
            modules.append(module)
        info = folder / f"{package.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text("".join(
            f"[{group}]\n" + "".join(f"{name} = {value}\n" for name, value in points.items()) + "\n"
            for group, points in entry_points.items()))
        importlib.invalidate_caches()
        plugins.rescan()
        return catalog.installed_plugins()

    sys.path.insert(0, str(folder))
    try:
        yield install_package
    finally:
        sys.path.remove(str(folder))
        for module in modules:
            sys.modules.pop(module, None)
        importlib.invalidate_caches()
        plugins.rescan()


@pytest.fixture
def install(tmp_path):
    with plugin_site(tmp_path / "site") as install_package:
        yield install_package


@pytest.fixture
def broken(install):
    return install("broken-plugins", "1.0", BROKEN_POINTS, {"broken_facts": BROKEN_FACTS})


def test_each_broken_plugin_is_named_with_its_entry_point_package_and_problem(broken):
    errors = {error.origin.name: str(error) for error in broken.errors}
    assert sorted(errors) == ["bad_counts", "bad_kind", "bad_shape", "digits", "missing", "nameless", "not_facts",
                              "renamed"]
    for name, text in errors.items():
        assert text.startswith(f"entry point {name!r} (") and f"of package {BROKEN}: " in text
    expected = {
        "missing": "cannot import it: ModuleNotFoundError: No module named 'no_such_module_of_lfl'",
        "nameless": "its facts have no name",
        "bad_kind": "its kind must be one of classification, regression, got 'ranking'",
        "bad_shape": "its input_shape must be a non-empty tuple of positive whole numbers, got (4, 0)",
        "bad_counts": "class_counts must give the number of samples of each of the 2 classes",
        "digits": "'digits' is the name of a built-in data set; choose another",
        "renamed": "the entry point is called 'renamed' but its facts name the data set 'blobs'",
        "not_facts": "it names a dict, not a search_engine.plugins.ModelPlugin",
    }
    assert all(problem in errors[name] for name, problem in expected.items()), errors
    assert catalog.plugin_errors() == broken.errors


def test_the_others_stay_listed_and_usable(broken):
    assert {"breast_cancer", "blobs", "liar"} <= set(catalog.dataset_names())
    assert {"grid_cnn", "wrong_outputs", "classifier"} <= set(catalog.model_names())
    assert catalog.datasets()["digits"] == catalog.DATASETS["digits"]  # the built-in keeps its name
    assert not {"bad_kind", "bad_shape", "missing", "nameless", "not_facts"} & {*catalog.dataset_names(),
                                                                               *catalog.model_names()}
    splits = datasets.load_dataset(DatasetSpec("blobs"), seed=0)
    assert splits.x_train.shape[1:] == (4,) and len(splits.y_test) == 12
    config = load_config({"task": {"dataset": "blobs", "model": "classifier"}, "device": "cpu"})
    assert load_task(config).new_model(0)(splits.x_val).shape == (len(splits.x_val), 2)
    assert load_config({"task": {"dataset": "breast_cancer", "model": "grid_cnn"}}).task.model == "grid_cnn"


def test_a_model_that_does_not_fit_its_data_is_named_when_a_task_pairs_them(broken):
    config = load_config({"task": {"dataset": "blobs", "model": "wrong_outputs"}, "device": "cpu"})  # facts fit
    with pytest.raises(ConfigError) as caught:
        load_task(config)
    message = caught.value.errors["task.model"]
    assert message.startswith(f"plugin model 'wrong_outputs' (entry point 'wrong_outputs' "
                              f"(broken_facts:WRONG_OUTPUTS) in group lfl.models of package {BROKEN})")
    assert "does not fit dataset 'blobs': a batch of shape (2, 4) gives outputs (2, 3), the task needs (2, 2)" in message
    with pytest.raises(ConfigError) as caught:
        load_config({"task": {"dataset": "diabetes", "model": "classifier"}})
    assert caught.value.errors == {
        "task.model": "classifier is a model for classification; dataset 'diabetes' is a regression task"}


def test_data_that_breaks_its_facts_is_named_when_it_is_loaded(broken):
    config = load_config({"task": {"dataset": "liar", "model": "mlp"}, "device": "cpu"})  # the facts split fine
    with pytest.raises(ConfigError) as caught:
        load_task(config)
    assert caught.value.errors["task.dataset"] == (
        f"plugin data set 'liar' (entry point 'liar' (broken_facts:LIAR) in group lfl.datasets of package {BROKEN}): "
        "its loader broken_facts:blobs returned class counts (30, 30); the plugin's facts promise (20, 40)")


def test_the_cli_lists_what_works_and_what_failed_and_checks_the_rest(broken, capsys):
    assert main(["plugins", "--check"]) == 1
    out = capsys.readouterr().out
    assert "blobs: blobs (test); classification, 60 samples of shape (4,), 2 classes  [broken-plugins 1.0]" in out
    assert "breast_cancer: " in out and "grid_cnn: " in out
    failed = out[out.index("plugins that failed and are not offered (8):"):out.index("checks:")]
    assert all(str(error) in failed for error in broken.errors)
    assert "ok      data set blobs: 60 samples of shape (4,), as its facts say" in out
    assert "FAILED  data set liar: plugin data set 'liar'" in out
    assert "FAILED  model wrong_outputs on blobs: plugin model 'wrong_outputs'" in out
    assert "ok      model classifier on blobs" in out and "model classifier on diabetes" not in out
    assert "ok      model grid_cnn on breast_cancer" in out


def test_two_plugins_of_one_name_are_both_refused(install):
    found = install("twin-plugin", "2.0", {"lfl.models": {"grid_cnn": "twin_facts:GRID_CNN"}}, {"twin_facts": '''
        from search_engine.plugins import ModelPlugin
        GRID_CNN = ModelPlugin(name="grid_cnn", label="another grid_cnn", builder="twin_facts:build")
    '''})
    assert "grid_cnn" not in catalog.model_names() and "breast_cancer" in catalog.dataset_names()
    texts = sorted(str(e) for e in found.errors if e.origin.name == "grid_cnn")
    assert len(texts) == 2 and all("the model name 'grid_cnn' is also registered by entry point" in t for t in texts)
    assert "of package lfl-example-plugin 0.1.0: the model name" in texts[0] + texts[1]
    assert "of package twin-plugin 2.0: the model name" in texts[0] + texts[1]


NOT_A_CHAIN = '''
from torch import nn
from search_engine.plugins import ModelPlugin

SEQUENCE_NET = ModelPlugin(name="sequence_net", label="1-D conv", builder="sequence_facts:build")
PEEKING_NET = ModelPlugin(name="peeking_net", label="peeks at its input", builder="sequence_facts:build_peeking")

def build(info, seed):
    size = 1
    for side in info.input_shape:
        size *= side
    return nn.Sequential(nn.Flatten(), nn.Unflatten(1, (1, size)), nn.Conv1d(1, 4, 3, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(4 * size, info.n_outputs))

class Peeking(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        if self.net[-1].bias.sum().item() > 1e9:  # a value read out of a weight: vmap cannot run this
            return -self.net(x)
        return self.net(x)

def build_peeking(info, seed):
    return Peeking(build(info, seed))
'''


def test_a_plugin_model_that_is_not_a_layer_chain_is_trained_sequentially_and_the_plan_says_why(install, tiny):
    install("sequence-plugin", "0.3", {"lfl.models": {"sequence_net": "sequence_facts:SEQUENCE_NET",
                                                      "peeking_net": "sequence_facts:PEEKING_NET"}},
            {"sequence_facts": NOT_A_CHAIN})
    config = tiny(task={"dataset": "breast_cancer", "model": "sequence_net"}, evaluation={"strategy": "auto"})
    task = load_task(config)
    plan, why = rule_plan(task, config)
    assert plan is None and why == ("rule: plugin model sequence_net is not a layer chain (layer 1 (Unflatten) is not "
                                    "a kind the batched trainer runs as one), and vmapped models train faster one "
                                    "at a time on the cpu")
    evaluator = make_evaluator(task, config)
    record = plan_record(evaluator, task.device)
    assert record["strategy"] == "sequential" and record["reason"] == why
    (outcome,) = evaluator.evaluate([CROSS_ENTROPY])  # the model trains, one candidate at a time
    assert outcome.fitness is not None and 0.0 <= outcome.fitness < 0.5
    # on a GPU such a model is vmapped when a forward and backward of two members runs, else sequential
    assert _vmap_problem(task, config, task.new_model(0)) is None
    peeking = load_task(tiny(task={"dataset": "breast_cancer", "model": "peeking_net"}))
    problem = _vmap_problem(peeking, config, peeking.new_model(0))
    assert problem is not None and problem.startswith("RuntimeError: ") and "item()" in problem, problem


KINDS = ("classification", "regression")
DATA = dict(name="points", label="points", kind="regression", input_shape=(3,), n_outputs=1, n_samples=50,
            loader="points_module:load")


@pytest.mark.parametrize(("changes", "problem"), [
    ({}, None),
    ({"name": "Points"}, "its name 'Points' is not 1 to 40 lower-case letters, digits and underscores"),
    ({"label": ""}, "its label must be text of 1 to 60 characters, got ''"),
    ({"loader": "points_module.load"}, 'its loader must be written "package.module:function", got \'points_module.load\''),
    ({"n_samples": 0}, "a regression data set must give n_samples"),
    ({"class_counts": (25, 25)}, "class_counts are for classification"),
    ({"image": True}, "image=True needs a (C, H, W) input_shape, got (3,)"),
    ({"image": "yes"}, "its image must be True or False, got 'yes'"),
    ({"kind": "classification", "n_outputs": 1, "n_samples": 0}, "n_outputs must be the number of classes (at least 2)"),
    ({"kind": "classification", "n_outputs": 2, "class_counts": (20, 30), "n_samples": 51},
     "n_samples 51 differs from the class counts' sum 50"),
])
def test_every_fact_of_a_data_set_is_checked(changes, problem):
    found = plugins._dataset_problem(plugins.DatasetPlugin(**{**DATA, **changes}), KINDS)
    assert found == problem if problem is None else problem in found


@pytest.mark.parametrize(("changes", "problem"), [
    ({}, None),
    ({"kinds": ("classification",)}, None),
    ({"kinds": ("ranking",)}, "its kinds must be None (every kind) or a tuple of classification, regression"),
    ({"kinds": ()}, "its kinds must be None"),
    ({"min_image_side": 0}, "its min_image_side must be None or a positive whole number, got 0"),
    ({"min_features": True}, "its min_features must be a positive whole number, got True"),
    ({"builder": "net:"}, "its builder must be written"),
    ({"label": "x" * 61}, "its label must be text of 1 to 60 characters"),
])
def test_every_fact_of_a_model_is_checked(changes, problem):
    facts = plugins.ModelPlugin(**{"name": "net", "label": "net", "builder": "net_module:build", **changes})
    found = plugins._model_problem(facts, KINDS)
    assert found == problem if problem is None else problem in found


def test_a_target_that_does_not_load_is_named():
    with pytest.raises(plugins.PluginLoadError) as caught:
        plugins.load_target("no_such_module_of_lfl:build", "plugin model 'x'")
    assert str(caught.value) == ("plugin model 'x': cannot load no_such_module_of_lfl:build: ModuleNotFoundError: "
                                 "No module named 'no_such_module_of_lfl'")
    with pytest.raises(plugins.PluginLoadError, match="search_engine.plugins:MODEL_GROUP is a str, not a function"):
        plugins.load_target("search_engine.plugins:MODEL_GROUP", "plugin model 'x'")
